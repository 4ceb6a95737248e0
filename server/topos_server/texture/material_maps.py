"""Normal and roughness maps for the baked skin.

**Normal map** (tangent space, raw, flat = (128, 128, 255); +X along +u, +Y along +v — the
OpenGL / MikkTSpace-style convention UsdPreviewSurface, Maya and Karma read with ``scale 2, bias −1``).
The base surface is the mesh itself, so the map only carries *detail*: a height field
``DETAIL_DEPTH_CM × (log L − blur(log L))`` from the albedo's high-frequency luminance ``L``
(darker = lower: pores, creases, brow hair), only where the photo was actually seen (the filled
regions stay flat). Its slopes are converted to the tangent frame with the per-triangle TBN of the
UV layout: ``∂P/∂u`` and ``∂P/∂v`` of each posed triangle from its UV derivatives give the world
length of one texel along the tangent and the bitangent, so the tilt is right however the UVs are
stretched; tilts are limited to ``MAX_TILT_DEGREES``. Texels outside the islands are flat.

**Roughness** (raw, one channel, 0–255 ↔ 0–1) from region priors per vertex (:mod:`face_regions`),
interpolated over the texels: plain skin ``SKIN``, the T-zone (nose and the middle of the forehead)
slightly smoother (oilier), the lips smoother still, brows rougher (hair). Without landmarks the whole
skin is ``SKIN``.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from topos_server.texture.disk_cache import bake_cache_dir, load_arrays, save_arrays
from topos_server.texture.face_regions import FaceRegions
from topos_server.texture.fill import extend_beyond_islands
from topos_server.texture.skin_lighting import luminance
from topos_server.texture.texel_chunks import in_chunks

DETAIL_DEPTH_CM = 0.05  # height per unit of log-luminance contrast
DETAIL_SCALE = 1.0 / 256  # × tile size: the Gaussian that separates detail from shading (≈ 4 texels at 1024)
MAX_TILT_DEGREES = 20.0

SKIN = 0.55
T_ZONE = 0.45
LIPS = 0.35
BROWS = 0.70


def roughness_per_vertex(regions: FaceRegions, num_points: int) -> np.ndarray:
    """(N,) float32 roughness in [0, 1] from the region priors."""
    r = np.full(num_points, SKIN, np.float32)
    if not regions.available:
        return r
    for name, value in (("t_zone", T_ZONE), ("lips", LIPS), ("brows", BROWS)):
        w = regions.get(name, num_points)
        r = r * (1.0 - w) + value * w
    return r


def roughness_tiles(layout, regions: FaceRegions, num_points: int) -> dict[int, np.ndarray]:
    """Per tile (size, size, 1) uint8 roughness. It does not depend on the head: kept on disk per
    layout and per-vertex roughness (:mod:`disk_cache`)."""
    per_vertex = roughness_per_vertex(regions, num_points)[None, :]  # (1, N)
    digest = hashlib.sha256(layout.digest.encode() + per_vertex.tobytes()).hexdigest()[:20]
    path = bake_cache_dir() / f"roughness-{layout.size}-{digest}.npz"
    names = [f"tile_{tt.tile}" for tt in layout.tiles]
    loaded = load_arrays(path, names)
    if loaded is not None and all(a.shape == (tt.size, tt.size, 1) and a.dtype == np.uint8
                                  for tt, a in zip(layout.tiles, loaded.values())):
        return {tt.tile: loaded[name] for tt, name in zip(layout.tiles, names)}
    out = {}
    for tt in layout.tiles:
        img = extend_beyond_islands(tt.interpolated_image(per_vertex), tt.island)[0]  # (S, S)
        out[tt.tile] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)[:, :, None]
    save_arrays(path, {name: out[tt.tile] for tt, name in zip(layout.tiles, names)})
    return out


def uv_texel_lengths(points: np.ndarray, triangles: np.ndarray,
                     uv_triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle |∂P/∂u| and |∂P/∂v| (world units per unit of u, v): (T,), (T,) float32.

    From ``P(u, v)`` linear over the triangle: ``[e1 e2] = [∂P/∂u ∂P/∂v] [d1 d2]`` with the world
    edges ``e`` and UV edges ``d``; degenerate UV triangles get 0.
    """
    p = points.astype(np.float64)[triangles]  # (T, 3, 3)
    uv = uv_triangles.astype(np.float64)  # (T, 3, 2)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    safe = np.where(np.abs(det) > 1e-12, det, np.inf)
    dp_du = (e1 * d2[:, 1, None] - e2 * d1[:, 1, None]) / safe[:, None]
    dp_dv = (e2 * d1[:, 0, None] - e1 * d2[:, 0, None]) / safe[:, None]
    return np.linalg.norm(dp_du, axis=1).astype(np.float32), np.linalg.norm(dp_dv, axis=1).astype(np.float32)


