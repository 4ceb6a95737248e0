"""Baseline: landmark-free optimal-step non-rigid ICP (Amberg, Romdhani & Vetter, CVPR 2007).

Our own implementation on scipy.sparse (trimesh is not a dependency here): every template vertex
carries an affine 3×4 transform ``X_i``; each step solves, for all of them at once,

    min_X  α² ‖(M ⊗ G) X‖²  +  ‖W (D X − U)‖²

with ``M`` the edge–vertex incidence matrix (neighbouring transforms agree: stiffness α),
``G = diag(1, 1, 1, γ)``, ``D`` the template vertices in homogeneous rows, ``U`` their closest points
on the target (:class:`~topos_server.geometry.registration.TriangleSurface`, exact) and ``W`` drops pairs
that are far, whose normals disagree or that land on the target's boundary. The three columns of
``X`` share one matrix: one sparse LU per step. α falls step by step as in the paper.

Used in the benchmark on the outer skin of the mean head (canonical frame); the other reference
vertices (eyes, teeth, mouth interior) follow the skin by inverse-distance interpolation of the
displacements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from topos_server.geometry.registration import TriangleSurface, inverse_distance_displacement, vertex_normals
from topos_server.geometry.retopology import unique_edges


@dataclass(frozen=True)
class NicpSchedule:
    stiffness: tuple[float, ...] = (50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
    iterations_per_stiffness: int = 2
    gamma: float = 1.0  # weight of the translation part of a transform in the stiffness term
    max_distance: float = 1.5  # template units (cm): farther closest-point pairs are dropped
    min_normal_dot: float = 0.3


def optimal_step_nicp(template_points: np.ndarray, template_triangles: np.ndarray, target: TriangleSurface,
                      schedule: NicpSchedule = NicpSchedule(), _return_transforms: bool = False) -> np.ndarray:
    """Deform the template (V, 3) onto ``target``; returns the deformed (V, 3) points (or the (V, 4, 3) affines)."""
    points = np.asarray(template_points, np.float64)
    triangles = np.asarray(template_triangles, np.int64)
    num = len(points)
    edges, _ = unique_edges(triangles)
    e = len(edges)
    incidence = sp.csr_matrix((np.r_[np.ones(e), -np.ones(e)], (np.r_[np.arange(e), np.arange(e)], edges.T.ravel())),
                              shape=(e, num))
    g = sp.diags([1.0, 1.0, 1.0, schedule.gamma])
    stiffness_block = sp.kron(incidence, g, format="csr")  # (4E, 4V)
    stiffness_normal = (stiffness_block.T @ stiffness_block).tocsc()
    homogeneous = np.c_[points, np.ones(num)]  # (V, 4)
    d_rows = np.repeat(np.arange(num), 4)
    d_cols = (4 * np.arange(num)[:, None] + np.arange(4)).ravel()
    transforms = np.tile(np.r_[np.eye(3), np.zeros((1, 3))], (num, 1))  # (4V, 3) identity affines
    deformed = points.copy()
    for alpha in schedule.stiffness:
        for _ in range(schedule.iterations_per_stiffness):
            hits = target.closest(deformed)
            normals = vertex_normals(deformed, triangles)
            agree = (normals * hits.normals).sum(1) >= schedule.min_normal_dot
            weight = (agree & (hits.distance <= schedule.max_distance) & ~hits.on_boundary).astype(np.float64)
            weighted_d = sp.csr_matrix(((homogeneous * weight[:, None]).ravel(), (d_rows, d_cols)), shape=(num, 4 * num))
            system = (alpha ** 2) * stiffness_normal + (weighted_d.T @ weighted_d).tocsc()
            rhs = weighted_d.T @ (hits.points * weight[:, None])  # (4V, 3)
            transforms = splu(system.tocsc()).solve(np.asarray(rhs))
            deformed = np.einsum("vk,vkx->vx", homogeneous, transforms.reshape(num, 4, 3))
    return transforms.reshape(num, 4, 3) if _return_transforms else deformed


class NicpBaseline:
    """Optimal-step NICP of the mean head onto a surface, sized for a benchmark of hundreds of heads.

    The affine field is solved on a coarse isotropic remesh of the template skin (``coarse_edge``
    cm), carried to every skin vertex by inverse-distance blending of the neighbouring affines
    (applied to the vertex's own position, which keeps the template's detail), then a last
    fine step pulls each skin vertex to its closest target point under a Laplacian-smoothness term
    on the full-resolution skin; the remaining vertices follow the skin's displacement.
    """

    def __init__(self, mean_head: np.ndarray, surface_vertex_count: int, surface_triangles: np.ndarray,
                 schedule: NicpSchedule = NicpSchedule(), coarse_edge: float = 0.8, fine_stiffness: tuple = (4.0, 1.0),
                 seed: int = 0):
        from scipy.spatial import cKDTree

        from topos_server.geometry.registration import uniform_laplacian
        from topos_server.geometry.retopology import isotropic

        self.mean_head = np.asarray(mean_head, np.float64)
        self.surface_vertex_count = surface_vertex_count
        self.surface_triangles = np.asarray(surface_triangles, np.int64)
        self.schedule = schedule
        skin = self.mean_head[:surface_vertex_count]
        coarse = isotropic(skin, self.surface_triangles, np.random.default_rng(seed), edge=coarse_edge)
        self.coarse_points = coarse.apply(skin).astype(np.float64)
        self.coarse_triangles = coarse.triangles
        dist, idx = cKDTree(self.coarse_points).query(skin, k=6)
        weight = 1.0 / np.maximum(dist, 1e-6) ** 2
        self.blend_ids, self.blend_weights = idx, weight / weight.sum(1, keepdims=True)  # (V, 6)
        self.laplacian = uniform_laplacian(surface_vertex_count, self.surface_triangles)
        self.fine_stiffness = fine_stiffness

    def register(self, target: TriangleSurface) -> np.ndarray:
        """(N, 3) all reference vertices registered onto ``target`` (template frame and units)."""
        skin0 = self.mean_head[: self.surface_vertex_count]
        transforms = optimal_step_nicp(self.coarse_points, self.coarse_triangles, target, self.schedule,
                                       _return_transforms=True)  # (Vc, 4, 3)
        blended = np.einsum("vk,vkij->vij", self.blend_weights, transforms[self.blend_ids])  # (V, 4, 3)
        skin = np.einsum("vi,vij->vj", np.c_[skin0, np.ones(len(skin0))], blended)
        skin = self._fine_step(skin, target)
        out = self.mean_head.copy()
        out[: self.surface_vertex_count] = skin
        interior = self.mean_head[self.surface_vertex_count:]
        out[self.surface_vertex_count:] = interior + inverse_distance_displacement(skin0, skin - skin0, interior)
        return out

    def _fine_step(self, skin: np.ndarray, target: TriangleSurface) -> np.ndarray:
        """min α‖L(x − x₀)‖² + Σ w_i ‖x_i − c_i‖², x, y, z apart (one LU, three right-hand sides)."""
        lap_normal = (self.laplacian.T @ self.laplacian).tocsc()
        start = skin
        x = skin
        for alpha in self.fine_stiffness:
            hits = target.closest(x)
            normals = vertex_normals(x, self.surface_triangles)
            weight = (((normals * hits.normals).sum(1) >= self.schedule.min_normal_dot)
                      & (hits.distance <= self.schedule.max_distance) & ~hits.on_boundary).astype(np.float64)
            system = (alpha * lap_normal + sp.diags(weight)).tocsc()
            rhs = alpha * (lap_normal @ start) + weight[:, None] * hits.points
            x = splu(system).solve(np.asarray(rhs))
        return x


def register_reference_head(mean_head: np.ndarray, surface_vertex_count: int, surface_triangles: np.ndarray,
                            target: TriangleSurface, schedule: NicpSchedule = NicpSchedule()) -> np.ndarray:
    """All reference vertices (N, 3): the skin by NICP onto ``target``, the rest carried along with it."""
    mean_head = np.asarray(mean_head, np.float64)
    skin = optimal_step_nicp(mean_head[:surface_vertex_count], surface_triangles, target, schedule)
    out = mean_head.copy()
    out[:surface_vertex_count] = skin
    interior = mean_head[surface_vertex_count:]
    out[surface_vertex_count:] = interior + inverse_distance_displacement(
        mean_head[:surface_vertex_count], skin - mean_head[:surface_vertex_count], interior)
    return out
