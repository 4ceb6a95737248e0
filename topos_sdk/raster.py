"""Triangle rasteriser in pure numpy: which triangle covers each pixel, and where inside it.

Used by the preview renderer (image space, z-buffer) and the texture baker (UV space, no depth;
image space with depth).

Conventions
-----------
- Pixel ``(x, y)`` (column, row) is sampled at its centre ``(x + 0.5, y + 0.5)`` in the same
  coordinates as ``tri_xy`` (origin at the top-left corner of the image, y down).
- A pixel centre is covered when it is strictly inside a triangle, or exactly on an edge that the
  tie rule gives to it (a top-left rule: after orienting every triangle clockwise on screen, an edge
  owns its centres when it points up, or is horizontal and points right). Edge functions are
  evaluated as ``(u - p) × (v - p)``, which is exactly antisymmetric in floating point, so two
  triangles sharing an edge never both claim, nor both miss, a centre on it: a mesh has no cracks
  and no double coverage, whatever the winding of its triangles.
- Degenerate triangles (zero area) and triangles with non-finite coordinates are ignored.
- With ``tri_depth``, the smallest interpolated depth wins (depth compared in float32); ties, and
  all overlaps when there is no depth, go to the lower triangle index.
- Barycentrics are screen-space (linear in pixel coordinates). For a perspective image use
  :func:`perspective_correct` with the corners' view depths.

How it is vectorised: triangles are grouped by the power-of-two size class of their pixel bounding
box; each class becomes a ``(T, bh, bw)`` grid of candidate pixels whose edge functions are
evaluated at once, in chunks of about ``CHUNK_CANDIDATES`` candidates (bounded memory). Each chunk
folds its covered candidates into a per-pixel key ``depth bits << 32 | triangle`` with
``np.minimum.at``; barycentrics of the winners are computed once at the end.
"""

from __future__ import annotations

import numpy as np

