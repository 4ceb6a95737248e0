"""Bake the portrait into UV textures of the reference topology: albedo, normal and roughness.

Only the skin is baked (the materials ``M_Face`` → UDIM 1001 and ``M_BackHead`` → 1002 in ICT; the
tile of a triangle is read from its UVs); eyes, teeth, gums and the rest get constant defaults from
the USD writer.

Steps (:func:`bake_textures`):

1. **UV layout** (:func:`skin_uv_layout`, cached per topology and size in memory and, for the
   rasterised triangle ids, on disk under ``$TOPOS_HOME/bake/``: it does not depend on the head):
   the skin triangles are rasterised in UV space per tile; each covered texel knows its
   triangle and barycentrics. Texel ``(row, col)`` samples ``u = col + ½``, ``v = 1 − (row + ½)``
   (over ``size``), the usual image orientation of a texture.
2. **Observation**: each texel's surface point (barycentric on the posed mesh) is projected through
   the camera and the photo is sampled there (bilinear, ``cv2.remap``; pixel centres at +½, like
   the rasteriser). Pixel position, view depth and the cosine between the smooth (area-weighted)
   vertex normal and the view direction are computed per vertex in the camera frame and
   interpolated with the texel's barycentrics (sub-pixel exact on millimetre triangles, and cheap). *Visibility*: an image-space z-buffer of the whole posed mesh (eyeballs and teeth
   included; thin see-through cards such as eyelashes are not occluders) and a tolerance of
   ``DEPTH_TOLERANCE`` × the mesh size plus the depth a sloped surface spans over a z-buffer pixel;
   a thin band along the mesh's outline counts as hidden (those pixels mix in the background).
   *Weight*: ``smoothstep`` of the cosine between normal and view direction from ``GRAZING_COS`` to
   ``FULL_WEIGHT_COS``, times a feather of the visibility mask in UV space, so the edge of what the
   photo saw fades out instead of stepping. Texels seen obliquely whose colour is far from the
   skin's (:mod:`skin_colour`: background or collar where the mesh is wider than the face) lose
   their weight.
3. **Symmetric observation**: the same texel's mirror point — its triangle's corners mapped through
   ``topology.symmetry`` with the same barycentrics — is observed the same way; it fills where the
   texel itself is unseen or seen at a grazing angle.
4. **Lighting** (:mod:`skin_lighting`): SH shading fitted to the directly observed plain-skin texels
   (regions from :mod:`face_regions`, a regular subset of texels), evaluated per vertex normal and
   divided out of both observations, each with the shading of the point it actually saw (so the
   mirrored side does not carry the other side's shading). Colours are linear (sRGB decoded).
5. **Fill** (:mod:`topos_server.texture.fill`): per-vertex harmonic fill of the albedo over the skin mesh, then
   per tile the blend of observations, that field and a push-pull of the residual (only skin-like
   observations spread into the unseen parts: a collar seen by the neck stays where it was seen);
   finally the texels outside the islands are extended from the islands (no background under
   bilinear/mip lookups, no texel left at a fill value).
6. **Material maps** (:mod:`material_maps`): a tangent-space normal map with gentle detail from the
   albedo's high-frequency luminance, and a roughness map from region priors.

Deterministic: the same inputs give bit-identical textures (fixed-order numpy / OpenCV / scipy ops,
no randomness).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from topos_sdk.atomic_files import atomic_output_path
from topos_sdk.errors import InvalidInputError
from topos_sdk.head_result import Camera, TextureMap
from topos_sdk.raster import rasterize
from topos_sdk.topology import ReferenceTopology
from topos_server.texture import material_maps
from topos_server.texture.face_regions import face_regions
from topos_server.texture.fill import diffuse_vertex_values, extend_beyond_islands, fill_islands, gather_to_vertices
from topos_server.texture.skin_colour import TRUST_COS, fit_skin_colour
from topos_server.texture.skin_lighting import SkinLighting, fit_skin_lighting, linear_to_srgb8, srgb8_to_linear

SKIN_MATERIALS = ("M_Face", "M_BackHead")
MIN_SIZE, MAX_SIZE = 16, 8192
GRAZING_COS = 0.2  # texels seen more obliquely than ~78° get no weight
FULL_WEIGHT_COS = 0.5  # full weight from ~60° and closer to frontal
DEPTH_TOLERANCE = 0.005  # × mesh bounding-box diagonal (0.2 cm on an ICT head) ...
SLOPE_TOLERANCE = 1.5  # ... + this × (z-buffer pixel footprint) × tan(view angle)
SEE_THROUGH_MATERIALS = ("lash", "occlusion", "blend", "lacrimal")
SILHOUETTE_MARGIN = 0.004  # × z-buffer size (2 px on a 512² photo): band along the outline seen as hidden
MAX_ZBUFFER_SIDE = 1024  # the z-buffer is rendered at most this large (large photos are scaled down)
VISIBILITY_FEATHER = 1.0 / 256  # × texture size: blur of the visibility mask in UV space
MIRROR_MATCH_TOLERANCE = 0.01  # × bounding-box diagonal, for the fallback symmetry (no topology.symmetry)
VERTEX_SAMPLE_GRID = 512  # texels per tile side used to gather per-vertex values
_LAYOUT_CACHE_SIZE = 4
LAYOUT_CACHE_VERSION = "uv-layout/1"  # bump when the raster conventions change


@dataclass(frozen=True)
class TileTexels:
    """The covered texels of one UDIM tile (flat row-major indices into a size×size image).

    Per-texel arrays are channel-major ((C, K)): gathers and arithmetic on contiguous rows are
    several times faster than on (K, C) columns.
    """

    tile: int
    size: int
    texel: np.ndarray  # (K,) int64 flat texel index
    triangle: np.ndarray  # (K,) int32 index into SkinUVLayout.triangles
    corners: np.ndarray  # (3, K) int32 vertex ids of the texel's triangle
    barycentric: np.ndarray  # (3, K) float32
    vertex_sample: np.ndarray  # (k,) int64 indices into the K texels: a regular grid of about
    #                            VERTEX_SAMPLE_GRID² per tile, enough to gather per-vertex values

    @property
    def count(self) -> int:
        return int(self.texel.size)

    @cached_property
    def island(self) -> np.ndarray:
        """(size, size) bool: texels covered by a skin triangle (do not modify: cached)."""
        mask = np.zeros(self.size * self.size, bool)
        mask[self.texel] = True
        return mask.reshape(self.size, self.size)

    def image(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(C, K) or (K,) per-texel values → (C, size, size) or (size, size) float32 image."""
        out = np.full(values.shape[:-1] + (self.size * self.size,), fill, np.float32)
        out[..., self.texel] = values
        return out.reshape(values.shape[:-1] + (self.size, self.size))

    def interpolate(self, vertex_values: np.ndarray) -> np.ndarray:
        """(C, N) channel-major per-vertex values → (C, K) float32 at the texels."""
        return interpolate(vertex_values, self.corners, self.barycentric)


