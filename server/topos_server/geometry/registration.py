"""Registering one surface mesh onto another: similarity alignment, closest points, non-rigid fit.

Pure numpy + scipy, vectorised; sized for small source meshes (hundreds to a few thousand
vertices) fitted onto a target of tens of thousands of triangles, in well under a second.

- :func:`umeyama` — least-squares rotation + uniform scale + translation between point sets.
- :class:`TriangleSurface` — a triangle mesh that answers exact closest-point queries (triangle id +
  barycentrics) and ray casts.
- :func:`fit_mesh_to_surface` — non-rigid ICP: a few rounds of sparse linear least squares with a
  Laplacian smoothness term on the displacement, point-to-plane / point-to-point closest-point
  terms and landmark terms, with the stiffness relaxed from round to round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve


# ---- similarity ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Similarity:
    """``x ↦ scale · R x + t``."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def umeyama(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """The similarity that maps ``source`` (K, 3) onto ``target`` (K, 3) in the least-squares sense."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    s, t = source - mu_s, target - mu_t
    covariance = (t * w[:, None]).T @ s  # (3, 3)
    u, sigma, vt = np.linalg.svd(covariance)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((sigma * d).sum() / (w @ (s ** 2).sum(1)))
    return Similarity(scale, rotation, mu_t - scale * rotation @ mu_s)


