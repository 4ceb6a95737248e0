"""Re-topologising a triangle surface five different ways, as linear operators on the source points.

Every method returns a :class:`Retopology`: the new vertices as a sparse (V_new, V_src) matrix of
the source vertices (each new vertex is a point *on* the source surface — a vertex, an edge midpoint
or a barycentric point of a source triangle) plus the new triangles. Built once on one head, an
operator re-topologises any other head of the same source connectivity with one sparse product,
which is what makes on-the-fly training data cheap.

Methods (``METHODS``):

- ``subdivision`` — 1→4 midpoint split (optionally twice),
- ``decimation`` — vertex clustering on a randomly offset grid (Rossignac–Borrel), representative =
  the member vertex nearest the cluster mean,
- ``isotropic`` — isotropic remeshing by approximated centroidal Voronoi clustering (ACVD, Valette
  et al. 2008): seeds spread over a densified surface, Lloyd iterations, dual triangulation,
- ``retriangulation`` — the same vertices with quads split along random diagonals, random
  1→3 splits at triangle centroids and random edge flips,
- ``marching_cubes`` — scan-like: marching cubes of the unsigned distance at a small level, the
  outer sheet kept and projected onto the surface (exact closest points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

METHODS = ("subdivision", "decimation", "isotropic", "retriangulation", "marching_cubes")


@dataclass
class Retopology:
    """New mesh = ``weights @ source_points`` with connectivity ``triangles``."""

    method: str
    weights: sp.csr_matrix  # (V_new, V_src)
    triangles: np.ndarray  # (T, 3) int64 into the new vertices

    @property
    def num_points(self) -> int:
        return int(self.weights.shape[0])

    def apply(self, source_points: np.ndarray) -> np.ndarray:
        """(V_new, 3) points of the re-topologised mesh for source points (V_src, 3)."""
        return np.asarray(self.weights @ np.asarray(source_points, np.float64), np.float32)


# ---- helpers -----------------------------------------------------------------------------------
def unique_edges(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, 2) sorted unique edges and (T, 3) edge id of each triangle's edge opposite corner k."""
    tri_edges = np.stack([triangles[:, [1, 2]], triangles[:, [2, 0]], triangles[:, [0, 1]]], 1)  # (T, 3, 2)
    edges, inverse = np.unique(np.sort(tri_edges, -1).reshape(-1, 2), axis=0, return_inverse=True)
    return edges, inverse.reshape(-1, 3)


def _selection(rows: np.ndarray, num_src: int) -> sp.csr_matrix:
    rows = np.asarray(rows, np.int64)
    return sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)), shape=(len(rows), num_src))


def _drop_degenerate(triangles: np.ndarray) -> np.ndarray:
    t = np.asarray(triangles, np.int64)
    keep = (t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])
    t = t[keep]
    _, first = np.unique(np.sort(t, 1), axis=0, return_index=True)
    return t[np.sort(first)]


