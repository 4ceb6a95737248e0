"""Fill what the photo did not see, without holes or seams.

Four pieces, used in this order by the baker:

1. :func:`diffuse_vertex_values`: the partly observed texels are gathered onto the mesh vertices
   (each texel adds its value to its triangle's three vertices with its barycentric weights), then a
   harmonic fill on the mesh graph (a sparse screened-Laplace solve) gives every skin vertex a value.
   Because it lives on the 3D vertices it crosses UV seams and UDIM tiles: a texture island that the
   photo never saw (the back of the head) takes the colour of the skin next to it *in 3D*.
2. :func:`fill_islands`: inside the UV islands, texels keep their own observation where it is
   confident; elsewhere they take the vertex field (interpolated with the texel's barycentrics) plus
   the smoothly filled difference between observations and that field (a push-pull of the residual),
   so the transition from photo to fill has no step and keeps the local colour.
3. :func:`seen_asymmetry` (with the bake's ``mirror_asymmetry``): what the fill copied from the mirror side
   gets the face's own left/right difference added (the light's and the skin's asymmetry: where a texel and
   its mirror point were both seen their blurred difference is known; push-pull extends it over the tile).
   Without it a cheek the photo did not see takes the seen cheek's light as well as its colour.
4. :func:`extend_beyond_islands`: texels outside the islands take a push-pull extension of the
   island colours, so bilinear and mip-mapped lookups at island borders never reach background.

Push-pull (Gortler et al. 1996 style): a Gaussian pyramid of weighted values and weights (pyrDown),
then from coarse to fine each level keeps its own average where its weight is high and the upsampled
(pyrUp) coarser level where it is low. Every step is a fixed sequence of OpenCV/numpy array ops, so
the result is deterministic.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from topos_server.texture.texel_chunks import in_chunks

PIN_STRENGTH = 10.0  # how firmly a fully observed vertex keeps its value against the smoothness term
SCREEN = 1e-4  # pull towards the mean where nothing is known (keeps the solve well posed)
ASYMMETRY_SCALE = 1.0 / 64.0  # blur (of the tile side) of the left/right difference: the light's, not the pores'


def gather_to_vertices(num_points: int, corners: np.ndarray, barycentric: np.ndarray,
                       values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scatter texel values onto vertices.

    corners: (3, K) vertex ids of each texel's triangle; barycentric: (3, K); values: (C, K);
    weights: (K,). Returns per vertex the weighted sums (C, N), the weight sums (N,) and the sums of
    the barycentric weights alone (N,) (what the weight sum would be if every texel had weight 1),
    all float64.
    """
    ids = corners.ravel()
    bary = barycentric.astype(np.float64).ravel()  # (3K,)
    w = bary * np.tile(weights.astype(np.float64), 3)
    sums = np.stack([np.bincount(ids, weights=w * np.tile(values[c].astype(np.float64), 3), minlength=num_points)
                     for c in range(values.shape[0])])
    return sums, np.bincount(ids, weights=w, minlength=num_points), np.bincount(ids, weights=bary, minlength=num_points)


_LAPLACIANS: dict[bytes, tuple] = {}


def _graph_laplacian(triangles: np.ndarray, num_points: int):
    """(used vertex ids, sparse graph Laplacian over them) for the triangles' edges (cached)."""
    key = hashlib.sha1(np.ascontiguousarray(triangles, np.int64).tobytes()).digest() + num_points.to_bytes(8, "little")
    if key not in _LAPLACIANS:
        used = np.unique(triangles)
        local = np.full(num_points, -1, np.int64)
        local[used] = np.arange(used.size)
        t = local[triangles]  # (T, 3) local ids
        edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])  # (3T, 2)
        edges = np.unique(np.sort(edges, axis=1), axis=0)
        n = used.size
        adjacency = sp.coo_matrix((np.ones(2 * len(edges)), (np.concatenate([edges[:, 0], edges[:, 1]]),
                                                             np.concatenate([edges[:, 1], edges[:, 0]]))),
                                  shape=(n, n)).tocsr()
        laplacian = (sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency).tocsc()
        if len(_LAPLACIANS) > 4:
            _LAPLACIANS.clear()
        _LAPLACIANS[key] = (used, laplacian)
    return _LAPLACIANS[key]


