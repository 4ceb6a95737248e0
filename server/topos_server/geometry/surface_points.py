"""Points with normals drawn uniformly by area from a triangle surface — the encoder's view of a mesh.

Uniform-by-area sampling is what makes the encoder topology-blind: two triangulations of one
surface give the same distribution of points.
"""

from __future__ import annotations

import numpy as np


def face_normals_and_areas(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) unit normals (right-handed winding) and (T,) areas."""
    corners = np.asarray(points, np.float64)[np.asarray(triangles)]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    return cross / np.maximum(double_area, 1e-20)[:, None], 0.5 * double_area


def morton_codes(points: np.ndarray, bits: int = 10) -> np.ndarray:
    """(K,) Z-order codes of points (K, 3) quantised to 2^bits cells per axis of their bounding cube."""
    extent = max(float(np.ptp(points, axis=0).max()), 1e-12)
    cells = ((points - points.min(0)) / extent * ((1 << bits) - 1)).astype(np.uint64)  # (K, 3)
    code = np.zeros(len(points), np.uint64)
    for bit in range(bits):
        for axis in range(3):
            code |= ((cells[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return code


def sample_surface(points: np.ndarray, triangles: np.ndarray, count: int, rng: np.random.Generator,
                   stratified: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` points uniformly by area: (count, 3) points, (count, 3) face normals, (count,) triangle ids.

    ``stratified``: triangles are laid out along a Z-order curve of their centroids and the area
    is cut into ``count`` equal strata with one point each (systematic sampling), so the points
    cover the surface evenly — far less sampling noise in what the encoder pools than independent
    draws (``stratified=False``), and still exactly uniform by area in expectation.
    """
    points = np.asarray(points, np.float64)
    triangles = np.asarray(triangles, np.int64)
    normals, areas = face_normals_and_areas(points, triangles)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the surface has no area to sample")
    if stratified:
        order = np.argsort(morton_codes(points[triangles].mean(1)), kind="stable")
        cumulative = np.cumsum(areas[order])
        positions = (rng.random() + np.arange(count)) * (cumulative[-1] / count)
        tri = order[np.minimum(np.searchsorted(cumulative, positions, side="right"), len(order) - 1)]
    else:
        tri = rng.choice(len(triangles), count, p=areas / total)
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    a, b, c = (points[triangles[tri, k]] for k in range(3))
    return a + u[:, None] * (b - a) + v[:, None] * (c - a), normals[tri], tri


def farthest_point_indices(points: np.ndarray, count: int, chosen=None) -> np.ndarray:
    """(count,) ids of farthest-point samples of ``points`` (N, 3), continuing from the ids ``chosen``
    (default: the point nearest the centroid)."""
    points = np.asarray(points)
    if chosen is None:
        chosen = [np.argmin(np.linalg.norm(points - points.mean(0), axis=1))]
    chosen = [int(c) for c in chosen]
    distance = np.min([np.linalg.norm(points - points[c], axis=1) for c in chosen], axis=0)
    while len(chosen) < count:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.asarray(chosen[:count], np.int64)