CHUNK_CANDIDATES = 1 << 16  # candidate pixels per chunk: work arrays of 512 KiB stay in cache
_EMPTY_KEY = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def rasterize(tri_xy: np.ndarray, width: int, height: int,
              tri_depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles given in pixel coordinates.

    tri_xy: (T, 3, 2) corner positions (x right, y down, pixel units).
    tri_depth: (T, 3) per-corner depth, smaller = closer; ``None`` for no depth test.
    Returns ``triangle_id`` (H, W) int32 (−1 where empty) and ``barycentric`` (H, W, 3) float32
    (weights of the winning triangle's three corners, zero where empty).
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    tri_xy = np.asarray(tri_xy, dtype=np.float64)
    if tri_xy.ndim != 3 or tri_xy.shape[1:] != (3, 2):
        raise ValueError(f"tri_xy must be (T, 3, 2), got {tri_xy.shape}")
    n_tri = tri_xy.shape[0]
    if n_tri >= 2**31 - 1:
        raise ValueError("too many triangles")
    if tri_depth is not None:
        tri_depth = np.asarray(tri_depth, dtype=np.float64)
        if tri_depth.shape != (n_tri, 3):
            raise ValueError(f"tri_depth must be ({n_tri}, 3), got {tri_depth.shape}")

    keys = np.full(height * width, _EMPTY_KEY, dtype=np.uint64)  # (H*W,) best key per pixel
    setup = _setup_triangles(tri_xy, tri_depth, width, height)
    if setup is not None:
        for ids, box_h, box_w in _size_classes(setup["x0"], setup["y0"], setup["x1"], setup["y1"]):
            per_tri = box_h * box_w
            step = max(1, CHUNK_CANDIDATES // per_tri)
            for start in range(0, len(ids), step):
                _rasterize_chunk(setup, ids[start:start + step], box_h, box_w, width, tri_depth is not None, keys)

    covered = keys != _EMPTY_KEY
    triangle_id = np.full(height * width, -1, dtype=np.int32)
    triangle_id[covered] = (keys[covered] & np.uint64(0xFFFF_FFFF)).astype(np.int32)
    barycentric = np.zeros((height * width, 3), dtype=np.float32)
    pix = np.flatnonzero(covered)
    for start in range(0, pix.size, CHUNK_CANDIDATES):
        p = pix[start:start + CHUNK_CANDIDATES]
        barycentric[p] = _barycentric_at(tri_xy, triangle_id[p], p % width, p // width)
    return triangle_id.reshape(height, width), barycentric.reshape(height, width, 3)


def perspective_correct(barycentric: np.ndarray, triangle_id: np.ndarray, tri_view_depth: np.ndarray) -> np.ndarray:
    """Screen-space barycentrics → perspective-correct ones.

    barycentric: (H, W, 3) from :func:`rasterize`; triangle_id: (H, W); tri_view_depth: (T, 3)
    positive distance of each corner along the view axis. Returns (H, W, 3) float32.
    """
    out = np.zeros_like(barycentric, dtype=np.float32)
    covered = triangle_id >= 0
    inv_w = 1.0 / np.asarray(tri_view_depth, np.float64)[triangle_id[covered]]  # (P, 3)
    weighted = barycentric[covered].astype(np.float64) * inv_w
    out[covered] = (weighted / weighted.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


# ---- internals -------------------------------------------------------------------------------

def _orient(ux, uy, vx, vy, px, py):
    """Edge function ``(u − p) × (v − p)``: twice the signed area of (u, v, p); broadcasts."""
    return (ux - px) * (vy - py) - (uy - py) * (vx - px)


def _setup_triangles(tri_xy, tri_depth, width, height):
    """Per-triangle constants for the triangles that can cover a pixel centre, or None."""
    finite = np.isfinite(tri_xy).all(axis=(1, 2))
    if tri_depth is not None:
        finite &= np.isfinite(tri_depth).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        area2 = _orient(tri_xy[:, 0, 0], tri_xy[:, 0, 1], tri_xy[:, 1, 0], tri_xy[:, 1, 1],
                        tri_xy[:, 2, 0], tri_xy[:, 2, 1])  # (T,) twice the signed area
        # bounding box in pixel indices whose centres can lie inside: x + 0.5 in [min, max]
        x0 = np.ceil(tri_xy[:, :, 0].min(axis=1) - 0.5)
        x1 = np.floor(tri_xy[:, :, 0].max(axis=1) - 0.5)
        y0 = np.ceil(tri_xy[:, :, 1].min(axis=1) - 0.5)
        y1 = np.floor(tri_xy[:, :, 1].max(axis=1) - 0.5)
        keep = (finite & np.isfinite(area2) & (area2 != 0) & (x1 >= 0) & (y1 >= 0)
                & (x0 <= width - 1) & (y0 <= height - 1) & (x0 <= x1) & (y0 <= y1))
    if not keep.any():
        return None
    ids = np.flatnonzero(keep)
    # orient every triangle clockwise on screen (positive area) by swapping corners 1 and 2;
    # edge functions of the swapped edges are then exact negatives of the unswapped ones
    order = np.where((area2[ids] < 0)[:, None], [0, 2, 1], [0, 1, 2])  # (K, 3)
    corners = np.take_along_axis(tri_xy[ids], order[:, :, None], axis=1)  # (K, 3, 2)
    # edge i is opposite corner i: (b→c), (c→a), (a→b)
    d = corners[:, [2, 0, 1]] - corners[:, [1, 2, 0]]  # (K, 3, 2) edge directions
    owns_tie = (d[..., 1] < 0) | ((d[..., 1] == 0) & (d[..., 0] > 0))  # (K, 3) top-left rule
    # covered ⇔ e > threshold: 0 for edges without ties, −(smallest subnormal) for e ≥ 0
    threshold = np.where(owns_tie, -np.nextafter(0.0, 1.0), 0.0)  # (K, 3)
    return {
        "tri": ids, "corners": corners, "threshold": threshold,
        "x0": np.clip(x0[ids], 0, width - 1).astype(np.int64), "x1": np.clip(x1[ids], 0, width - 1).astype(np.int64),
        "y0": np.clip(y0[ids], 0, height - 1).astype(np.int64), "y1": np.clip(y1[ids], 0, height - 1).astype(np.int64),
        "depth": None if tri_depth is None else np.take_along_axis(tri_depth[ids], order, axis=1),
    }


def _class_sizes(limit: int) -> np.ndarray:
    """Box side classes 1, 2, 3, 4, 6, 8, 12, 16, …  (steps of about √2) up to ``limit``."""
    sizes, k = [1, 2, 3], 2
    while sizes[-1] < limit:
        sizes += [1 << k, 3 << (k - 1)]
        k += 1
    return np.array(sizes, dtype=np.int64)


def _size_classes(x0, y0, x1, y1):
    """Yield (local triangle indices, box height, box width), one per bounding-box size class."""
    box_w = x1 - x0 + 1
    box_h = y1 - y0 + 1
    sizes = _class_sizes(int(max(box_w.max(), box_h.max())))
    class_w = np.searchsorted(sizes, box_w)
    class_h = np.searchsorted(sizes, box_h)
    combined = class_h * len(sizes) + class_w
    order = np.argsort(combined, kind="stable")
    values, starts = np.unique(combined[order], return_index=True)
    bounds = np.append(starts, len(order))
    for value, lo, hi in zip(values, bounds[:-1], bounds[1:]):
        ids = order[lo:hi]
        yield ids, int(box_h[ids].max()), int(box_w[ids].max())


def _rasterize_chunk(setup, ids, box_h, box_w, width, use_depth, keys):
    corners = setup["corners"][ids]  # (t, 3, 2)
    x0, y0 = setup["x0"][ids], setup["y0"][ids]
    cols = x0[:, None] + np.arange(box_w)  # (t, bw)
    rows = y0[:, None] + np.arange(box_h)  # (t, bh)
    # centres outside a triangle's own box become NaN: every comparison with them is false
    px = np.where(cols <= setup["x1"][ids][:, None], cols + 0.5, np.nan)[:, None, :]  # (t, 1, bw)
    py = np.where(rows <= setup["y1"][ids][:, None], rows + 0.5, np.nan)[:, :, None]  # (t, bh, 1)
    threshold = setup["threshold"][ids]
    inside = None
    edges = []
    for i, (u, v) in enumerate(((1, 2), (2, 0), (0, 1))):
        e = _orient(corners[:, u, 0, None, None], corners[:, u, 1, None, None],
                    corners[:, v, 0, None, None], corners[:, v, 1, None, None], px, py)  # (t, bh, bw)
        covered = e > threshold[:, i, None, None]
        inside = covered if inside is None else np.logical_and(inside, covered, out=inside)
        edges.append(e)
    flat = np.flatnonzero(inside)
    if flat.size == 0:
        return
    t_idx, rc = np.divmod(flat, box_h * box_w)
    r, c = np.divmod(rc, box_w)
    pix = (y0[t_idx] + r) * width + (x0[t_idx] + c)
    key = setup["tri"][ids][t_idx].astype(np.uint64)
    if use_depth:
        w = np.stack([e.reshape(-1)[flat] for e in edges], axis=1)  # (n, 3)
        z = (w * setup["depth"][ids][t_idx]).sum(axis=1) / w.sum(axis=1)
        key |= _ordered_bits(z.astype(np.float32)).astype(np.uint64) << np.uint64(32)
    np.minimum.at(keys, pix, key)


def _ordered_bits(z32: np.ndarray) -> np.ndarray:
    """float32 → uint32 whose unsigned order equals the float order."""
    bits = z32.view(np.uint32)
    negative = (bits & np.uint32(0x8000_0000)) != 0
    return np.where(negative, ~bits, bits | np.uint32(0x8000_0000))


def _barycentric_at(tri_xy, tri, x, y):
    """(P,) triangle ids and pixel indices → (P, 3) float64 barycentrics at the pixel centres."""
    c = tri_xy[tri]  # (P, 3, 2)
    px, py = x + 0.5, y + 0.5
    w = np.stack([_orient(c[:, u, 0], c[:, u, 1], c[:, v, 0], c[:, v, 1], px, py)
                  for u, v in ((1, 2), (2, 0), (0, 1))], axis=1)  # (P, 3)
    return w / w.sum(axis=1, keepdims=True)