def diffuse_vertex_values(triangles: np.ndarray, num_points: int, values: np.ndarray,
                          confidence: np.ndarray) -> np.ndarray:
    """Harmonic fill of per-vertex values over the mesh given by ``triangles``.

    triangles: (T, 3) vertex ids (only these vertices take part); values: (C, N); confidence: (N,)
    in [0, 1] (0 = unknown). Solves ``(PIN·diag(c) + L + ε I) x = PIN·c·v + ε·mean`` with ``L`` the
    graph Laplacian of the triangles' edges, for the vertices not fully observed (``c = 1`` keep
    their value). Returns (C, N) float64 (vertices outside the triangles keep ``values``).
    """
    used, laplacian = _graph_laplacian(triangles, num_points)
    confidence_used = np.clip(confidence[used], 0.0, 1.0)
    c = PIN_STRENGTH * confidence_used  # (n,)
    v = values[:, used].astype(np.float64)  # (C, n)
    mean = (v * c).sum(axis=1) / c.sum() if c.sum() > 0 else np.zeros(values.shape[0])
    # fully observed vertices keep their value exactly: only the others are unknowns (a smaller solve)
    fixed = confidence_used >= 1.0 - 1e-6
    free = np.flatnonzero(~fixed)
    solution = v.T.copy()  # (n, C)
    if free.size:
        fixed_ids = np.flatnonzero(fixed)
        lap_free = laplacian[free][:, free]
        system = (sp.diags(c[free] + SCREEN, format="csc") + lap_free).tocsc()  # symmetric positive definite
        rhs = (c[free] * v[:, free] + SCREEN * mean[:, None]).T  # (f, C)
        if fixed_ids.size:
            rhs -= laplacian[free][:, fixed_ids] @ v[:, fixed_ids].T
        factor = splu(system, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
        solution[free] = factor.solve(np.ascontiguousarray(rhs)).reshape(free.size, -1)
    out = np.array(values, dtype=np.float64, copy=True)
    out[:, used] = solution.T
    return out


class PushPull:
    """Push-pull fill of any number of planes that share one weight image (its pyramid is built once).

    ``fill(premultiplied, out)``: (H, W) float32 plane of value × weight → (H, W) float32: ≈ the value
    where the weight is 1, a smooth blend elsewhere, 0 where all weights are 0. The coarser levels of
    each fill live in buffers of the object, reused plane after plane (fresh memory costs a page fault
    per 4 KiB: at 2048² that was most of a fill's time).
    """

    def __init__(self, weights: np.ndarray):
        levels = [np.ascontiguousarray(weights, np.float32)]  # (H, W) in [0, 1], then halved sizes
        while min(levels[-1].shape) > 1:
            levels.append(cv2.pyrDown(levels[-1]))
        self.weights = levels
        self.missing = [1.0 - weight for weight in levels[:-1]]  # (1 − weight) per level but the coarsest
        self._values = [np.empty_like(weight) for weight in levels[1:]]  # the plane's pyramid below level 0
        self._filled = [np.empty_like(weight) for weight in levels[1:]]  # filled levels below level 0

    def fill(self, premultiplied: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The filled plane, in ``out`` when given ((H, W) float32, not ``premultiplied`` itself)."""
        values = [np.ascontiguousarray(premultiplied, np.float32)]
        for buffer in self._values:
            values.append(cv2.pyrDown(values[-1], dst=buffer))
        coarse_weight = self.weights[-1]
        filled = self._filled[-1]
        filled[...] = 0.0
        np.divide(values[-1], coarse_weight, out=filled, where=coarse_weight > 1e-8)
        destinations = [out if out is not None else np.empty_like(values[0])] + self._filled[:-1]  # levels 0 … L−2
        for value, missing, destination in zip(reversed(values[:-1]), reversed(self.missing), reversed(destinations)):
            h, w = missing.shape
            # weights are ≤ 1, so weight × own average = the premultiplied value itself:
            # filled = own·weight + up·(1 − weight) = premultiplied + up·(1 − weight)
            filled = cv2.pyrUp(filled, dst=destination, dstsize=(w, h))
            filled *= missing
            filled += value
        return filled


def push_pull(premultiplied: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Smoothly fill an image from weighted samples (:class:`PushPull` on each plane).

    premultiplied: (C, H, W) float32 planes, value × weight; weights: (H, W) float32 in [0, 1].
    Returns (C, H, W) float32. (Planes rather than interleaved channels: OpenCV and numpy run
    several times faster on contiguous single-channel images.)
    """
    fill = PushPull(weights)
    return np.stack([fill.fill(plane) for plane in premultiplied])


def fill_islands(observed: np.ndarray, coverage: np.ndarray, base: np.ndarray, island: np.ndarray,
                 trust: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Blend observations into a base field inside the islands.

    observed: (C, H, W) observation (meaningful where coverage > 0); coverage: (H, W) in [0, 1];
    base: (C, H, W) the vertex field, or an iterable of its C (H, W) planes (made one at a time, used
    in turn); island: (H, W) bool; trust: (H, W) in [0, coverage], how much
    each observation may spread into its unobserved surroundings (default: coverage). Returns
    (C, H, W) float32, valid on the islands (0 outside), in ``out`` when given (which may be
    ``observed`` itself: the planes are done one at a time).
    """
    a = coverage * island  # (H, W)
    spread = a if trust is None else trust * island
    fill = PushPull(spread)
    out = np.empty(observed.shape, np.float32) if out is None else out
    flat_a, flat_spread, flat_island = a.reshape(-1), spread.reshape(-1), island.reshape(-1)
    premultiplied = np.empty(a.shape, np.float32)  # (H, W) buffers reused plane after plane
    correction = np.empty(a.shape, np.float32)
    for plane, (seen, field) in enumerate(zip(observed, base)):
        seen, field = seen.reshape(-1), field.reshape(-1)
        flat_premultiplied = premultiplied.reshape(-1)

        def premultiply(chunk: slice) -> None:
            np.multiply(seen[chunk] - field[chunk], flat_spread[chunk], out=flat_premultiplied[chunk])

        in_chunks(premultiply, seen.size)
        residual = fill.fill(premultiplied, out=correction).reshape(-1)  # smooth correction
        blended = out[plane].reshape(-1)

        def blend(chunk: slice) -> None:  # a·observed + (1 − a)·(base + residual), on the islands only
            value = residual[chunk] + field[chunk]
            value *= 1.0 - flat_a[chunk]
            value += seen[chunk] * flat_a[chunk]
            value *= flat_island[chunk]
            blended[chunk] = value

        in_chunks(blend, seen.size)
    return out


def mirror_side(albedo: np.ndarray, weight: np.ndarray, map_x: np.ndarray,
                map_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, S, S) albedo, (S, S) weight → what each texel's mirror point saw: (C, S, S), (S, S).

    map_x, map_y: (S, S) ``cv2.remap`` maps from each texel to its mirror point (``bake.mirror_texel_map``);
    bilinear, weighted (texels nobody saw do not darken their neighbours' colour)."""
    weight = np.ascontiguousarray(weight, np.float32)
    mirror_weight = cv2.remap(weight, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mirror_premultiplied = [cv2.remap(np.ascontiguousarray(plane * weight), map_x, map_y, cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE) for plane in albedo]
    mirror_albedo = np.stack([np.divide(m, mirror_weight, out=np.zeros_like(m), where=mirror_weight > 1e-4)
                              for m in mirror_premultiplied])  # (C, S, S)
    return mirror_albedo, mirror_weight


def seen_asymmetry(albedo: np.ndarray, weight: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """The face's own left/right difference over a whole tile: (C, S, S) albedo seen with (S, S) weight and the
    tile's mirror maps (:func:`mirror_side`) → (C, S, S) float32, a texel's colour minus its mirror point's.

    Where a texel and its mirror point were both seen, their difference blurred at ASYMMETRY_SCALE of the
    tile is known; push-pull extends it over the tile. Added to what a fill copied from the mirror side, it
    carries the seen asymmetry over."""
    size = weight.shape[0]
    sigma = max(0.75, ASYMMETRY_SCALE * size)
    weight = np.clip(weight, 0.0, 1.0).astype(np.float32)
    mirror, mirror_weight = mirror_side(albedo, weight, map_x, map_y)
    both = weight * np.clip(mirror_weight, 0.0, 1.0)  # (S, S)
    both_blurred = cv2.GaussianBlur(both, (0, 0), sigma)
    difference = np.stack([cv2.GaussianBlur(np.ascontiguousarray(plane), (0, 0), sigma)
                           for plane in (albedo - mirror) * both])  # (C, S, S)
    difference = np.divide(difference, both_blurred, out=np.zeros_like(difference), where=both_blurred > 1e-3)
    known = (both_blurred > 0.05).astype(np.float32)
    return push_pull(difference * known, known)


def extend_beyond_islands(image: np.ndarray, island: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Fill the texels of (C, H, W) ``image`` outside ``island`` (bool (H, W)) from the island
    texels; those keep their value. In ``out`` when given (which may be ``image`` itself)."""
    inside = island.astype(np.float32)
    outside = ~island
    fill = PushPull(inside)
    if out is None:
        out = np.array(image, np.float32, copy=True)
    elif out is not image:
        out[...] = image
    masked, filled = np.empty(island.shape, np.float32), np.empty(island.shape, np.float32)  # (H, W) reused
    for plane in out:
        np.copyto(plane, fill.fill(np.multiply(plane, inside, out=masked), out=filled), where=outside)
    return out