def normal_tiles(layout, points: np.ndarray, albedo_linear: dict[int, np.ndarray],
                 coverage: dict[int, np.ndarray], depth_cm: float = DETAIL_DEPTH_CM) -> dict[int, np.ndarray]:
    """Per tile (size, size, 3) uint8 tangent-space normal map (see the module notes).

    albedo_linear: tile → (3, S, S) float32 linear albedo; coverage: tile → (S, S) how much of each
    texel the photo saw, in [0, 1].
    """
    texel_lengths = uv_texel_lengths(points, layout.triangles, layout.uv_triangles)
    return {tt.tile: normal_tile(tt, texel_lengths, albedo_linear[tt.tile], coverage[tt.tile], depth_cm)
            for tt in layout.tiles}


def normal_tile(tt, texel_lengths: tuple[np.ndarray, np.ndarray], albedo_linear: np.ndarray,
                coverage: np.ndarray, depth_cm: float = DETAIL_DEPTH_CM) -> np.ndarray:
    """(S, S, 3) uint8 normal map of one tile (``tt``: its TileTexels); texel_lengths: per triangle
    |∂P/∂u|, |∂P/∂v| (:func:`uv_texel_lengths`); albedo_linear (3, S, S); coverage (S, S)."""
    size = tt.size
    texel_u_of = texel_lengths[0] / np.float32(size)  # (T,) cm per texel along +u, per triangle
    texel_v_of = texel_lengths[1] / np.float32(size)
    max_slope = np.float32(np.tan(np.radians(MAX_TILT_DEGREES)))
    difference = np.array([[-0.5, 0.0, 0.5]], np.float32)  # central difference
    log_lum = np.log(luminance(albedo_linear, axis=0) + 0.01).astype(np.float32)  # (S, S)
    sigma = max(0.75, DETAIL_SCALE * size)
    height = log_lum - cv2.GaussianBlur(log_lum, (0, 0), sigma)
    height *= np.clip(coverage, 0.0, 1.0) * np.float32(depth_cm)  # (S, S) cm
    grad_col = cv2.filter2D(height, -1, difference, borderType=cv2.BORDER_REPLICATE)  # cm per texel along +u
    grad_row = cv2.filter2D(height, -1, difference.T, borderType=cv2.BORDER_REPLICATE)  # along rows (−v)
    grad_col, grad_row = grad_col.reshape(-1), grad_row.reshape(-1)
    planes = np.empty((3, size * size), np.uint8)  # channel planes: contiguous writes
    planes[0], planes[1], planes[2] = 128, 128, 255  # flat

    def part(chunk: slice) -> None:
        k = tt.texel[chunk]
        along_col, along_row = np.take(grad_col, k), np.take(grad_row, k)
        # flat where the height does not change (most of what the photo did not see): the planes' default
        tilted = np.flatnonzero((along_col != 0) | (along_row != 0))
        k, triangle = np.take(k, tilted), np.take(tt.triangle[chunk], tilted)
        texel_u = np.take(texel_u_of, triangle)  # (k,)
        texel_v = np.take(texel_v_of, triangle)
        slope_t = np.divide(np.take(along_col, tilted), texel_u, out=np.zeros(k.size, np.float32), where=texel_u > 0)
        slope_b = np.divide(-np.take(along_row, tilted), texel_v, out=np.zeros(k.size, np.float32), where=texel_v > 0)
        limit = np.minimum(1.0, max_slope / np.maximum(np.hypot(slope_t, slope_b), 1e-12))
        slope_t *= limit
        slope_b *= limit
        inv_len = 1.0 / np.sqrt(1.0 + slope_t * slope_t + slope_b * slope_b)
        planes[0, k] = _encode(-slope_t * inv_len)
        planes[1, k] = _encode(-slope_b * inv_len)
        planes[2, k] = _encode(inv_len)

    in_chunks(part, tt.count)
    return cv2.merge(list(planes.reshape(3, size, size)))  # (S, S, 3) interleaved


def _encode(component: np.ndarray) -> np.ndarray:
    """[−1, 1] → uint8 (0 → 128)."""
    return np.clip(np.rint(component * 127.5 + 127.5), 0, 255).astype(np.uint8)