@dataclass(frozen=True)
class SkinUVLayout:
    """Rasterised UV layout of the skin (independent of the head's shape)."""

    size: int
    triangles: np.ndarray  # (T, 3) vertex ids: the topology's fan triangulation (all materials)
    uv_triangles: np.ndarray  # (T, 3, 2) float32 UVs of each corner
    skin_triangles: np.ndarray  # (S,) indices into ``triangles`` of the baked materials
    occluders: np.ndarray  # (T,) bool: triangles that go into the visibility z-buffer
    tiles: tuple[TileTexels, ...]


_LAYOUTS: OrderedDict[tuple, SkinUVLayout] = OrderedDict()
_MIRRORS: dict[str, np.ndarray] = {}
_LAYOUT_LOCK = threading.Lock()


def skin_uv_layout(topology: ReferenceTopology, size: int, materials: tuple[str, ...] = SKIN_MATERIALS) -> SkinUVLayout:
    """The UV raster of ``materials`` per UDIM tile at ``size``² (cached, a few per process)."""
    key = (topology.topology_id, int(size), tuple(materials),
           tuple((m.name, m.face_start, m.face_stop) for m in topology.materials))
    with _LAYOUT_LOCK:  # the server bakes in several threads
        cached = _LAYOUTS.get(key)
        if cached is not None:
            _LAYOUTS.move_to_end(key)
            return cached
    if topology.uv_values is None:
        raise InvalidInputError(f"topology {topology.name!r} has no UVs: nothing to bake into")
    triangles, face_of = topology.triangles()
    uv = topology.uv_values[topology.uv_triangles()].astype(np.float32)  # (T, 3, 2)
    in_skin = np.zeros(topology.num_faces, bool)
    for m in topology.materials:
        if m.name in materials:
            in_skin[m.face_start:m.face_stop] = True
    if not in_skin.any():
        raise InvalidInputError(f"topology {topology.name!r} has none of the materials {list(materials)} "
                                f"(it has {sorted({m.name for m in topology.materials})})")
    skin = np.flatnonzero(in_skin[face_of]).astype(np.int64)
    centre = uv[skin].mean(axis=1)  # (S, 2)
    tile_u, tile_v = np.floor(centre[:, 0]).astype(np.int64), np.floor(centre[:, 1]).astype(np.int64)
    tile_of = np.where((tile_u >= 0) & (tile_u < 10) & (tile_v >= 0), 1001 + tile_u + 10 * tile_v, -1)
    tile_numbers = [int(t) for t in np.unique(tile_of[(tile_of >= 1001) & (tile_of <= 1100)])]
    tile_xy = {}
    for tile in tile_numbers:
        ids = skin[tile_of == tile]
        offset_u, offset_v = (tile - 1001) % 10, (tile - 1001) // 10
        tri_uv = uv[ids].astype(np.float64)
        tile_xy[tile] = (ids, np.stack([(tri_uv[..., 0] - offset_u) * size,
                                        (1.0 - (tri_uv[..., 1] - offset_v)) * size], axis=-1))  # (t, 3, 2) px
    triangle_ids = _cached_triangle_ids(key, tile_xy, size)  # tile → (size², ) int32 triangle or −1
    tiles = []
    for tile in tile_numbers:
        ids, tri_xy = tile_xy[tile]
        flat_id = triangle_ids[tile]
        texel = np.flatnonzero(flat_id >= 0)
        local = flat_id[texel]
        triangle = ids[local].astype(np.int32)
        # barycentrics recomputed here (not taken from the rasteriser) so that a layout read back from
        # the disk cache is bit-identical to a freshly rasterised one
        bary = _barycentrics_at_texels(tri_xy, local, texel % size, texel // size)
        stride = max(1, size // VERTEX_SAMPLE_GRID)
        on_grid = ((texel // size) % stride == 0) & ((texel % size) % stride == 0)
        tiles.append(TileTexels(tile, int(size), texel, triangle,
                                np.ascontiguousarray(triangles[triangle].T.astype(np.int32)), bary,
                                np.flatnonzero(on_grid)))
    layout = SkinUVLayout(int(size), triangles, uv, skin, occluding_triangles(topology, face_of), tuple(tiles))
    with _LAYOUT_LOCK:
        _LAYOUTS[key] = layout
        while len(_LAYOUTS) > _LAYOUT_CACHE_SIZE:
            _LAYOUTS.popitem(last=False)
    return layout


def _cached_triangle_ids(key: tuple, tile_xy: dict, size: int) -> dict[int, np.ndarray]:
    """Per tile, the (size²,) int32 local triangle index covering each texel centre (−1: none).

    Rasterising 2048² UV tiles takes seconds, and the result only depends on the topology's UVs:
    it is kept on disk under ``$TOPOS_HOME/bake/`` (written atomically; a missing, unreadable or
    stale file is simply rebuilt, an unwritable folder only costs the time).
    """
    digest = hashlib.sha256(repr((LAYOUT_CACHE_VERSION,) + key).encode()).hexdigest()[:20]
    path = _layout_cache_dir() / f"uv-layout-{size}-{digest}.npz"
    counts = {tile: len(ids) for tile, (ids, _) in tile_xy.items()}
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {tile: data[f"tile_{tile}"] for tile in tile_xy}
        if all(a.shape == (size * size,) and a.dtype == np.int32 and a.max() < counts[t] and a.min() >= -1
               for t, a in loaded.items()):
            return loaded
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    ids = {tile: rasterize(xy, size, size)[0].reshape(-1).astype(np.int32) for tile, (_, xy) in tile_xy.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f"tile_{tile}": a for tile, a in ids.items()})
    except OSError:
        pass
    return ids


def _layout_cache_dir() -> Path:
    root = os.environ.get("TOPOS_HOME") or Path.home() / ".cache" / "topos"
    return Path(root).expanduser() / "bake"


def _barycentrics_at_texels(tri_xy: np.ndarray, local: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Barycentrics of texel centres in their triangles → (3, K) float32.

    tri_xy: (t, 3, 2) triangle corners in pixels; local: (K,) each texel's triangle; cols, rows: (K,).
    Each weight is an affine function of the texel centre per triangle (coefficients relative to the
    triangle's first corner, in float64): a few gathers per texel instead of per-texel geometry.
    """
    corners = tri_xy.astype(np.float64) - tri_xy[:, :1].astype(np.float64)  # (t, 3, 2) relative to corner 0
    x, y = corners[..., 0], corners[..., 1]
    area2 = x[:, 1] * y[:, 2] - y[:, 1] * x[:, 2]  # (t,)
    area2 = np.where(area2 != 0, area2, 1.0)
    px = cols + 0.5 - np.take(tri_xy[:, 0, 0].astype(np.float64), local)  # (K,)
    py = rows + 0.5 - np.take(tri_xy[:, 0, 1].astype(np.float64), local)
    out = np.empty((3, len(local)), np.float32)
    for i, (u, v) in enumerate(((1, 2), (2, 0), (0, 1))):  # weight of corner i: area opposite it
        constant = (x[:, u] * y[:, v] - y[:, u] * x[:, v]) / area2
        along_x = (y[:, u] - y[:, v]) / area2
        along_y = (x[:, v] - x[:, u]) / area2
        w = np.take(constant, local) + np.take(along_x, local) * px + np.take(along_y, local) * py
        out[i] = np.clip(w, 0.0, 1.0)
    return out


def bake_textures(image: np.ndarray, points: np.ndarray, camera: Camera, topology: ReferenceTopology,
                  size: int = 1024, *, materials: tuple[str, ...] = SKIN_MATERIALS,
                  timings: dict[str, float] | None = None, diagnostics: dict | None = None) -> dict[str, TextureMap]:
    """Bake ``"albedo"`` (sRGB RGB), ``"normal"`` (raw, tangent space) and ``"roughness"`` (raw, 1 channel).

    image: (H, W, 3) uint8 RGB portrait; points: (N, 3) posed mesh (expression applied) in world
    space and reference order; camera: the fitted camera of the portrait (the image may be another
    resolution of the one it was fitted on); size: texels per tile side. Each map has one tile per
    UDIM tile the skin materials use (1001 face, 1002 back of head in ICT). ``timings``, when given,
    receives seconds per stage; ``diagnostics`` receives ``"lighting"`` (the fitted
    :class:`SkinLighting`, camera frame), ``"direct_weight"`` and ``"coverage"`` (tile → (S, S)
    float32: how much each texel was seen directly / directly or through its mirror) and
    ``"albedo_linear"`` (tile → (3, S, S) float32 before encoding) and ``"observed_albedo_linear"`` (the
    same before any fill: the photo's delit texels, zero where ``coverage`` is zero).
    """
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        if timings is not None:
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - clock
            clock = now

    photo = _check_image(image)
    points = _check_points(points, topology)
    size = _check_size(size)
    _check_camera(camera)
    layout = skin_uv_layout(topology, size, materials)
    lap("uv_layout")

    num_points = topology.num_points
    cam_points = camera.to_camera(points.astype(np.float64)).astype(np.float32)  # (N, 3) camera frame
    cam_normals = vertex_normals(cam_points, layout.triangles)  # (N, 3)
    skin_vertices = np.unique(layout.triangles[layout.skin_triangles])
    extent = float(np.linalg.norm(np.ptp(points[skin_vertices], axis=0)))
    depth_map, depth_scale = depth_buffer(cam_points, layout.triangles[layout.occluders], camera)
    photo_planes = [srgb8_to_linear(photo[:, :, c]) for c in range(3)]  # 3 × (H, W) linear
    mirror = mirror_vertex_map(topology)
    regions = face_regions(topology)
    fit_region = regions.get("lighting_fit", num_points)[None, :] if regions.available else None
    neck = regions.get("neck", num_points)[None, :] if regions.available else None  # (1, N)
    lap("setup")

    observer = _Observer(cam_points, cam_normals, camera, photo_planes, depth_map, depth_scale,
                         DEPTH_TOLERANCE * extent)
    direct_obs = [observer.observe(tt.corners, tt.barycentric) for tt in layout.tiles]
    if not any((d.weight > 0).any() for d in direct_obs):
        raise InvalidInputError("bake_textures: no skin texel is visible in the image through this camera "
                                "(the head is outside the frame, behind the camera or facing away)")
    skin_colour = _fit_skin_colour(layout, direct_obs, fit_region)
    mirror_obs = []
    for tt, direct in zip(layout.tiles, direct_obs):
        if skin_colour is not None:  # grazing or neck texels that do not look like skin: background, collar
            neck_doubt = tt.interpolate(neck)[0] if neck is not None else None
            direct.weight *= skin_colour.oblique_weight(direct.colour, direct.cos_view, neck_doubt)
        direct.weight = _feather(tt, direct.weight)
        # the mirror side only matters where the texel itself is not fully seen
        need = np.flatnonzero(direct.weight < 1.0)
        mirrored = observer.observe(np.ascontiguousarray(mirror[tt.corners[:, need]]),
                                    np.ascontiguousarray(tt.barycentric[:, need]))
        if skin_colour is not None:
            mirrored.weight *= skin_colour.oblique_weight(
                mirrored.colour, mirrored.cos_view, neck_doubt[need] if neck_doubt is not None else None)
        # (fully seen texels count as "mirror seen" for the feather: no dip where the views meet)
        full_weight = np.ones(tt.count, np.float32)
        full_weight[need] = mirrored.weight
        mirrored.weight = _feather(tt, full_weight)[need]
        mirror_obs.append((need, mirrored))
    lap("observe")

    lighting = _fit_lighting(layout, direct_obs, cam_normals, fit_region)
    vertex_shading = lighting.shading(np.ascontiguousarray(cam_normals.T))[None, :]  # (1, N)
    if diagnostics is not None:
        diagnostics["lighting"] = lighting
        diagnostics["direct_weight"] = {tt.tile: tt.image(d.weight) for tt, d in zip(layout.tiles, direct_obs)}
    lap("lighting")

    # albedo observations per tile: direct where seen, the mirror side where not
    observed = []
    for direct, (need, mirrored) in zip(direct_obs, mirror_obs):
        albedo = _delight(direct, vertex_shading)  # (3, K)
        albedo *= direct.weight
        coverage = direct.weight.copy()  # (K,)
        a_mirror = (1.0 - direct.weight[need]) * mirrored.weight  # (k,)
        albedo[:, need] += a_mirror * _delight(mirrored, vertex_shading)
        coverage[need] += a_mirror
        np.divide(albedo, coverage, out=albedo, where=coverage > 1e-6)
        # how far this texel's colour may spread into what nobody saw: only skin-like colours do
        trust = coverage * skin_colour.likelihood(albedo) if skin_colour is not None else coverage
        observed.append((albedo, coverage, trust))
    del direct_obs, mirror_obs
    lap("delight")

    vertex_albedo = skin_vertex_field(layout, num_points, [(albedo, trust) for albedo, _, trust in observed])  # (3, N)
    lap("vertex_fill")

    albedo_tiles, coverage_tiles = {}, {}
    for tt, (albedo, coverage, trust) in zip(layout.tiles, observed):
        island = tt.island
        coverage_img = tt.image(coverage)
        filled = fill_islands(tt.image(albedo), coverage_img, tt.image(tt.interpolate(vertex_albedo)), island,
                              trust=tt.image(trust))
        albedo_tiles[tt.tile] = extend_beyond_islands(np.clip(filled, 0.0, 1.0), island)
        coverage_tiles[tt.tile] = coverage_img
    if diagnostics is not None:
        diagnostics["coverage"] = coverage_tiles
        diagnostics["albedo_linear"] = albedo_tiles
        diagnostics["observed_albedo_linear"] = {tt.tile: tt.image(albedo) for tt, (albedo, _, _) in zip(layout.tiles, observed)}
    lap("fill")

    albedo_maps = {t: np.ascontiguousarray(linear_to_srgb8(img).transpose(1, 2, 0)) for t, img in albedo_tiles.items()}
    lap("encode")
    normal_maps = material_maps.normal_tiles(layout, points, albedo_tiles, coverage_tiles)
    lap("normal")
    roughness_maps = material_maps.roughness_tiles(layout, regions, num_points)
    lap("roughness")
    return {
        "albedo": TextureMap("albedo", albedo_maps, "sRGB"),
        "normal": TextureMap("normal", normal_maps, "raw"),
        "roughness": TextureMap("roughness", roughness_maps, "raw"),
    }


def skin_vertex_field(layout: SkinUVLayout, num_points: int, observations: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per-tile texel observations → a (C, N) float32 field over the skin's vertices, everywhere.

    ``observations[i]`` = (values (C, K), weights (K,)) for ``layout.tiles[i]``. Texels on each tile's
    sample grid are gathered onto their triangle's vertices (crossing UV seams and tiles), then
    vertices seen little or not at all are filled harmonically over the mesh.
    """
    channels = observations[0][0].shape[0]
    sums = np.zeros((channels, num_points))
    weight_sums = np.zeros(num_points)
    support = np.zeros(num_points)
    for tt, (values, weights) in zip(layout.tiles, observations):
        k = tt.vertex_sample
        s, w, all_w = gather_to_vertices(num_points, tt.corners[:, k], tt.barycentric[:, k], values[:, k], weights[k])
        sums += s
        weight_sums += w
        support += all_w
    field = np.divide(sums, weight_sums, out=np.zeros_like(sums), where=weight_sums > 0)
    confidence = np.divide(weight_sums, support, out=np.zeros_like(weight_sums), where=support > 0)
    return diffuse_vertex_values(layout.triangles[layout.skin_triangles], num_points, field,
                                 confidence).astype(np.float32)


# ---- geometry ------------------------------------------------------------------------------------

def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) area-weighted smooth vertex normals (counter-clockwise = outward), float32; 0 if unused."""
    p = points.astype(np.float64)
    face_normals = np.cross(p[triangles[:, 1]] - p[triangles[:, 0]], p[triangles[:, 2]] - p[triangles[:, 0]])
    normals = np.stack([np.bincount(triangles.ravel(), weights=np.repeat(face_normals[:, c], 3),
                                    minlength=len(p)) for c in range(3)], axis=1)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0).astype(np.float32)


def occluding_triangles(topology: ReferenceTopology, triangles_face: np.ndarray) -> np.ndarray:
    """(T,) bool: triangles that hide what is behind them in the photo.

    Thin see-through cards (eyelashes, eye occlusion/blend shells, lacrimal fluid: materials whose
    name contains one of ``SEE_THROUGH_MATERIALS``) are left out: they would hide the eyelids.
    """
    see_through = np.zeros(topology.num_faces, bool)
    for m in topology.materials:
        if any(word in m.name.lower() for word in SEE_THROUGH_MATERIALS):
            see_through[m.face_start:m.face_stop] = True
    return ~see_through[triangles_face]


def depth_buffer(cam_points: np.ndarray, triangles: np.ndarray, camera: Camera) -> tuple[np.ndarray, float]:
    """Z-buffer of ``triangles`` seen by ``camera``: ((h, w) float32 view depth; scale).

    Rendered at ``scale`` × the camera's image size (≤ ``MAX_ZBUFFER_SIDE`` per side). Pixels off
    the mesh and within ``SILHOUETTE_MARGIN`` of its outline are −inf (nothing is visible there).
    """
    width, height = camera.image_size
    scale = min(1.0, MAX_ZBUFFER_SIDE / max(width, height))
    zw, zh = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    depth = -cam_points[:, 2].astype(np.float64)  # (N,)
    xy = _pixels(cam_points.astype(np.float64).T, camera).T * scale  # (N, 2)
    in_front = (depth[triangles] > 1e-6).all(axis=1)
    tri = triangles[in_front]
    triangle_id, bary = rasterize(xy[tri], zw, zh, tri_depth=depth[tri])
    zmap = np.full((zh, zw), np.inf, np.float32)
    covered = triangle_id >= 0
    zmap[covered] = np.einsum("pc,pc->p", bary[covered], depth[tri[triangle_id[covered]]]).astype(np.float32)
    # photo pixels along the silhouette mix the head with the background: count them as hidden
    radius = max(1, int(round(SILHOUETTE_MARGIN * max(zw, zh))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    inner = cv2.erode(covered.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    zmap[inner == 0] = -np.inf
    return zmap, scale


def mirror_vertex_map(topology: ReferenceTopology) -> np.ndarray:
    """(N,) vertex → mirror vertex: ``topology.symmetry``, or else the nearest vertex to (−x, y, z)
    of the rest mesh (vertices without a close match map to themselves)."""
    if topology.symmetry is not None:
        return topology.symmetry.astype(np.int32)
    if topology.topology_id not in _MIRRORS:
        from scipy.spatial import cKDTree

        rest = topology.rest_points.astype(np.float64)
        distance, match = cKDTree(rest).query(rest * np.array([-1.0, 1.0, 1.0]))
        tolerance = MIRROR_MATCH_TOLERANCE * float(np.linalg.norm(np.ptp(rest, axis=0)))
        _MIRRORS[topology.topology_id] = np.where(distance <= tolerance, match, np.arange(len(rest))).astype(np.int32)
    return _MIRRORS[topology.topology_id]


def interpolate(vertex_values: np.ndarray, corners: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
    """(C, N) per-vertex values, (3, K) corner ids, (3, K) weights → (C, K) float32."""
    values = np.asarray(vertex_values, np.float32)
    out = np.empty((values.shape[0], corners.shape[1]), np.float32)
    for c in range(values.shape[0]):
        row = values[c]
        acc = barycentric[0] * np.take(row, corners[0])
        acc += barycentric[1] * np.take(row, corners[1])
        acc += barycentric[2] * np.take(row, corners[2])
        out[c] = acc
    return out


def _pixels(cam_points: np.ndarray, camera: Camera) -> np.ndarray:
    """(3, K) camera-frame points → (2, K) pixel coordinates (the formula of ``Camera.project``)."""
    cx, cy = camera.principal_point_px
    f = camera.focal_length_px
    out = np.empty((2, cam_points.shape[1]), cam_points.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (-f) / cam_points[2]  # f / depth
        np.multiply(cam_points[0], scale, out=out[0])
        out[0] += cx
        np.multiply(cam_points[1], -scale, out=out[1])
        out[1] += cy
    return out


# ---- observation ---------------------------------------------------------------------------------

@dataclass
class _Observation:
    corners: np.ndarray  # (3, K) vertex ids of the observed points' triangles
    barycentric: np.ndarray  # (3, K)
    colour: np.ndarray  # (3, K) float32 linear RGB
    weight: np.ndarray  # (K,) float32 in [0, 1]
    cos_view: np.ndarray  # (K,) float32 cosine between the normal and the direction to the camera


class _Observer:
    """Looks at surface points (barycentric points on the posed mesh) through the camera.

    What only depends on the surface (pixel position, view depth, cosine to the view direction) is
    computed per vertex and interpolated with the barycentrics: over a triangle of a few millimetres
    the perspective error of interpolating pixel positions is far below a pixel, and it is several
    times cheaper than projecting every texel.
    """

    def __init__(self, cam_points, cam_normals, camera, photo_planes, depth_map, depth_scale, tolerance):
        points = cam_points.T.astype(np.float64)  # (3, N)
        distance = np.maximum(np.linalg.norm(points, axis=0), 1e-12)
        cos_view = -np.einsum("cn,cn->n", cam_normals.T.astype(np.float64), points) / distance  # view dir = −point
        self.geometry = np.vstack([_pixels(points, camera), -points[2:3], cos_view[None]]).astype(np.float32)  # (4, N)
        self.camera, self.photo_planes = camera, photo_planes
        self.depth_map, self.depth_scale, self.tolerance = depth_map, depth_scale, tolerance

    def observe(self, corners: np.ndarray, barycentric: np.ndarray) -> _Observation:
        geometry = interpolate(self.geometry, corners, barycentric)  # (4, K)
        xy, depth, cos_view = geometry[:2], geometry[2], geometry[3]  # xy in the camera's image size
        cam_w, cam_h = self.camera.image_size
        with np.errstate(invalid="ignore"):
            inside = (depth > 0) & (xy[0] >= 0) & (xy[0] <= cam_w) & (xy[1] >= 0) & (xy[1] <= cam_h)
        xy[:, ~inside] = 0.0
        zh, zw = self.depth_map.shape
        zx = np.minimum((xy[0] * self.depth_scale).astype(np.int32), zw - 1)
        zy = np.minimum((xy[1] * self.depth_scale).astype(np.int32), zh - 1)
        # the nearest z-buffer pixel centre is up to ~0.7 px away: allow the depth change of a
        # surface that slopes away from the camera over that distance
        footprint = depth / np.float32(self.camera.focal_length_px * self.depth_scale)  # world size of a z-buffer pixel
        cos_clamped = np.clip(cos_view, GRAZING_COS, 1.0)
        slope = np.sqrt(1.0 - cos_clamped * cos_clamped) / cos_clamped  # tan of the view angle
        tolerance = self.tolerance + SLOPE_TOLERANCE * footprint * slope
        visible = inside & (depth <= self.depth_map[zy, zx] + tolerance)
        angle = np.clip((cos_view - GRAZING_COS) / (FULL_WEIGHT_COS - GRAZING_COS), 0.0, 1.0)
        weight = np.where(visible, angle * angle * (3.0 - 2.0 * angle), 0.0).astype(np.float32)
        # the photo may be another resolution of the image the camera was fitted on
        height, width = self.photo_planes[0].shape
        xy[0] *= width / cam_w
        xy[1] *= height / cam_h
        return _Observation(corners, barycentric, _sample_bilinear(self.photo_planes, xy), weight, cos_view)


def _sample_bilinear(planes: list[np.ndarray], xy: np.ndarray) -> np.ndarray:
    """Sample C (H, W) planes at (2, K) pixel coordinates (pixel centres at +0.5) → (C, K) float32."""
    k = xy.shape[1]
    cols = 4096  # cv2.remap needs map sides below 32767
    rows = max(1, -(-k // cols))
    maps = np.zeros((2, rows * cols), np.float32)
    np.subtract(xy, 0.5, out=maps[:, :k])
    map_1, map_2 = cv2.convertMaps(maps[0].reshape(rows, cols), maps[1].reshape(rows, cols), cv2.CV_16SC2)
    out = np.empty((len(planes), rows * cols), np.float32)
    for plane, dst in zip(planes, out):
        cv2.remap(plane, map_1, map_2, cv2.INTER_LINEAR, dst=dst.reshape(rows, cols), borderMode=cv2.BORDER_REPLICATE)
    return out[:, :k]


def _feather(tt: TileTexels, weight: np.ndarray) -> np.ndarray:
    """Soften the edges of the observed set in UV space: weight × (blurred visibility mask).

    The blur runs on a copy reduced to at most 512² (it is smooth; the cost stays flat with size).
    """
    factor = max(1, tt.size // 512)
    small = tt.size // factor
    sigma = max(0.5, VISIBILITY_FEATHER * small)
    seen = tt.image((weight > 0).astype(np.float32))  # (S, S)
    island = tt.island.astype(np.float32)
    if factor > 1:
        seen = cv2.resize(seen, (small, small), interpolation=cv2.INTER_AREA)
        island = cv2.resize(island, (small, small), interpolation=cv2.INTER_AREA)
    # normalised blur inside the island: the island border itself does not count as unseen
    blurred = cv2.GaussianBlur(seen, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(island, (0, 0), sigma), 1e-6)
    if factor > 1:
        blurred = cv2.resize(blurred, (tt.size, tt.size), interpolation=cv2.INTER_LINEAR)
    soft = np.clip(2.0 * blurred.reshape(-1)[tt.texel] - 1.0, 0.0, 1.0)  # 1 well inside, 0 at half-seen
    return (weight * soft).astype(np.float32)


# ---- lighting ------------------------------------------------------------------------------------

def _fit_skin_colour(layout: SkinUVLayout, direct_obs: list[_Observation], fit_region: np.ndarray | None):
    """Skin colour model from plain-skin texels seen face-on (a regular subset of them)."""
    colours, weights = [], []
    for tt, direct in zip(layout.tiles, direct_obs):
        k = tt.vertex_sample
        w = direct.weight[k] * (direct.cos_view[k] > TRUST_COS)
        if fit_region is not None:
            w = w * interpolate(fit_region, tt.corners[:, k], tt.barycentric[:, k])[0]
        colours.append(direct.colour[:, k])
        weights.append(w)
    return fit_skin_colour(np.concatenate(colours, axis=1), np.concatenate(weights))


def _fit_lighting(layout: SkinUVLayout, direct_obs: list[_Observation], cam_normals: np.ndarray,
                  fit_region: np.ndarray | None) -> SkinLighting:
    """Fit the SH shading to the directly seen plain-skin texels (a regular subset of them)."""
    normals_by_vertex = np.ascontiguousarray(cam_normals.T)  # (3, N)
    normals, colours, weights = [], [], []
    for tt, direct in zip(layout.tiles, direct_obs):
        k = tt.vertex_sample
        corners, bary = tt.corners[:, k], tt.barycentric[:, k]
        w = direct.weight[k]
        if fit_region is not None:
            w = w * interpolate(fit_region, corners, bary)[0]
        # else no landmarks: every skin texel that faces the camera
        keep = np.flatnonzero(w > 0.05)
        n = interpolate(normals_by_vertex, corners[:, keep], bary[:, keep])
        n /= np.maximum(np.sqrt(np.einsum("ck,ck->k", n, n)), 1e-12)
        normals.append(n)
        colours.append(direct.colour[:, k[keep]])
        weights.append(w[keep])
    return fit_skin_lighting(np.concatenate(normals, axis=1), np.concatenate(colours, axis=1), np.concatenate(weights))


def _delight(obs: _Observation, vertex_shading: np.ndarray) -> np.ndarray:
    """(3, K) linear albedo = colour / shading (interpolated from the vertices), clamped to [0, 1]."""
    albedo = obs.colour / interpolate(vertex_shading, obs.corners, obs.barycentric)
    return np.clip(albedo, 0.0, 1.0, out=albedo)


# ---- input checks and output ---------------------------------------------------------------------

def _check_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 2:
        raise InvalidInputError(f"bake_textures needs an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    return img


def _check_points(points, topology: ReferenceTopology) -> np.ndarray:
    p = np.asarray(points, dtype=np.float32)
    topology.require_points(p)
    if not np.isfinite(p).all():
        raise InvalidInputError("bake_textures: the mesh points contain NaN or infinity")
    return p


def _check_camera(camera) -> None:
    if not isinstance(camera, Camera):
        raise InvalidInputError(f"bake_textures needs a topos_sdk.Camera, got {type(camera).__name__}")
    if not (np.isfinite(camera.world_to_camera).all() and np.isfinite(camera.focal_length_px)
            and camera.focal_length_px > 0 and min(camera.image_size) > 0):
        raise InvalidInputError("bake_textures: the camera has a non-finite transform, a focal length ≤ 0 "
                                "or an empty image size")


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise InvalidInputError(f"texture size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    return int(size)

