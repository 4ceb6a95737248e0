"""Bringing a head surface of unknown pose and scale into the reference frame of the template.

:class:`PoseCanonicalizer` fits a similarity (rotation, uniform scale, translation) that maps input
surface points onto the template's skin (the mean head): a global search over the 24 proper axis
assignments of the two point sets' principal axes (× 3 rolls about the long axis), all candidates
refined *together* by a few rounds of trimmed rigid ICP against a voxel grid of nearest template
samples (one array lookup per point instead of a k-d tree query), then the best few refined by
point-to-plane similarity ICP against the exact samples, and restarts from small tilts around the
winner (the lowest residual wins) before a last refinement.

Training runs the same point-to-plane refinement from a perturbed start, so the network sees inputs
canonicalised exactly as at inference time (residual pose and scale errors included).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from topos_server.geometry.registration import Similarity
from topos_server.geometry.surface_points import sample_surface

# points in the last refinement (an even subset when given more: stratified samples lie along a space-filling curve)
FINAL_POINTS = 4096
PROBE_POINTS = 512  # points of the restarts around the search's winner
RESTART_TILT_DEG = 8.0


def proper_axis_rotations() -> np.ndarray:
    """(24, 3, 3) signed permutation matrices with determinant +1."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    return np.stack(mats)


def principal_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centroid (3,), principal axes as rows (3, 3) (largest variance first), RMS radius."""
    centroid = points.mean(0)
    centred = points - centroid
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centroid, vt, float(np.sqrt((centred ** 2).sum(1).mean()))


def fibonacci_directions(count: int) -> np.ndarray:
    """(count, 3) unit vectors spread evenly over the sphere."""
    k = np.arange(count) + 0.5
    z = 1.0 - 2.0 * k / count
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * k
    r = np.sqrt(1.0 - z ** 2)
    return np.stack([r * np.cos(azimuth), r * np.sin(azimuth), z], 1)


def directions_around(centre: np.ndarray, rings: tuple[float, ...], per_ring: int) -> np.ndarray:
    """(1 + len(rings)·per_ring, 3) unit vectors: ``centre`` and rings of ``per_ring`` at the given angles (degrees)."""
    centre = centre / np.linalg.norm(centre)
    side = np.cross(centre, np.eye(3)[np.argmin(np.abs(centre))])
    side /= np.linalg.norm(side)
    out = [centre]
    for ring in np.deg2rad(rings):
        tilted = rotation_about(side, ring) @ centre
        out += [rotation_about(centre, a) @ tilted for a in np.linspace(0.0, 2 * np.pi, per_ring, endpoint=False)]
    return np.stack(out)


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` about the unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation taking unit vector ``a`` to unit vector ``b``."""
    axis = np.cross(a, b)
    sine, cosine = np.linalg.norm(axis), float(np.dot(a, b))
    if sine < 1e-9:
        if cosine > 0:
            return np.eye(3)
        ortho = np.eye(3)[np.argmin(np.abs(a))]
        axis = np.cross(a, ortho)
        return rotation_about(axis / np.linalg.norm(axis), np.pi)
    return rotation_about(axis / sine, float(np.arctan2(sine, cosine)))


