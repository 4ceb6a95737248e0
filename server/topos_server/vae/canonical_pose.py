"""Bringing a head surface of unknown pose and scale into the reference frame of the template.

:class:`PoseCanonicalizer` fits a similarity (rotation, uniform scale, translation) that maps input
surface points onto the template's skin (the mean head): a global search over the 24 proper axis
assignments of the two point sets' principal axes, each refined by a few rounds of trimmed
point-to-point ICP (Umeyama per round), then the best one refined further.

Training runs the *same* refinement from a perturbed start, so the network sees inputs
canonicalised exactly as at inference time (residual pose and scale errors included).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from ..mesh_registration import Similarity, umeyama
from .surface_points import sample_surface


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


def compose(outer: Similarity, inner: Similarity) -> Similarity:
    """``outer ∘ inner``."""
    return Similarity(outer.scale * inner.scale, outer.rotation @ inner.rotation,
                      outer.scale * outer.rotation @ inner.translation + outer.translation)


def invert(sim: Similarity) -> Similarity:
    rot_t = sim.rotation.T
    return Similarity(1.0 / sim.scale, rot_t, -(rot_t @ sim.translation) / sim.scale)


class PoseCanonicalizer:
    """Similarity alignment of arbitrary head surfaces onto a template surface (the mean head's skin)."""

    def __init__(self, template_points: np.ndarray, template_triangles: np.ndarray, num_samples: int = 12000,
                 seed: int = 0):
        rng = np.random.default_rng(seed)
        self.samples, self.normals, _ = sample_surface(template_points, template_triangles, num_samples, rng)  # (S, 3)
        self.tree = cKDTree(self.samples)
        self.coarse = PoseCanonicalizer.__new__(PoseCanonicalizer)  # a sparser copy for the global search
        self.coarse.samples = self.samples[:: 4]
        self.coarse.normals = self.normals[:: 4]
        self.coarse.tree = cKDTree(self.coarse.samples)
        self.centroid, self.axes, self.rms = principal_frame(self.samples)

    def refine(self, points: np.ndarray, start: Similarity, iterations: int = 12, trim: float = 2.5,
               fixed_scale: bool = False) -> Similarity:
        """Trimmed point-to-point similarity ICP of ``points`` (P, 3) onto the template, from ``start``.

        ``fixed_scale`` keeps ``start.scale`` (rigid ICP): the global search needs it, since a
        wrong orientation can otherwise shrink the input into a small blob that lies near the template.
        """
        points = np.asarray(points, np.float64)
        sim = start
        for _ in range(iterations):
            dist, idx = self.tree.query(sim.apply(points))
            keep = dist <= max(trim * np.median(dist), 1e-6)
            sim = umeyama(points[keep], self.samples[idx[keep]])
            if fixed_scale:
                source, target = points[keep], self.samples[idx[keep]]
                translation = target.mean(0) - start.scale * sim.rotation @ source.mean(0)
                sim = Similarity(start.scale, sim.rotation, translation)
        return sim

    def refine_to_plane(self, points: np.ndarray, start: Similarity, iterations: int = 10,
                        trim: float = 2.5) -> Similarity:
        """Trimmed point-to-plane similarity ICP (linearised rotation, scale and translation per round).

        Converges in a few rounds where point-to-point ICP creeps along the surface for dozens.
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
        return sim

    def normal_offsets(self, canonical_points: np.ndarray) -> np.ndarray:
        """(P, 1) signed distance of canonical-frame points from the template along its normal."""
        _, idx = self.tree.query(np.asarray(canonical_points, np.float64))
        return ((canonical_points - self.samples[idx]) * self.normals[idx]).sum(1, keepdims=True)

    def two_sided_residual(self, points: np.ndarray, points_tree: cKDTree, sim: Similarity) -> float:
        """Mean of input→template and template→input trimmed distances (template units)."""
        forward, _ = self.tree.query(sim.apply(points))
        backward, _ = points_tree.query(invert(sim).apply(self.samples[:: max(1, len(self.samples) // 2000)]))
        backward = backward * sim.scale
        trim = lambda d: float(np.sort(d)[: max(1, int(0.9 * len(d)))].mean())
        return 0.5 * (trim(forward) + trim(backward))

    def align(self, points: np.ndarray, search_points: int = 300, seed: int = 0, keep_best: int = 4) -> Similarity:
        """The similarity mapping ``points`` (P, 3) sampled from a head surface into the template frame.

        A head's two smaller principal axes have nearly equal variance, so candidates are the 24
        axis assignments combined with rolls of 0°, 30° and 60° about the long axis (30° steps all
        round); the best few after a short rigid ICP are refined, and the best of those wins.
        """
        points = np.asarray(points, np.float64)
        if len(points) < 10 or not np.isfinite(points).all():
            raise ValueError("need at least 10 finite surface points to find the head's pose")
        centroid, axes, rms = principal_frame(points)
        if rms <= 0:
            raise ValueError("the input surface is degenerate (all points coincide)")
        rng = np.random.default_rng(seed)
        subset = points[rng.choice(len(points), min(search_points, len(points)), replace=False)]
        scale = self.rms / rms
        tree = cKDTree(points)
        candidates = []
        for flip in proper_axis_rotations():
            for roll in np.deg2rad([0.0, 30.0, 60.0]):
                c, s = np.cos(roll), np.sin(roll)
                roll_about_long_axis = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
                rotation = self.axes.T @ roll_about_long_axis @ flip @ axes  # input axes → template axes
                start = Similarity(scale, rotation, self.centroid - scale * rotation @ centroid)
                sim = self.coarse.refine(subset, start, iterations=5, fixed_scale=True)
                candidates.append((self.coarse.two_sided_residual(subset, tree, sim), sim))
        candidates.sort(key=lambda c: c[0])
        refined = [self.refine(subset, sim, iterations=12) for _, sim in candidates[:keep_best]]
        best = min(refined, key=lambda sim: self.two_sided_residual(subset, tree, sim))
        return self.refine_to_plane(points, best, iterations=10)