def _compact(weights: sp.csr_matrix, triangles: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Drop new vertices no triangle uses."""
    used = np.unique(triangles)
    remap = np.full(weights.shape[0], -1, np.int64)
    remap[used] = np.arange(len(used))
    return weights[used].tocsr(), remap[triangles]


def midpoint_subdivision(triangles: np.ndarray, num_points: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """One 1→4 split: (V+E, V) operator and the (4T, 3) triangles."""
    edges, tri_edge = unique_edges(triangles)
    e = len(edges)
    mid_rows = np.repeat(np.arange(e), 2) + num_points
    weights = sp.vstack([sp.identity(num_points, format="csr"),
                         sp.csr_matrix((np.full(2 * e, 0.5), (mid_rows - num_points, edges.ravel())),
                                       shape=(e, num_points))]).tocsr()
    a, b, c = triangles.T
    m_bc, m_ca, m_ab = (tri_edge + num_points).T  # midpoint opposite each corner
    new = np.concatenate([np.stack([a, m_ab, m_ca], 1), np.stack([b, m_bc, m_ab], 1),
                          np.stack([c, m_ca, m_bc], 1), np.stack([m_ab, m_bc, m_ca], 1)])
    return weights, new


# ---- the methods -------------------------------------------------------------------------------
def subdivision(points: np.ndarray, triangles: np.ndarray, rng: np.random.Generator, levels: int | None = None) -> Retopology:
    levels = 1 if levels is None else levels
    weights, tris = sp.identity(len(points), format="csr"), np.asarray(triangles, np.int64)
    for _ in range(levels):
        step, tris = midpoint_subdivision(tris, weights.shape[0])
        weights = (step @ weights).tocsr()
    return Retopology("subdivision", weights, tris)


def decimation(points: np.ndarray, triangles: np.ndarray, rng: np.random.Generator, cell: float | None = None) -> Retopology:
    cell = float(rng.uniform(0.5, 1.1)) if cell is None else cell  # cm
    points = np.asarray(points, np.float64)
    keys = np.floor((points + rng.uniform(0, cell, 3)) / cell).astype(np.int64)
    _, cluster = np.unique(keys, axis=0, return_inverse=True)
    cluster = cluster.ravel()
    k = cluster.max() + 1
    counts = np.bincount(cluster, minlength=k)
    means = np.stack([np.bincount(cluster, points[:, d], k) for d in range(3)], 1) / counts[:, None]
    # representative: the member closest to its cluster mean (keeps vertices on the surface)
    dist = np.linalg.norm(points - means[cluster], axis=1)
    order = np.lexsort((dist, cluster))
    first = order[np.r_[0, np.flatnonzero(np.diff(cluster[order])) + 1]]
    tris = _drop_degenerate(cluster[np.asarray(triangles)])
    weights, tris = _compact(_selection(first, len(points)), tris)
    return Retopology("decimation", weights, tris)


def isotropic(points: np.ndarray, triangles: np.ndarray, rng: np.random.Generator, edge: float | None = None,
              lloyd_iterations: int = 3) -> Retopology:
    edge = float(rng.uniform(0.25, 0.65)) if edge is None else edge  # target edge length, cm
    dense_w, dense_t = midpoint_subdivision(np.asarray(triangles, np.int64), len(points))
    dense = np.asarray(dense_w @ np.asarray(points, np.float64))
    corners = dense[dense_t]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1).sum()
    num_seeds = int(np.clip(area / (0.866 * edge ** 2), 16, len(dense) // 3))  # ~2 equilateral triangles per vertex
    seeds = rng.choice(len(dense), num_seeds, replace=False)
    for _ in range(lloyd_iterations + 1):
        _, cluster = cKDTree(dense[seeds]).query(dense)
        counts = np.bincount(cluster, minlength=num_seeds)
        means = np.stack([np.bincount(cluster, dense[:, d], num_seeds) for d in range(3)], 1) / np.maximum(counts, 1)[:, None]
        _, seeds = cKDTree(dense).query(means)  # centroid snapped back onto the surface
    _, cluster = cKDTree(dense[seeds]).query(dense)
    tris = _drop_degenerate(cluster[dense_t])  # dual of the clustering: faces spanning three regions
    weights, tris = _compact(dense_w[seeds].tocsr(), tris)
    return Retopology("isotropic", weights, tris)


def retriangulation(points: np.ndarray, triangles: np.ndarray, rng: np.random.Generator,
                    split_fraction: float | None = None, flip_fraction: float | None = None) -> Retopology:
    split_fraction = float(rng.uniform(0.05, 0.4)) if split_fraction is None else split_fraction
    flip_fraction = float(rng.uniform(0.05, 0.3)) if flip_fraction is None else flip_fraction
    tris = np.asarray(triangles, np.int64).copy()
    n = len(points)
    # random flips of interior edges (shared by exactly two triangles), each triangle in one flip at most
    edges, tri_edge = unique_edges(tris)
    flat = tri_edge.ravel()  # flat id 3*triangle + corner → edge opposite that corner
    order = np.argsort(flat, kind="stable")
    owners = np.bincount(flat, minlength=len(edges))
    start = np.searchsorted(flat[order], np.arange(len(edges)))
    interior = np.flatnonzero(owners == 2)
    chosen = rng.choice(interior, int(flip_fraction * len(interior)), replace=False)
    f1, f2 = order[start[chosen]], order[start[chosen] + 1]
    t1, k1, t2, k2 = f1 // 3, f1 % 3, f2 // 3, f2 % 3
    touched = np.bincount(np.concatenate([t1, t2]), minlength=len(tris))
    p, q = tris[t1, k1], tris[t2, k2]  # the apexes opposite the shared edge
    edge_keys = edges[:, 0] * n + edges[:, 1]
    new_keys = np.minimum(p, q) * n + np.maximum(p, q)
    ok = (touched[t1] == 1) & (touched[t2] == 1) & (p != q) & ~np.isin(new_keys, edge_keys)
    t1, k1, t2, p, q = t1[ok], k1[ok], t2[ok], p[ok], q[ok]
    a, b = tris[t1, (k1 + 1) % 3], tris[t1, (k1 + 2) % 3]  # shared edge a→b in triangle 1's winding
    tris[t1] = np.stack([p, a, q], 1)
    tris[t2] = np.stack([q, b, p], 1)
    # 1→3 splits at the centroid of a random subset of triangles
    split = rng.random(len(tris)) < split_fraction
    ids = np.flatnonzero(split)
    centre = n + np.arange(len(ids))
    a, b, c = tris[ids].T
    new_tris = np.concatenate([tris[~split], np.stack([a, b, centre], 1), np.stack([b, c, centre], 1),
                               np.stack([c, a, centre], 1)])
    centroid_w = sp.csr_matrix((np.full(3 * len(ids), 1.0 / 3.0), (np.repeat(np.arange(len(ids)), 3), tris[ids].ravel())),
                               shape=(len(ids), n))
    weights = sp.vstack([sp.identity(n, format="csr"), centroid_w]).tocsr()
    weights, new_tris = _compact(weights, new_tris)
    return Retopology("retriangulation", weights, new_tris)


def marching_cubes(points: np.ndarray, triangles: np.ndarray, rng: np.random.Generator, voxel: float | None = None) -> Retopology:
    """Scan-like mesh: iso-surface of the unsigned distance, outer sheet, projected onto the surface."""
    from skimage.measure import marching_cubes as skimage_marching_cubes

    from topos_server.geometry.registration import TriangleSurface
    from topos_server.geometry.surface_points import sample_surface

    voxel = float(rng.uniform(0.3, 0.6)) if voxel is None else voxel  # cm
    points = np.asarray(points, np.float64)
    triangles = np.asarray(triangles, np.int64)
    # dense surface samples stand in for the surface in the distance field (error ≪ voxel)
    dense, _, _ = sample_surface(points, triangles, 120_000, rng)
    lo = points.min(0) - 3 * voxel + rng.uniform(-0.5, 0.5, 3) * voxel
    shape = np.ceil((points.max(0) + 3 * voxel - lo) / voxel).astype(int) + 1
    grid = np.stack(np.meshgrid(*[lo[d] + voxel * np.arange(shape[d]) for d in range(3)], indexing="ij"), -1)
    distance, _ = cKDTree(dense).query(grid.reshape(-1, 3), distance_upper_bound=3 * voxel)
    distance = np.minimum(distance, 3 * voxel).reshape(tuple(shape))
    level = 0.75 * voxel
    verts, faces, _, _ = skimage_marching_cubes(distance.astype(np.float32), level=level, spacing=(voxel,) * 3)
    verts = verts.astype(np.float64) + lo
    surface = TriangleSurface(points, triangles)
    hits = surface.closest(verts)
    outer = ((verts - hits.points) * hits.normals).sum(1) > 0  # the sheet on the outside of the skin
    faces = np.asarray(faces, np.int64)
    faces = faces[outer[faces].all(1)]
    # wind the sheet like the source surface (skimage's winding depends on the field's gradient)
    corners = verts[faces]
    face_normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    if (face_normal * hits.normals[faces].sum(1)).sum(1).mean() < 0:
        faces = faces[:, [0, 2, 1]]
    rows = np.repeat(np.arange(len(verts)), 3)
    weights = sp.csr_matrix((hits.barycentric.ravel(), (rows, triangles[hits.triangle].ravel())),
                            shape=(len(verts), len(points)))
    # vertices projected onto one point collapse into one
    snapped = np.round(hits.points / (1e-3 * voxel)).astype(np.int64)
    _, first, inverse = np.unique(snapped, axis=0, return_index=True, return_inverse=True)
    tris = _drop_degenerate(first[inverse.ravel()][faces])
    weights, tris = _compact(weights.tocsr(), tris)
    return Retopology("marching_cubes", weights, tris)


_BUILDERS = {
    "subdivision": subdivision,
    "decimation": decimation,
    "isotropic": isotropic,
    "retriangulation": retriangulation,
    "marching_cubes": marching_cubes,
}


def retopologize(method: str, points: np.ndarray, triangles: np.ndarray, rng: np.random.Generator) -> Retopology:
    """A random re-topology of the surface ``(points, triangles)`` by ``method`` (one of ``METHODS``)."""
    try:
        builder = _BUILDERS[method]
    except KeyError:
        raise ValueError(f"unknown re-topology method {method!r}; choose from {', '.join(METHODS)}") from None
    return builder(points, triangles, rng)