# ---- closest points on triangles ---------------------------------------------------------------
def closest_point_barycentrics(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentrics (..., 3) of the point of triangle (a, b, c) closest to ``points``; all (..., 3).

    Exact (Voronoi regions of vertices, edges and face, as in Ericson, *Real-Time Collision
    Detection* §5.1.5), broadcasting over any leading shape.
    """
    ab, ac = b - a, c - a
    ap, bp, cp = points - a, points - b, points - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        denom = va + vb + vc
        v_in, w_in = vb / denom, vc / denom
    zero, one = np.zeros_like(d1), np.ones_like(d1)
    conditions = [
        (d1 <= 0) & (d2 <= 0),  # vertex a
        (d3 >= 0) & (d4 <= d3),  # vertex b
        (vc <= 0) & (d1 >= 0) & (d3 <= 0),  # edge ab
        (d6 >= 0) & (d5 <= d6),  # vertex c
        (vb <= 0) & (d2 >= 0) & (d6 <= 0),  # edge ac
        (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0),  # edge bc
    ]
    v = np.select(conditions, [zero, one, t_ab, zero, zero, 1 - t_bc], v_in)
    w = np.select(conditions, [zero, zero, zero, one, t_ac, t_bc], w_in)
    bary = np.stack([1 - v - w, v, w], axis=-1)
    bary = np.nan_to_num(bary, nan=1.0 / 3.0)  # only for degenerate (zero-area) triangles
    return np.clip(bary, 0.0, 1.0) / np.clip(bary, 0.0, 1.0).sum(-1, keepdims=True)


@dataclass
class SurfaceHits:
    triangle: np.ndarray  # (Q,) int, row of TriangleSurface.triangles
    barycentric: np.ndarray  # (Q, 3) float64, ≥ 0, rows sum to 1
    points: np.ndarray  # (Q, 3)
    normals: np.ndarray  # (Q, 3) unit, interpolated vertex normals
    distance: np.ndarray  # (Q,)
    on_boundary: np.ndarray  # (Q,) bool: the point lies on a boundary edge of the surface

    def subset(self, rows: np.ndarray) -> "SurfaceHits":
        return SurfaceHits(self.triangle[rows], self.barycentric[rows], self.points[rows], self.normals[rows],
                           self.distance[rows], self.on_boundary[rows])


class TriangleSurface:
    """A triangle mesh (vertex ids index ``points``) answering closest-point queries and ray casts."""

    def __init__(self, points: np.ndarray, triangles: np.ndarray, candidates: int = 24):
        self.points = np.asarray(points, np.float64)  # (N, 3)
        self.triangles = np.asarray(triangles, np.int64)  # (T, 3)
        self.candidates = min(candidates, len(self.triangles))
        corners = self.points[self.triangles]  # (T, 3, 3)
        self._corners = corners
        from scipy.spatial import cKDTree  # imported when used: scipy.spatial costs ~0.3 s to import

        self._tree = cKDTree(corners.mean(1))
        face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # area-weighted
        vertex_normals = np.zeros_like(self.points)
        for k in range(3):
            np.add.at(vertex_normals, self.triangles[:, k], face_normals)
        self.vertex_normals = vertex_normals / np.maximum(np.linalg.norm(vertex_normals, axis=1, keepdims=True), 1e-12)
        # an edge used by one triangle only is a boundary edge; edge k is opposite corner k
        edges = np.sort(np.stack([self.triangles[:, [1, 2]], self.triangles[:, [2, 0]], self.triangles[:, [0, 1]]], 1), -1)
        _, inverse, counts = np.unique(edges.reshape(-1, 2), axis=0, return_inverse=True, return_counts=True)
        self.boundary_edge = (counts[inverse.reshape(-1)] == 1).reshape(-1, 3)  # (T, 3)

    def closest(self, queries: np.ndarray) -> SurfaceHits:
        queries = np.asarray(queries, np.float64).reshape(-1, 3)
        # a triangle's centroid lies within its circumradius of every point on it, so the exact
        # nearest triangle is among the nearest centroids unless triangles are wildly uneven
        _, cand = self._tree.query(queries, k=self.candidates)  # (Q, C)
        cand = cand.reshape(len(queries), -1)
        tri = self._corners[cand]  # (Q, C, 3, 3)
        bary = closest_point_barycentrics(queries[:, None, :], tri[:, :, 0], tri[:, :, 1], tri[:, :, 2])  # (Q, C, 3)
        closest = np.einsum("qck,qckx->qcx", bary, tri)
        dist = np.linalg.norm(closest - queries[:, None, :], axis=-1)  # (Q, C)
        best = dist.argmin(1)
        rows = np.arange(len(queries))
        return self._hits(cand[rows, best], bary[rows, best], dist[rows, best])

    def _hits(self, triangle: np.ndarray, bary: np.ndarray, distance: np.ndarray) -> SurfaceHits:
        corners = self._corners[triangle]  # (Q, 3, 3)
        normals = np.einsum("qk,qkx->qx", bary, self.vertex_normals[self.triangles[triangle]])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        on_boundary = (self.boundary_edge[triangle] & (bary < 1e-9)).any(1)
        return SurfaceHits(triangle, bary, np.einsum("qk,qkx->qx", bary, corners), normals, distance, on_boundary)

    def ray_cast(self, origins: np.ndarray, direction: np.ndarray) -> tuple[SurfaceHits, np.ndarray]:
        """First hit of rays ``origins + s·direction`` (s ≥ 0) against all triangles (Möller–Trumbore).

        Returns the hits and a (Q,) bool ``hit`` mask; rows without a hit hold the closest point instead.
        """
        origins = np.asarray(origins, np.float64).reshape(-1, 3)
        direction = np.asarray(direction, np.float64) / np.linalg.norm(direction)
        a, b, c = self._corners[:, 0], self._corners[:, 1], self._corners[:, 2]  # (T, 3)
        e1, e2 = b - a, c - a
        pvec = np.cross(direction, e2)  # (T, 3)
        det = (e1 * pvec).sum(-1)  # (T,)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            tvec = origins[:, None, :] - a[None]  # (Q, T, 3)
            u = (tvec * pvec).sum(-1) * inv
            qvec = np.cross(tvec, e1[None])
            v = (qvec @ direction) * inv
            s = (qvec * e2[None]).sum(-1) * inv
        valid = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (s >= 0)
        s = np.where(valid, s, np.inf)
        first = s.argmin(1)
        rows = np.arange(len(origins))
        hit = np.isfinite(s[rows, first])
        fallback = self.closest(origins)
        triangle = np.where(hit, first, fallback.triangle)
        bary = np.where(hit[:, None], np.stack([1 - u[rows, first] - v[rows, first], u[rows, first], v[rows, first]], 1),
                        fallback.barycentric)
        bary = np.clip(np.nan_to_num(bary), 0.0, 1.0)
        bary /= bary.sum(1, keepdims=True)
        return self._hits(triangle, bary, np.where(hit, s[rows, first], fallback.distance)), hit


# ---- non-rigid fit ---------------------------------------------------------------------------
def uniform_laplacian(num_points: int, triangles: np.ndarray) -> sp.csr_matrix:
    """(V, V) graph Laplacian ``I − D⁻¹A`` of a triangle mesh (isolated vertices get a zero row)."""
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges = np.unique(np.sort(edges, 1), axis=0)
    rows, cols = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_points, num_points))
    degree = np.asarray(adjacency.sum(1)).ravel()
    inv_degree = np.where(degree > 0, 1.0 / np.maximum(degree, 1), 0.0)
    return (sp.diags((degree > 0).astype(float)) - sp.diags(inv_degree) @ adjacency).tocsr()


def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals."""
    corners = points[triangles]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(points, dtype=np.float64)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class FitSchedule:
    """Weights of the non-rigid fit; ``stiffness`` has one entry per round (relaxed round by round)."""

    stiffness: tuple[float, ...] = (100.0, 30.0, 10.0, 4.0, 2.0, 1.0)
    point_to_plane: float = 1.0
    point_to_point: float = 0.1
    landmark: float = 10.0
    max_distance: float = 2.0  # closest-point pairs farther than this (target units) are dropped
    min_normal_dot: float = 0.5  # … and pairs whose normals disagree more than this


def fit_mesh_to_surface(source_points: np.ndarray, source_triangles: np.ndarray, target: TriangleSurface,
                        landmark_ids: np.ndarray, landmark_targets: np.ndarray,
                        schedule: FitSchedule = FitSchedule(),
                        data_mask: np.ndarray | None = None) -> np.ndarray:
    """Deform ``source_points`` (V, 3) onto ``target``; returns the deformed (V, 3) points.

    Each round solves, for all vertices at once,
    ``stiffness·‖L(X − X₀)‖² + Σ_pairs [w_pl (n·(x − c))² + w_pt ‖x − c‖²] + w_lm Σ_landmarks ‖x − y‖²``
    with ``c`` the closest target point of the previous round's ``x``. Pairs are dropped when far,
    when the normals disagree, when ``c`` lies on the target's boundary (an opening: eyes, mouth)
    and for vertices outside ``data_mask``.
    """
    x0 = np.asarray(source_points, np.float64)
    num = len(x0)
    laplacian = uniform_laplacian(num, np.asarray(source_triangles))
    smooth = sp.kron(laplacian, sp.identity(3), format="csr")  # (3V, 3V) on interleaved xyz
    smooth_rhs = smooth @ x0.ravel()
    smooth_normal = (smooth.T @ smooth).tocsr()
    smooth_normal_rhs = smooth.T @ smooth_rhs
    landmark_ids = np.asarray(landmark_ids, np.int64)
    landmark_targets = np.asarray(landmark_targets, np.float64)
    data_mask = np.ones(num, bool) if data_mask is None else np.asarray(data_mask, bool)

    # landmarks: w_lm ‖x_l − y_l‖², the same for every round
    lm_rows = (3 * landmark_ids[:, None] + np.arange(3)).ravel()
    lm_matrix = sp.csr_matrix((np.full(len(lm_rows), schedule.landmark), (lm_rows, lm_rows)), shape=(3 * num, 3 * num))
    lm_rhs = np.zeros(3 * num)
    np.add.at(lm_rhs, lm_rows, schedule.landmark * landmark_targets.ravel())

    orientation = 0.0  # +1 when source and target normals are oriented alike, −1 when opposite
    x = x0.copy()
    for stiffness in schedule.stiffness:
        hits = target.closest(x)
        normals = vertex_normals(x, np.asarray(source_triangles))
        if orientation == 0.0:
            orientation = 1.0 if np.median((normals * hits.normals).sum(1)) >= 0 else -1.0
        agree = orientation * (normals * hits.normals).sum(1) >= schedule.min_normal_dot
        use = data_mask & agree & (hits.distance <= schedule.max_distance) & ~hits.on_boundary
        ids = np.flatnonzero(use)
        n, c = hits.normals[ids], hits.points[ids]  # (P, 3)
        # point-to-plane w (n nᵀ) and point-to-point w I, as 3×3 blocks on the diagonal
        blocks = schedule.point_to_plane * n[:, :, None] * n[:, None, :] + schedule.point_to_point * np.eye(3)
        block_rows = np.repeat(3 * ids[:, None] + np.arange(3), 3, axis=1)  # (P, 9)
        block_cols = np.tile(3 * ids[:, None] + np.arange(3), (1, 3))
        data_matrix = sp.csr_matrix((blocks.reshape(-1), (block_rows.ravel(), block_cols.ravel())), shape=(3 * num, 3 * num))
        data_rhs = np.zeros(3 * num)
        np.add.at(data_rhs, (3 * ids[:, None] + np.arange(3)).ravel(), np.einsum("pij,pj->pi", blocks, c).ravel())

        system = (stiffness * smooth_normal + data_matrix + lm_matrix).tocsc()
        rhs = stiffness * smooth_normal_rhs + data_rhs + lm_rhs
        x = spsolve(system, rhs).reshape(num, 3)
    return x


def inverse_distance_weights(anchors: np.ndarray, queries: np.ndarray,
                             neighbours: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) ids of the nearest ``anchors`` of each query and their 1/d² weights (rows sum to 1)."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(anchors).query(queries, k=min(neighbours, len(anchors)))
    dist, idx = dist.reshape(len(queries), -1), idx.reshape(len(queries), -1)
    weights = 1.0 / np.maximum(dist, 1e-9) ** 2
    return idx, weights / weights.sum(1, keepdims=True)


def inverse_distance_displacement(anchors: np.ndarray, displacements: np.ndarray, queries: np.ndarray,
                                  neighbours: int = 8) -> np.ndarray:
    """(Q, 3) displacements at ``queries`` interpolated (1/d² weights) from the nearest ``anchors``."""
    idx, weights = inverse_distance_weights(anchors, queries, neighbours)
    return np.einsum("qk,qkx->qx", weights, displacements[idx])