def extreme_point(points: np.ndarray, direction: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """(3,) mean of the ``fraction`` of ``points`` farthest along ``direction`` (robust to a stray point)."""
    height = points @ direction
    count = max(1, int(fraction * len(points)))
    return points[np.argpartition(-height, count - 1)[:count]].mean(0)


def compose(outer: Similarity, inner: Similarity) -> Similarity:
    """``outer ∘ inner``."""
    return Similarity(outer.scale * inner.scale, outer.rotation @ inner.rotation,
                      outer.scale * outer.rotation @ inner.translation + outer.translation)


def invert(sim: Similarity) -> Similarity:
    rot_t = sim.rotation.T
    return Similarity(1.0 / sim.scale, rot_t, -(rot_t @ sim.translation) / sim.scale)


class NearestSampleGrid:
    """Nearest sample of a point set for any query, approximated by the nearest to the query's voxel centre.

    ``resolution`` cells along the longest side of the samples' bounding box (padded by ``margin`` of
    it); queries outside the grid use the border cell. Error ≤ half a cell diagonal — plenty for a
    coarse pose search, and every lookup is one fancy index.
    """

    def __init__(self, samples: np.ndarray, resolution: int = 48, margin: float = 0.5):
        samples = np.asarray(samples, np.float64)
        low, high = samples.min(0), samples.max(0)
        pad = margin * float((high - low).max())
        self.origin = low - pad
        self.cell = float((high - low + 2 * pad).max()) / resolution
        self.shape = np.maximum(np.ceil((high - low + 2 * pad) / self.cell).astype(int), 1)
        axes = [self.origin[k] + self.cell * (np.arange(self.shape[k]) + 0.5) for k in range(3)]
        centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        _, nearest = cKDTree(samples).query(centres)
        self.nearest = nearest.reshape(tuple(self.shape))  # (X, Y, Z) sample index

    def lookup(self, queries: np.ndarray) -> np.ndarray:
        """(…,) sample indices for queries (…, 3)."""
        cells = np.clip(((queries - self.origin) / self.cell).astype(np.int64), 0, self.shape - 1)
        return self.nearest[cells[..., 0], cells[..., 1], cells[..., 2]]


def batched_rigid_fit(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rotations (C, 3, 3) minimising Σ w ‖R (s − s̄) − (t − t̄)‖² per candidate; source, target (C, K, 3), weights (C, K)."""
    w = (weights / np.maximum(weights.sum(1, keepdims=True), 1e-12))[:, :, None]  # (C, K, 1)
    s = source - (w * source).sum(1, keepdims=True)
    t = target - (w * target).sum(1, keepdims=True)
    covariance = np.matmul((w * t).transpose(0, 2, 1), s)  # (C, 3, 3)
    u, _, vt = np.linalg.svd(covariance)
    d = np.sign(np.linalg.det(u @ vt))
    d[d == 0] = 1.0
    u[:, :, 2] *= d[:, None]
    return u @ vt


class PoseCanonicalizer:
    """Similarity alignment of arbitrary head surfaces onto a template surface (the mean head's skin)."""

    def __init__(self, template_points: np.ndarray, template_triangles: np.ndarray, num_samples: int = 12000,
                 seed: int = 0):
        rng = np.random.default_rng(seed)
        self.samples, self.normals, _ = sample_surface(template_points, template_triangles, num_samples, rng)  # (S, 3)
        self.tree = cKDTree(self.samples)
        self.grid = NearestSampleGrid(self.samples)
        self.centroid, self.axes, self.rms = principal_frame(self.samples)

    def refine_to_plane(self, points: np.ndarray, start: Similarity, iterations: int = 10,
                        trim: float = 2.5, tolerance: float = 1e-5) -> Similarity:
        """Trimmed point-to-plane similarity ICP (linearised rotation, scale and translation per round).

        Converges in a few rounds where point-to-point ICP creeps along the surface for dozens; stops
        early once a round moves the surface by less than ``tolerance`` of the template's size.
        """
        points = np.asarray(points, np.float64)
        sim = start
        for _ in range(iterations):
            mapped = sim.apply(points)
            dist, idx = self.tree.query(mapped)
            keep = dist <= max(trim * np.median(dist), 1e-6)
            y, q, n = mapped[keep], self.samples[idx[keep]], self.normals[idx[keep]]
            centre = y.mean(0)
            # n · (y + ω × y' + σ y' + t − q) = 0 with y' = y − centre: unknowns (ω, σ, t)
            yc = y - centre
            jacobian = np.c_[np.cross(yc, n), (n * yc).sum(1), n]  # (K, 7)
            residual = -(n * (y - q)).sum(1)
            step, *_ = np.linalg.lstsq(jacobian, residual, rcond=None)
            omega, sigma, t = step[:3], step[3], step[4:]
            angle = np.linalg.norm(omega)
            k = np.array([[0, -omega[2], omega[1]], [omega[2], 0, -omega[0]], [-omega[1], omega[0], 0]])
            rot = np.eye(3) if angle < 1e-12 else (np.eye(3) + np.sin(angle) / angle * k
                                                   + (1 - np.cos(angle)) / angle ** 2 * k @ k)
            factor = 1.0 + sigma
            update = Similarity(factor, rot, centre + t - factor * rot @ centre)  # about the centre
            sim = compose(update, sim)
            if max(angle, abs(sigma), np.linalg.norm(t) / self.rms) < tolerance:
                break
        return sim

    def normal_offsets(self, canonical_points: np.ndarray) -> np.ndarray:
        """(P, 1) signed distance of canonical-frame points from the template along its normal."""
        _, idx = self.tree.query(np.asarray(canonical_points, np.float64))
        return ((canonical_points - self.samples[idx]) * self.normals[idx]).sum(1, keepdims=True)

    def align(self, points: np.ndarray, search_points: int = 300, seed: int = 0, keep_best: int = 3,
              search_iterations: int = 6) -> Similarity:
        """The similarity mapping ``points`` (P, 3) sampled from a head surface into the template frame.

        A head's two smaller principal axes have nearly equal variance, so candidates are the 24
        axis assignments combined with rolls of 0°, 30° and 60° about the long axis (30° steps all
        round). All 72 run a short trimmed rigid ICP at once on ``search_points`` points; the best
        few by two-sided distance are refined by point-to-plane similarity ICP on every point.
        """
        points = np.asarray(points, np.float64)
        if len(points) < 10 or not np.isfinite(points).all():
            raise ValueError("need at least 10 finite surface points to find the head's pose")
        centroid, axes, rms = principal_frame(points)
        if rms <= 0:
            raise ValueError("the input surface is degenerate (all points coincide)")
        rng = np.random.default_rng(seed)
        subset = points[rng.choice(len(points), min(search_points, len(points)), replace=False)]  # (K, 3)
        scale = self.rms / rms
        rolls = np.deg2rad([0.0, 30.0, 60.0])
        roll_about_long_axis = np.stack([np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
                                         for r in rolls])  # (3, 3, 3)
        rotations = np.einsum("ij,rjk,fkl,lm->frim", self.axes.T, roll_about_long_axis, proper_axis_rotations(),
                              axes).reshape(-1, 3, 3)  # (C, 3, 3): input axes → template axes
        centred = scale * (subset - centroid)  # (K, 3)
        translations = np.broadcast_to(self.centroid, (len(rotations), 3)).copy()  # (C, 3)
        for _ in range(search_iterations):
            mapped = np.matmul(centred, rotations.transpose(0, 2, 1)) + translations[:, None]  # (C, K, 3)
            target = self.samples[self.grid.lookup(mapped)]  # (C, K, 3)
            distance = np.linalg.norm(mapped - target, axis=-1)  # (C, K)
            keep = (distance <= 2.5 * np.median(distance, axis=1, keepdims=True)).astype(np.float64)
            rotations = batched_rigid_fit(np.broadcast_to(centred, mapped.shape), target, keep)
            w = keep / keep.sum(1, keepdims=True)  # (C, K)
            translations = (w[:, :, None] * target).sum(1) - np.matmul(rotations, (w @ centred)[:, :, None])[:, :, 0]
        scores = self._two_sided_scores(subset, centroid, scale, rotations, translations)
        starts = [Similarity(scale, rotations[c], translations[c] - scale * rotations[c] @ centroid)
                  for c in np.argsort(scores)[:keep_best]]
        refined = [self.refine_to_plane(subset, start, iterations=6) for start in starts]
        best = min(refined, key=lambda sim: self._two_sided_scores(
            subset, np.zeros(3), sim.scale, sim.rotation[None], sim.translation[None])[0])
        final_points = points[:: max(1, len(points) // FINAL_POINTS)]
        # the point-to-plane basin of a head that differs from the mean head is wide and uneven: restart
        # from small tilts around the winner and keep the lowest residual, so that two meshes of one head
        # settle in the same minimum
        probe = points[:: max(1, len(points) // PROBE_POINTS)]
        restarts = [best] + [compose(self._tilt(axis, sign * np.deg2rad(RESTART_TILT_DEG)), best)
                             for axis in range(3) for sign in (1.0, -1.0)]
        restarts = [self.refine_to_plane(probe, start, iterations=6) for start in restarts]
        best = min(restarts, key=lambda sim: self.plane_residual(probe, sim))
        return self.refine_to_plane(final_points, best, iterations=8)

    def align_partial(self, points: np.ndarray, normals: np.ndarray, scale_guess: float,
                      facing: np.ndarray | None = None, search_points: int = 150, seed: int = 0, keep_best: int = 5,
                      search_iterations: int = 5,
                      relative_scales: tuple[float, ...] = (0.5, 0.6, 0.72, 0.86)) -> Similarity:
        """:meth:`align` for a surface that covers only part of a head (a face-only scan, a mask).

        Principal axes and centroids say nothing about where a face patch sits on a head, so the
        search is over where the patch's mean outward normal points on the template (24 directions all
        round × 8 rolls about each; with ``facing``, the template direction most partial scans face — the
        face's — 17 directions within 40° of it × 12 rolls) and over scales (``relative_scales`` × ``scale_guess``), each candidate
        placed by matching the patch's extreme point along its mean normal with the template's
        extreme point along that direction, then refined like :meth:`align` but scored one-sided
        (input → template only: the template has surface where the input has none).
        """
        points = np.asarray(points, np.float64)
        normals = np.asarray(normals, np.float64)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(points), min(search_points, len(points)), replace=False)
        subset = points[pick]  # (K, 3)
        mean_normal = normals.mean(0)
        if np.linalg.norm(mean_normal) < 1e-9:
            return self.align(points, seed=seed)  # closed surface: no side to go by
        mean_normal /= np.linalg.norm(mean_normal)
        if facing is None:
            directions = fibonacci_directions(24)  # (D, 3) template directions the patch may face
            rolls = np.deg2rad(np.arange(0.0, 360.0, 45.0))
        else:
            directions = directions_around(np.asarray(facing, np.float64), rings=(20.0, 40.0), per_ring=8)
            rolls = np.deg2rad(np.arange(0.0, 360.0, 30.0))
        rotations = np.stack([rotation_about(d, roll) @ rotation_between(mean_normal, d)
                              for d in directions for roll in rolls])  # (C, 3, 3)
        facing = np.repeat(directions, len(rolls), axis=0)  # (C, 3)
        input_tip = extreme_point(subset, mean_normal)  # (3,)
        template_tips = np.stack([extreme_point(self.samples, d) for d in facing])  # (C, 3)
        best = []
        for relative in relative_scales:
            scale = scale_guess * relative
            centred = scale * (subset - input_tip)  # (K, 3)
            rot, trans = rotations.copy(), template_tips.copy()
            for _ in range(search_iterations):
                mapped = np.einsum("kj,cij->cki", centred, rot) + trans[:, None]  # (C, K, 3)
                target = self.samples[self.grid.lookup(mapped)]
                distance = np.linalg.norm(mapped - target, axis=-1)  # (C, K)
                keep = (distance <= 2.5 * np.median(distance, axis=1, keepdims=True)).astype(np.float64)
                rot = batched_rigid_fit(np.broadcast_to(centred, mapped.shape), target, keep)
                w = keep / keep.sum(1, keepdims=True)
                trans = (w[:, :, None] * target).sum(1) - np.matmul(rot, (w @ centred)[:, :, None])[:, :, 0]
            mapped = np.einsum("kj,cij->cki", centred, rot) + trans[:, None]
            _, nearest = self.tree.query(mapped.reshape(-1, 3))
            offset = mapped.reshape(-1, 3) - self.samples[nearest]
            plane = np.abs((offset * self.normals[nearest]).sum(1)).reshape(len(rot), -1)  # (C, K)
            scores = np.sort(plane, axis=1)[:, : int(0.9 * plane.shape[1])].mean(1)
            for c in np.argsort(scores)[:keep_best]:
                best.append((scores[c], Similarity(scale, rot[c], trans[c] - scale * rot[c] @ input_tip)))
        best.sort(key=lambda item: item[0])
        probe = points[:: max(1, len(points) // PROBE_POINTS)]
        refined = [self.refine_to_plane(probe, sim, iterations=6) for _, sim in best]
        # one-sided fits can shrink the patch onto any small flat spot: keep scales near where they started
        plausible = [sim for sim, (_, start) in zip(refined, best) if 0.7 < sim.scale / start.scale < 1.4] or refined
        winner = min(plausible, key=lambda sim: self.plane_residual(probe, sim))
        return self.refine_to_plane(points[:: max(1, len(points) // FINAL_POINTS)], winner, iterations=8)

    def _tilt(self, axis: int, angle: float) -> Similarity:
        """A rotation by ``angle`` about template axis ``axis`` through the template's centroid."""
        k = np.zeros((3, 3))
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        k[i, j], k[j, i] = -1.0, 1.0
        rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
        return Similarity(1.0, rotation, self.centroid - rotation @ self.centroid)

    def plane_residual(self, points: np.ndarray, sim: Similarity, keep: float = 0.9) -> float:
        """Mean of the smallest ``keep`` fraction of point-to-plane distances of ``sim(points)`` to the template."""
        mapped = sim.apply(points)
        _, idx = self.tree.query(mapped)
        distance = np.abs(((mapped - self.samples[idx]) * self.normals[idx]).sum(1))
        return float(np.sort(distance)[: max(1, int(keep * len(distance)))].mean())

    def _two_sided_scores(self, subset: np.ndarray, centroid: np.ndarray, scale: float, rotations: np.ndarray,
                          translations: np.ndarray, count: int = 400) -> np.ndarray:
        """(C,) mean of trimmed input→template and template→input distances for candidates
        x ↦ scale · R_c (x − centroid) + t_c (template units)."""
        mapped = np.matmul(scale * (subset - centroid), rotations.transpose(0, 2, 1)) + translations[:, None]  # (C, K, 3)
        forward = np.linalg.norm(mapped - self.samples[self.grid.lookup(mapped)], axis=-1)  # (C, K)
        template = self.samples[:: max(1, len(self.samples) // count)]  # (T, 3)
        # template samples taken into the input frame (scaled back to template units there)
        back = np.matmul(template[None] - translations[:, None], rotations)  # (C, T, 3): Rᵀ (y − t)
        backward, _ = cKDTree(scale * (subset - centroid)).query(back.reshape(-1, 3))
        backward = backward.reshape(len(rotations), -1)

        def trimmed(d):
            return np.sort(d, axis=1)[:, : max(1, int(0.9 * d.shape[1]))].mean(1)

        return 0.5 * (trimmed(forward) + trimmed(backward))
