"""Pulling a reference surface onto an input surface, keeping a prior shape where the input has none.

The refinement after TOPOS-VAE in ``topos convert``: the decoded head is plausible but lies a few
millimetres off the scan. Each round solves, for the V outer-skin vertices at once,

    min_x  α ‖L (x − x_prior)‖²  +  Σ_i w_i ‖x_i − p_i‖²  +  β Σ_landmarks ‖x_l − y_l‖²

with ``L`` the mesh's graph Laplacian (the *displacement* from the prior is kept smooth, so the
prior's detail survives and regions without data follow it with no seam), ``p_i`` the projection of
``x_i`` onto the tangent plane of its closest input point ``c_i`` (point-to-plane, but separable in
x, y, z: one sparse factorisation serves the three coordinates) and a robust weight ``w_i`` that is
zero where the pair is far, where normals disagree, or where ``c_i`` lies on the input's boundary
(a face-only scan's rim, holes, the neck cut) — only what matches skin constrains the fit. The
stiffness α falls round by round (coarse to fine); the loop stops once the mean distance of the
matched pairs stops improving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from topos_server.geometry.registration import TriangleSurface, uniform_laplacian, vertex_normals


@dataclass(frozen=True)
class RefinementSchedule:
    """Per round: stiffness α and the largest pair distance kept (template units, cm in the canonical frame)."""

    # four rounds × two closest-point updates: as close as six rounds (0.10–0.25 mm on marching-cubes heads) for
    # fewer factorisations; the first, stiff round reaches 3 cm so that a neck or jaw far from the prior still
    # gets matched (MakeHuman's head: neck 6.2 → 0.2 mm)
    stiffness: tuple[float, ...] = (30.0, 10.0, 1.0, 0.1)
    max_distance: tuple[float, ...] = (3.0, 1.5, 0.6, 0.3)
    iterations: tuple[int, ...] = (1, 2, 2, 2)  # per round: closest points recomputed this often per factorisation
    min_normal_dot: float = 0.5
    tangential_pull: float = 0.3  # 0: pure point-to-plane (slides freely along the input), 1: point-to-point
    landmark_weight: float = 20.0
    min_improvement: float = 0.01  # stop when a round lowers the matched mean distance by less than this fraction


@dataclass
class Refinement:
    points: np.ndarray  # (V, 3) float64 refined surface vertices
    constrained: np.ndarray  # (V,) bool: the vertex had an accepted input match in the last round
    matched_distance: list[float] = field(default_factory=list)  # mean distance of accepted pairs per iteration
    rounds: int = 0


class SurfaceRefiner:
    """Refines many heads of one reference surface (the Laplacian is built once)."""

    def __init__(self, triangles: np.ndarray, num_vertices: int, schedule: RefinementSchedule = RefinementSchedule()):
        if not len(schedule.stiffness) == len(schedule.max_distance) == len(schedule.iterations):
            raise ValueError("the schedule needs one max_distance and one iteration count per stiffness")
        self.triangles = np.asarray(triangles, np.int64)
        self.num_vertices = int(num_vertices)
        self.schedule = schedule
        laplacian = uniform_laplacian(self.num_vertices, self.triangles)
        self.smoothness = (laplacian.T @ laplacian).tocsc()  # (V, V)

    def refine(self, prior: np.ndarray, target: TriangleSurface, landmark_ids: np.ndarray | None = None,
               landmark_targets: np.ndarray | None = None) -> Refinement:
        """Deform ``prior`` (V, 3) onto ``target``; landmarks (K,) ids with (K, 3) targets pin correspondence."""
        schedule = self.schedule
        prior = np.asarray(prior, np.float64)
        landmark_diagonal = np.zeros(self.num_vertices)
        landmark_rhs = np.zeros((self.num_vertices, 3))
        if landmark_ids is not None and len(landmark_ids):
            np.add.at(landmark_diagonal, landmark_ids, schedule.landmark_weight)
            np.add.at(landmark_rhs, landmark_ids, schedule.landmark_weight * np.asarray(landmark_targets, np.float64))
        x = prior.copy()
        orientation = 0.0
        result = Refinement(x, np.zeros(self.num_vertices, bool))
        previous = np.inf
        # vertices far from every input point in the first round (the back of the head on a face scan) cannot be
        # matched later: the whole refinement moves the surface less than the first round's reach
        first = target.closest(x)
        nearby = np.flatnonzero(first.distance <= 2.0 * schedule.max_distance[0])
        for stiffness, max_distance, iterations in zip(schedule.stiffness, schedule.max_distance, schedule.iterations):
            factor = None
            for _ in range(iterations):
                hits = first.subset(nearby) if first is not None else target.closest(x[nearby])
                first = None
                if factor is None:
                    normals = vertex_normals(x, self.triangles)[nearby]
                    dots = (normals * hits.normals).sum(1)
                    if orientation == 0.0:  # input normals may point inwards: agree with the majority
                        orientation = 1.0 if np.median(dots) >= 0 else -1.0
                    accepted = (orientation * dots >= schedule.min_normal_dot) & (hits.distance <= max_distance) \
                        & ~hits.on_boundary
                    weight = np.zeros(self.num_vertices)
                    weight[nearby] = accepted / (1.0 + (hits.distance / max_distance) ** 2)  # robust
                    system = stiffness * self.smoothness + sp.diags(weight + landmark_diagonal)
                    factor = splu(system.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
                    result.constrained = np.zeros(self.num_vertices, bool)
                    result.constrained[nearby] = accepted
                step = hits.points - x[nearby]  # (P, 3) to the closest point
                along_normal = (step * hits.normals).sum(1, keepdims=True) * hits.normals
                projected = x.copy()  # (V, 3) onto the tangent plane at the closest point, and part of the way to it
                projected[nearby] += along_normal + schedule.tangential_pull * (step - along_normal)
                x = factor.solve(stiffness * (self.smoothness @ prior) + weight[:, None] * projected + landmark_rhs)
                result.matched_distance.append(float(hits.distance[accepted].mean()) if accepted.any() else float("nan"))
            result.rounds += 1
            current = result.matched_distance[-1]
            if stiffness <= schedule.stiffness[-1] * 10 and previous - current < schedule.min_improvement * previous:
                break  # fine rounds no longer bring the surface closer
            previous = current
        result.points = x
        return result
