"""Bake the portrait into UV textures of the reference topology: albedo, normal and roughness.

Only the skin is baked (the materials ``M_Face`` → UDIM 1001 and ``M_BackHead`` → 1002 in ICT; the
tile of a triangle is read from its UVs); eyes, teeth, gums and the rest get constant defaults from
the USD writer.

Steps (:func:`bake_textures`):

1. **UV layout** (:func:`skin_uv_layout`, cached per topology and size in memory and on disk under
   ``$TOPOS_HOME/bake/`` (:mod:`disk_cache`), like the facial regions and the roughness maps: none
   of them depends on the head):
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
   their weight. Given the photo's landmarks, texels that look into the mouth or an eye opening lose it
   too (:mod:`face_openings`: teeth and sclera where the fit opens lips and lids less than the photo), and so
   do texels that see the hair above the brows (:mod:`hair_mask`: a fringe, the hairline) and those that see
   clothing around the neck (:mod:`clothing_mask`: a white collar, a blouse).
3. **Symmetric observation**: the same texel's mirror point — its triangle's corners mapped through
   ``topology.symmetry`` with the same barycentrics — is observed the same way; it fills where the
   texel itself is unseen or seen at a grazing angle. With ``mirror_asymmetry``, what it fills gets the
   face's own left/right difference added (:func:`mirror_side_asymmetry`: where a texel and its mirror point
   were both seen directly, their difference blurred at 1/64 of the tile, extended over the tile), so a
   cheek the photo did not see does not take the seen cheek's light along with its colour (off by default:
   see MIRROR_ASYMMETRY).
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

Per-texel work runs in cache-sized pieces on the CPU's cores (:mod:`texel_chunks`); texels of
triangles facing away from the camera are skipped, and the photo is only sampled where a texel is
seen. Deterministic: the same inputs give bit-identical textures (fixed-order numpy / OpenCV / scipy
ops on independent pieces, no randomness).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from topos_sdk.errors import InvalidInputError
from topos_sdk.head_result import Camera, TextureMap
from topos_sdk.raster import rasterize
from topos_sdk.topology import ReferenceTopology
from topos_server.texture import material_maps
from topos_server.texture.clothing_mask import clothing_mask
from topos_server.texture.disk_cache import bake_cache_dir, load_arrays, save_arrays
from topos_server.texture.face_openings import FaceOpenings, face_openings
from topos_server.texture.hair_mask import hair_mask
from topos_server.texture.face_regions import face_regions
from topos_server.texture.fill import (diffuse_vertex_values, extend_beyond_islands, fill_islands, gather_to_vertices,
                                       seen_asymmetry)
from topos_server.texture.skin_colour import TRUST_COS, fit_skin_colour
from topos_server.texture.skin_lighting import SkinLighting, fit_skin_lighting, linear_to_srgb8, srgb8_to_linear
from topos_server.texture.texel_chunks import in_chunks

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
HAIR_MASK = True  # with the landmarks, texels that see the hair above the brows lose their weight (hair_mask.py)
CLOTHING_MASK = True  # with the landmarks, texels that see clothing around the neck lose theirs (clothing_mask.py)
MIRROR_ASYMMETRY = False  # restores hidden skin of held-out portraits 7 % better, but carries the photo's light
#                           over too: synthetic heads' albedo 3 % further from the truth, 7 % more light-dependent
PHOTO_OVERSAMPLING = 1.5  # texels per photo pixel (along a side) where the photo shows the skin most finely
MIN_WORKING_SIZE = 512  # photo_texture_size never goes below this (nor above the requested size)
ASYMMETRY_RESOLUTION = 128  # the seen left/right difference is found at most at this size² per tile (blurred at
#                             1/64 of the tile it is the same field as at 512², bench/texture_eval.py)
_LAYOUT_CACHE_SIZE = 4
LAYOUT_CACHE_VERSION = "uv-layout/4"  # bump when the raster conventions change (4: the sample grid's stride rounds)


@dataclass(frozen=True)
class TileTexels:
    """The covered texels of one UDIM tile (flat row-major indices into a size×size image).

    Per-texel arrays are channel-major ((C, K)): gathers and arithmetic on contiguous rows are
    several times faster than on (K, C) columns.
    """

    tile: int
    size: int
    texel: np.ndarray  # (K,) int32 flat texel index
    triangle: np.ndarray  # (K,) int32 index into SkinUVLayout.triangles
    barycentric: np.ndarray  # (3, K) float32
    vertex_sample: np.ndarray  # (k,) int32 indices into the K texels: a regular grid of about
    #                            VERTEX_SAMPLE_GRID² per tile, enough to gather per-vertex values
    layout_triangles: np.ndarray  # (T, 3) int32 vertex ids of SkinUVLayout.triangles (shared, not a copy)

    @property
    def count(self) -> int:
        return int(self.texel.size)

    @property
    def corners(self) -> np.ndarray:
        """(3, K) int32 vertex ids of each texel's triangle (built on each call: 12 bytes a texel)."""
        return self.corners_of(np.arange(self.count))

    def corners_of(self, rows: np.ndarray) -> np.ndarray:
        """(3, k) int32 vertex ids of the triangles of the texels ``rows`` (indices into the K texels)."""
        triangle = np.take(self.triangle, rows)
        return np.stack([np.take(self.layout_triangles[:, c], triangle) for c in range(3)])

    def barycentric_of(self, rows: np.ndarray) -> np.ndarray:
        """(3, k) float32 barycentrics of the texels ``rows``."""
        return np.stack(self.barycentric_rows(rows))

    def barycentric_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three (k,) float32 barycentric weights of the texels ``rows`` (not stacked: no copy)."""
        return tuple(np.take(weights, rows) for weights in self.barycentric)

    @cached_property
    def island(self) -> np.ndarray:
        """(size, size) bool: texels covered by a skin triangle (do not modify: cached)."""
        mask = np.zeros(self.size * self.size, bool)
        mask[self.texel] = True
        return mask.reshape(self.size, self.size)

    @cached_property
    def island_blurred(self) -> np.ndarray:
        """(s, s) float32 ≥ 1e-6: the island mask reduced and blurred as the feather blurs what was seen
        (its normaliser; it does not depend on the head)."""
        factor, small, sigma = _feather_scale(self.size)
        island = self.island.astype(np.float32)
        if factor > 1:
            island = cv2.resize(island, (small, small), interpolation=cv2.INTER_AREA)
        return np.maximum(cv2.GaussianBlur(island, (0, 0), sigma), 1e-6)

    def image(self, values: np.ndarray, fill: float = 0.0, rows: np.ndarray | None = None) -> np.ndarray:
        """(C, K) or (K,) per-texel values → (C, size, size) or (size, size) float32 image.

        With ``rows`` (k,), ``values`` (C, k) / (k,) are given for those texels only (the others: ``fill``).
        """
        out = np.full(values.shape[:-1] + (self.size * self.size,), fill, np.float32)
        planes = out.reshape(-1, out.shape[-1])  # (C, size²)
        per_plane = values.reshape(len(planes), -1)  # (C, k) (no texel: (C, 0) is fine)

        def part(chunk: slice) -> None:
            texel = self.texel[chunk] if rows is None else np.take(self.texel, rows[chunk])
            for plane, plane_values in zip(planes, per_plane):
                plane[texel] = plane_values[chunk]  # plane by plane: several times faster than one 2-D scatter

        in_chunks(part, per_plane.shape[1])
        return out.reshape(values.shape[:-1] + (self.size, self.size))

    def interpolate(self, vertex_values: np.ndarray, rows: np.ndarray | None = None,
                    vertex_map: np.ndarray | None = None) -> np.ndarray:
        """(C, N) channel-major per-vertex values → (C, K) float32 at the texels (or (C, k) at ``rows``);
        with ``vertex_map`` (N,) at their mirror points (each triangle corner mapped, same barycentrics)."""
        table = corner_table(vertex_values, self.layout_triangles, vertex_map)  # (C, 3, T)
        count = self.count if rows is None else len(rows)
        out = np.empty((table.shape[0], count), np.float32)

        def part(chunk: slice) -> None:
            if rows is None:  # contiguous texels: views, no gathers
                out[:, chunk] = interpolate_corners(table, self.triangle[chunk], self.barycentric[:, chunk])
            else:
                out[:, chunk] = interpolate_corners(table, np.take(self.triangle, rows[chunk]),
                                                    self.barycentric_rows(rows[chunk]))

        in_chunks(part, count)
        return out

    def interpolated_image(self, vertex_values: np.ndarray) -> np.ndarray:
        """``image(interpolate(vertex_values))`` without the (C, K) intermediate: (C, size, size) float32."""
        table = corner_table(vertex_values, self.layout_triangles)  # (C, 3, T)
        out = np.zeros((table.shape[0], self.size * self.size), np.float32)

        def part(chunk: slice) -> None:
            at_texels = interpolate_corners(table, self.triangle[chunk], self.barycentric[:, chunk])
            for plane, plane_values in zip(out, at_texels):
                plane[self.texel[chunk]] = plane_values

        in_chunks(part, self.count)
        return out.reshape(-1, self.size, self.size)


@dataclass(frozen=True)
class SkinUVLayout:
    """Rasterised UV layout of the skin (independent of the head's shape)."""

    size: int
    triangles: np.ndarray  # (T, 3) int32 vertex ids: the topology's fan triangulation (all materials)
    uv_triangles: np.ndarray  # (T, 3, 2) float32 UVs of each corner
    skin_triangles: np.ndarray  # (S,) indices into ``triangles`` of the baked materials
    occluders: np.ndarray  # (T,) bool: triangles that go into the visibility z-buffer
    tiles: tuple[TileTexels, ...]
    digest: str  # identifies the raster (topology, size, materials): key of head-independent disk caches


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
    in_skin = _skin_faces(topology, materials)
    triangles, face_of = topology.triangles()
    triangles = np.ascontiguousarray(triangles, np.int32)
    uv = topology.uv_values[topology.uv_triangles()].astype(np.float32)  # (T, 3, 2)
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
    digest = hashlib.sha256(repr((LAYOUT_CACHE_VERSION,) + key).encode()).hexdigest()[:20]
    texels = _cached_tile_texels(digest, tile_xy, size, len(triangles))  # tile → (texel, triangle, bary, sample)
    tiles = tuple(TileTexels(tile, int(size), *texels[tile], triangles) for tile in tile_numbers)
    layout = SkinUVLayout(int(size), triangles, uv, skin, occluding_triangles(topology, face_of), tiles, digest)
    with _LAYOUT_LOCK:
        _LAYOUTS[key] = layout
        while len(_LAYOUTS) > _LAYOUT_CACHE_SIZE:
            _LAYOUTS.popitem(last=False)
    return layout


def _skin_faces(topology: ReferenceTopology, materials: tuple[str, ...]) -> np.ndarray:
    """(F,) bool: the faces of ``materials``; an InvalidInputError when the topology has no UVs or none of them."""
    if topology.uv_values is None:
        raise InvalidInputError(f"topology {topology.name!r} has no UVs: nothing to bake into")
    in_skin = np.zeros(topology.num_faces, bool)
    for m in topology.materials:
        if m.name in materials:
            in_skin[m.face_start:m.face_stop] = True
    if not in_skin.any():
        raise InvalidInputError(f"topology {topology.name!r} has none of the materials {list(materials)} "
                                f"(it has {sorted({m.name for m in topology.materials})})")
    return in_skin


TEXEL_ARRAYS = ("texel", "triangle", "barycentric", "vertex_sample")  # TileTexels' per-texel fields, in order


def _cached_tile_texels(digest: str, tile_xy: dict, size: int, num_triangles: int) -> dict[int, tuple[np.ndarray, ...]]:
    """Per tile, the covered texels: flat index (K,) int32, triangle (K,) int32 (index into the
    topology's triangles), barycentrics of the texel centre (3, K) float32 and the regular sample
    grid (k,) int32 (indices into the K texels), as :class:`TileTexels` holds them.

    Rasterising 2048² UV tiles and solving the barycentrics takes seconds, and the result only
    depends on the topology's UVs: it is kept on disk (:mod:`disk_cache`).
    """
    path = _layout_cache_dir() / f"uv-layout-{size}-{digest}.npz"
    data = load_arrays(path, [f"{name}_{tile}" for tile in tile_xy for name in TEXEL_ARRAYS], mapped=True)
    if data is not None:
        loaded = {tile: tuple(data[f"{name}_{tile}"] for name in TEXEL_ARRAYS) for tile in tile_xy}
        if all(_valid_tile_texels(*arrays, size, num_triangles) for arrays in loaded.values()):
            return loaded
    texels = {}
    stride = max(1, round(size / VERTEX_SAMPLE_GRID))
    for tile, (ids, xy) in tile_xy.items():
        flat_id = rasterize(xy, size, size)[0].reshape(-1)  # (size²,) index into ``ids`` or −1
        texel = np.flatnonzero(flat_id >= 0).astype(np.int32)
        local = flat_id[texel].astype(np.int32)
        on_grid = ((texel // size) % stride == 0) & ((texel % size) % stride == 0)
        texels[tile] = (texel, ids[local].astype(np.int32), _barycentrics_at_texels(xy, local, texel % size, texel // size),
                        np.flatnonzero(on_grid).astype(np.int32))
    save_arrays(path, {f"{name}_{tile}": a for tile, arrays in texels.items() for name, a in zip(TEXEL_ARRAYS, arrays)})
    return texels


def _valid_tile_texels(texel: np.ndarray, triangle: np.ndarray, bary: np.ndarray, sample: np.ndarray,
                       size: int, num_triangles: int) -> bool:
    k = texel.size
    return (texel.dtype == triangle.dtype == sample.dtype == np.int32 and bary.dtype == np.float32
            and texel.shape == triangle.shape == (k,) and bary.shape == (3, k) and sample.ndim == 1
            and (k == 0 or (texel.min() >= 0 and texel.max() < size * size
                            and triangle.min() >= 0 and triangle.max() < num_triangles))
            and (sample.size == 0 or (sample.min() >= 0 and sample.max() < k)))


def _layout_cache_dir() -> Path:
    return bake_cache_dir()


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
                  size: int = 1024, *, landmarks: np.ndarray | None = None, materials: tuple[str, ...] = SKIN_MATERIALS,
                  mirror_asymmetry: bool = MIRROR_ASYMMETRY, hair: bool = HAIR_MASK, clothing: bool = CLOTHING_MASK,
                  working_size: int | None = None,
                  timings: dict[str, float] | None = None, diagnostics: dict | None = None) -> dict[str, TextureMap]:
    """Bake ``"albedo"`` (sRGB RGB), ``"normal"`` (raw, tangent space) and ``"roughness"`` (raw, 1 channel).

    image: (H, W, 3) uint8 RGB portrait; points: (N, 3) posed mesh (expression applied) in world
    space and reference order; camera: the fitted camera of the portrait (the image may be another
    resolution of the one it was fitted on); size: texels per tile side; landmarks: the photo's (478, 2|3)
    FaceMesh points in pixels of the image the camera was fitted on (``camera.image_size``), when known: texels
    whose photo sample falls in the mouth or an eye opening lose their weight (:mod:`face_openings`), so the
    fill gives them lips and lids instead of teeth and sclera, and with ``hair`` so do those that see the hair
    above the brows (:mod:`hair_mask`: a fringe, the hairline; the fill gives them skin), and with ``clothing``
    those that see clothing around the neck (:mod:`clothing_mask`: a collar; the fill gives them skin);
    mirror_asymmetry: what the fill takes from the mirror side gets the face's seen left/right difference added
    (:func:`mirror_side_asymmetry`); working_size:
    bake at this many texels per side and scale the maps up to ``size`` (:func:`photo_texture_size`: what the
    photo can fill; ``None``: bake at ``size``). Each map has one tile per
    UDIM tile the skin materials use (1001 face, 1002 back of head in ICT). ``timings``, when given,
    receives seconds per stage; ``diagnostics`` receives ``"lighting"`` (the fitted :class:`SkinLighting`,
    camera frame), ``"mirror_asymmetry"`` (as given), ``"direct_weight"`` and ``"coverage"`` (tile → (S, S)
    float32: how much each texel was seen directly / directly or through its mirror) and
    ``"albedo_linear"`` (tile → (3, S, S) float32 before encoding) and ``"observed_albedo_linear"`` (the
    same before any fill: the photo's delit texels, zero where ``coverage`` is zero); S is the working size.
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
    working_size = size if working_size is None else min(_check_size(working_size), size)
    _check_camera(camera)
    layout = skin_uv_layout(topology, working_size, materials)
    lap("uv_layout")

    num_points = topology.num_points
    cam_points = camera.to_camera(points.astype(np.float64)).astype(np.float32)  # (N, 3) camera frame
    cam_normals = vertex_normals(cam_points, layout.triangles)  # (N, 3)
    skin_vertices = np.unique(layout.triangles[layout.skin_triangles])
    extent = float(np.linalg.norm(np.ptp(points[skin_vertices], axis=0)))
    depth_map, depth_scale = depth_buffer(cam_points, layout.triangles[layout.occluders], camera)
    photo_planes = [srgb8_to_linear(photo[:, :, c]) for c in range(3)]  # 3 × (H, W) linear
    masks = []  # photo-space weights: the mouth and eye openings, hair, clothing (None: no mask)
    if landmarks is not None:
        masks.append(face_openings(landmarks, (photo.shape[1], photo.shape[0]), camera.image_size))
        if hair:
            masks.append(hair_mask(photo_planes, landmarks, camera.image_size))
        if clothing:
            masks.append(clothing_mask(photo_planes, landmarks, camera.image_size))
        masks = [mask for mask in masks if mask is not None]
    mirror = mirror_vertex_map(topology)
    regions = face_regions(topology)
    fit_region = regions.get("lighting_fit", num_points)[None, :] if regions.available else None
    neck = regions.get("neck", num_points)[None, :] if regions.available else None  # (1, N)
    lap("setup")

    observer = _Observer(cam_points, cam_normals, camera, photo_planes, depth_map, depth_scale,
                         DEPTH_TOLERANCE * extent, layout.triangles, masks)
    direct_obs = [observer.observe(tt) for tt in layout.tiles]
    if not any((d.weight > 0).any() for d in direct_obs):
        raise InvalidInputError("bake_textures: no skin texel is visible in the image through this camera "
                                "(the head is outside the frame, behind the camera or facing away)")
    skin_colour = _fit_skin_colour(layout, direct_obs, fit_region)
    mirror_obs = [_observe_mirror_side(observer, tt, direct, mirror, skin_colour, neck)
                  for tt, direct in zip(layout.tiles, direct_obs)]
    lap("observe")

    lighting = _fit_lighting(layout, direct_obs, cam_normals, fit_region)
    vertex_shading = lighting.shading(np.ascontiguousarray(cam_normals.T))[None, :]  # (1, N)
    if diagnostics is not None:
        diagnostics["lighting"] = lighting
        diagnostics["mirror_asymmetry"] = mirror_asymmetry
        diagnostics["direct_weight"] = {tt.tile: tt.image(d.weight) for tt, d in zip(layout.tiles, direct_obs)}
    lap("lighting")

    observed = []
    for index, tt in enumerate(layout.tiles):  # each tile's observations are freed once blended
        (need, mirrored), direct = mirror_obs[index], direct_obs[index]
        mirror_obs[index] = direct_obs[index] = None
        observed.append(_blend_views(tt, direct, need, mirrored, vertex_shading, mirror, skin_colour,
                                     (topology, materials) if mirror_asymmetry else None))
        del need, mirrored, direct
    lap("delight")

    vertex_albedo = skin_vertex_field(layout, num_points, [obs.on_sample_grid(tt) for tt, obs in zip(layout.tiles, observed)])
    lap("vertex_fill")

    albedo_tiles, coverage_tiles, maps = {}, {}, {"albedo": {}, "normal": {}}
    texel_lengths = material_maps.uv_texel_lengths(points, layout.triangles, layout.uv_triangles)
    for index, tt in enumerate(layout.tiles):
        obs, observed[index] = observed[index], None  # each tile's observations are freed once it is filled
        island = tt.island
        coverage_img = tt.image(obs.coverage)
        albedo_img = tt.image(obs.albedo, rows=obs.covered)
        trust_img = tt.image(obs.trust, rows=obs.covered)
        asymmetry, mirrored_texel, from_mirror = obs.asymmetry, obs.mirrored_texel, obs.from_mirror
        del obs
        vertex_field = (tt.interpolated_image(vertex_albedo[c:c + 1])[0] for c in range(3))  # made plane by plane
        albedo_linear = fill_islands(albedo_img, coverage_img, vertex_field, island, trust=trust_img,
                                     out=None if diagnostics is not None else albedo_img)
        del trust_img, vertex_field
        if asymmetry is not None:
            add_mirror_side_asymmetry(albedo_linear, mirrored_texel, from_mirror, asymmetry)
        del asymmetry, mirrored_texel, from_mirror
        extend_beyond_islands(np.clip(albedo_linear, 0.0, 1.0, out=albedo_linear), island, out=albedo_linear)
        lap("fill")
        maps["albedo"][tt.tile] = cv2.merge(list(linear_to_srgb8(albedo_linear)))  # (S, S, 3) interleaved
        lap("encode")
        maps["normal"][tt.tile] = material_maps.normal_tile(tt, texel_lengths, albedo_linear, coverage_img)
        lap("normal")
        if diagnostics is not None:
            albedo_tiles[tt.tile], coverage_tiles[tt.tile] = albedo_linear, coverage_img
            diagnostics.setdefault("observed_albedo_linear", {})[tt.tile] = albedo_img
        del albedo_linear, albedo_img, coverage_img
    if diagnostics is not None:
        diagnostics["coverage"] = coverage_tiles
        diagnostics["albedo_linear"] = albedo_tiles
    roughness_maps = material_maps.roughness_tiles(layout, regions, num_points)
    lap("roughness")
    baked = {
        "albedo": TextureMap("albedo", maps["albedo"], "sRGB"),
        "normal": TextureMap("normal", maps["normal"], "raw"),
        "roughness": TextureMap("roughness", roughness_maps, "raw"),
    }
    if working_size != size:
        baked = {name: upsampled(texture_map, size) for name, texture_map in baked.items()}
        lap("upsample")
    return baked


def photo_texture_size(image_size: tuple[int, int], points: np.ndarray, camera: Camera, topology: ReferenceTopology,
                       size: int, materials: tuple[str, ...] = SKIN_MATERIALS) -> int:
    """Texels per tile side at which a bake holds everything the photo shows of the skin: at most ``size``.

    image_size: (width, height) of the photo to bake (the camera may have been fitted on another resolution of
    it); points: (N, 3) posed mesh in world space. Over the skin triangles that face the camera (cosine above
    ``FULL_WEIGHT_COS``), the photo's pixels per UV unit (the square root of projected over UV area); the finest
    1 % of the seen area sets the size: ``PHOTO_OVERSAMPLING`` texels per photo pixel there, rounded up to the
    next of 512, 768, 1024, 1536, 2048, … (a power of two or 1.5 times one: few sizes, so few cached UV layouts),
    at least ``MIN_WORKING_SIZE``. A 512² portrait shows a face tile at ~200–350 photo pixels per
    side: baking its 2048² maps texel by texel samples the same photo pixels ~16 times; baked at 1024² and scaled
    up they carry the same detail.
    """
    size = _check_size(size)
    triangles, uv_area = _skin_triangle_uv_areas(topology, materials)
    cam_points = camera.to_camera(np.asarray(points, np.float64))  # (N, 3)
    xy = _pixels(cam_points.T, camera).T * (image_size[0] / camera.image_size[0])  # (N, 2) photo pixels
    corner = cam_points[triangles]  # (S, 3, 3)
    normal = np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0])  # (S, 3) outward, 2 × area
    centre = corner.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lengths = np.linalg.norm(normal, axis=1) * np.linalg.norm(centre, axis=1)
        cos_view = -np.einsum("sc,sc->s", normal, centre) / lengths
        facing = (cos_view > FULL_WEIGHT_COS) & (centre[:, 2] < 0) & (uv_area > 0)
    if not facing.any():
        return size  # nothing seen: the bake says so itself
    corner = xy[triangles[facing]]  # (s, 3, 2)
    edge_a, edge_b = corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0]
    pixel_area = 0.5 * np.abs(edge_a[:, 0] * edge_b[:, 1] - edge_a[:, 1] * edge_b[:, 0])  # (s,)
    pixels_per_uv = np.sqrt(pixel_area / uv_area[facing])
    order = np.argsort(pixels_per_uv)
    cumulative = np.cumsum(pixel_area[order])
    finest = pixels_per_uv[order][min(len(order) - 1, int(np.searchsorted(cumulative, 0.99 * cumulative[-1])))]
    needed = PHOTO_OVERSAMPLING * finest
    octave = 2 ** int(np.floor(np.log2(max(1.0, needed))))  # needed in [octave, 2·octave)
    needed = octave if needed <= octave else 3 * octave // 2 if needed <= 3 * octave // 2 else 2 * octave
    return int(min(size, max(MIN_WORKING_SIZE, needed)))


_SKIN_UV_AREAS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _skin_triangle_uv_areas(topology: ReferenceTopology, materials: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The skin's triangles (S, 3) int64 vertex ids and their UV areas (S,) (tile side = 1), cached per topology."""
    key = (topology.topology_id, tuple(materials))
    if key not in _SKIN_UV_AREAS:
        triangles, face_of = topology.triangles()
        skin = _skin_faces(topology, materials)[face_of]
        uv = topology.uv_values[topology.uv_triangles()[skin]].astype(np.float64)  # (S, 3, 2)
        a, b = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
        _SKIN_UV_AREAS[key] = (triangles[skin].astype(np.int64), 0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))
    return _SKIN_UV_AREAS[key]


def upsampled(texture_map: TextureMap, size: int) -> TextureMap:
    """``texture_map`` with every tile scaled to size² (bilinear; texel centres at +½ as in the bake)."""
    tiles = {}
    for tile, image in texture_map.tiles.items():
        scaled = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        tiles[tile] = scaled.reshape(size, size, image.shape[2]) if image.ndim == 3 else scaled
    return TextureMap(texture_map.name, tiles, texture_map.color_space)


def skin_vertex_field(layout: SkinUVLayout, num_points: int, observations: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per-tile texel observations → a (C, N) float32 field over the skin's vertices, everywhere.

    ``observations[i]`` = (values (C, k), weights (k,)) at ``layout.tiles[i].vertex_sample`` (a regular
    grid of the tile's texels): gathered onto their triangle's vertices (crossing UV seams and tiles),
    then vertices seen little or not at all are filled harmonically over the mesh.
    """
    channels = observations[0][0].shape[0]
    sums = np.zeros((channels, num_points))
    weight_sums = np.zeros(num_points)
    support = np.zeros(num_points)
    for tt, (values, weights) in zip(layout.tiles, observations):
        k = tt.vertex_sample
        s, w, all_w = gather_to_vertices(num_points, tt.corners_of(k), tt.barycentric[:, k], values, weights)
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


def corner_table(vertex_values: np.ndarray, triangles: np.ndarray, vertex_map: np.ndarray | None = None) -> np.ndarray:
    """(C, N) per-vertex values → (C, 3, T) float32 values at each triangle's corners (through
    ``vertex_map`` (N,) when given): per texel one gather by triangle per corner, no corner ids."""
    corners = triangles if vertex_map is None else vertex_map[triangles]  # (T, 3)
    values = np.asarray(vertex_values, np.float32)
    return np.ascontiguousarray(values[:, corners.T])


def interpolate_corners(table: np.ndarray, triangle: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
    """(C, 3, T) :func:`corner_table`, (K,) triangle ids, (3, K) weights (or three (K,) rows) → (C, K)
    float32 (the same sums, in the same order, as :func:`interpolate`)."""
    out = np.empty((table.shape[0], triangle.size), np.float32)
    for c, corner_values in enumerate(table):
        acc = barycentric[0] * np.take(corner_values[0], triangle)
        acc += barycentric[1] * np.take(corner_values[1], triangle)
        acc += barycentric[2] * np.take(corner_values[2], triangle)
        out[c] = acc
    return out


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
    """What the photo shows of K surface points; colour and view angle only where it shows them."""

    weight: np.ndarray  # (K,) float32 in [0, 1]
    seen: np.ndarray  # (k,) int32 indices of the points with weight > 0 when observed (ascending)
    colour: np.ndarray  # (3, k) float32 linear RGB of the seen points
    cos_view: np.ndarray | None  # (k,) float32 cosine between their normal and the direction to the camera


class _Observer:
    """Looks at surface points (barycentric points on the posed mesh) through the camera.

    What only depends on the surface (pixel position, view depth, cosine to the view direction) is
    computed per vertex and interpolated with the barycentrics: over a triangle of a few millimetres
    the perspective error of interpolating pixel positions is far below a pixel, and it is several
    times cheaper than projecting every texel. Texels of triangles whose corners all face away
    (interpolated cosine ≤ ``GRAZING_COS``: weight 0) are skipped, and the photo is only sampled
    where the weight is above 0. With ``masks`` (photo-space weights: :class:`FaceOpenings`), the weight is also
    multiplied by theirs at the pixel the texel looks at.
    """

    def __init__(self, cam_points, cam_normals, camera, photo_planes, depth_map, depth_scale, tolerance, triangles,
                 masks: list[FaceOpenings] = ()):
        points = cam_points.T.astype(np.float64)  # (3, N)
        distance = np.maximum(np.linalg.norm(points, axis=0), 1e-12)
        cos_view = -np.einsum("cn,cn->n", cam_normals.T.astype(np.float64), points) / distance  # view dir = −point
        self.geometry = np.vstack([_pixels(points, camera), -points[2:3], cos_view[None]]).astype(np.float32)  # (4, N)
        self.facing = self.geometry[3] > GRAZING_COS  # (N,)
        self.triangles = triangles
        self.camera, self.photo_planes = camera, photo_planes
        self.depth_map, self.depth_scale, self.tolerance = depth_map, depth_scale, tolerance
        self.masks = list(masks)

    def observe(self, tt: TileTexels, rows: np.ndarray | None = None, vertex_map: np.ndarray | None = None) -> _Observation:
        """Observe the texels ``rows`` of ``tt`` (default all), or with ``vertex_map`` their mirror
        points (each corner mapped, same barycentrics); the observation's arrays index into ``rows``."""
        corners = self.triangles if vertex_map is None else vertex_map[self.triangles]  # (T, 3)
        triangle_faces = self.facing[corners].any(axis=1)  # (T,)
        table = corner_table(self.geometry, self.triangles, vertex_map)  # (4, 3, T)
        count = tt.count if rows is None else rows.size
        weight = np.zeros(count, np.float32)

        def look(chunk: slice):
            triangle = tt.triangle[chunk] if rows is None else np.take(tt.triangle, rows[chunk])
            candidate = np.flatnonzero(triangle_faces[triangle]).astype(np.int32)  # (c,) into the chunk
            texel = candidate + chunk.start if rows is None else np.take(rows[chunk], candidate)
            chunk_weight, seen, colour, cos_view = self._look(tt, texel, np.take(triangle, candidate), table)
            weight[chunk][candidate] = chunk_weight
            return np.take(candidate, seen) + chunk.start, colour, cos_view

        looks = in_chunks(look, count)
        return _Observation(weight, np.concatenate([seen for seen, _, _ in looks]),
                            np.concatenate([colour for _, colour, _ in looks], axis=1),
                            np.concatenate([cos_view for _, _, cos_view in looks]))

    def _look(self, tt: TileTexels, texel: np.ndarray, triangle: np.ndarray, table: np.ndarray):
        """The texels ``texel`` (c,) of the triangles ``triangle`` (c,) (or their mirror points:
        ``table`` (4, 3, T) holds the geometry at the corners looked at) → weight (c,), seen (k,)
        (indices where the weight is > 0), colour (3, k) and cos_view (k,) there."""
        geometry = interpolate_corners(table, triangle, tt.barycentric_rows(texel))  # (4, c)
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
        zy *= zw
        zy += zx
        visible = inside & (depth <= np.take(self.depth_map.reshape(-1), zy) + tolerance)
        angle = np.clip((cos_view - GRAZING_COS) / (FULL_WEIGHT_COS - GRAZING_COS), 0.0, 1.0)
        weight = np.where(visible, angle * angle * (3.0 - 2.0 * angle), 0.0).astype(np.float32)  # (c,)
        seen = np.flatnonzero(weight > 0).astype(np.int32)  # (k,)
        # the photo may be another resolution of the image the camera was fitted on
        height, width = self.photo_planes[0].shape
        xy = np.stack([np.take(xy[0], seen) * np.float32(width / cam_w), np.take(xy[1], seen) * np.float32(height / cam_h)])
        if self.masks:  # teeth, sclera, hair and clothing are not skin
            keep = self.masks[0].weight_at(xy)  # (k,)
            for mask in self.masks[1:]:
                keep *= mask.weight_at(xy)
            weight[seen] *= keep
            still_seen = np.flatnonzero(keep > 0)
            seen, xy = np.take(seen, still_seen), xy[:, still_seen]
        return weight, seen, _sample_bilinear(self.photo_planes, xy), np.take(cos_view, seen)


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
    factor, small, sigma = _feather_scale(tt.size)
    seen = tt.image((weight > 0).astype(np.float32))  # (S, S)
    if factor > 1:
        seen = cv2.resize(seen, (small, small), interpolation=cv2.INTER_AREA)
    # normalised blur inside the island: the island border itself does not count as unseen
    blurred = cv2.GaussianBlur(seen, (0, 0), sigma) / tt.island_blurred
    if factor > 1:
        blurred = cv2.resize(blurred, (tt.size, tt.size), interpolation=cv2.INTER_LINEAR)
    blurred = blurred.reshape(-1)
    out = np.empty(tt.count, np.float32)

    def part(chunk: slice) -> None:
        soft = np.clip(2.0 * blurred[tt.texel[chunk]] - 1.0, 0.0, 1.0)  # 1 well inside, 0 at half-seen
        out[chunk] = weight[chunk] * soft

    in_chunks(part, tt.count)
    return out


def _feather_scale(size: int) -> tuple[int, int, float]:
    """(reduction factor, reduced size, Gaussian sigma in reduced texels) of the feather's blur."""
    factor = max(1, size // 512)
    small = size // factor
    return factor, small, max(0.5, VISIBILITY_FEATHER * small)


# ---- lighting ------------------------------------------------------------------------------------

def _observe_mirror_side(observer: _Observer, tt: TileTexels, direct: _Observation, mirror: np.ndarray,
                         skin_colour, neck: np.ndarray | None) -> tuple[np.ndarray, _Observation]:
    """Finish the direct observation (colour test, feather; in place) and observe the mirror points of
    the texels it does not fully see: (those texels (n,), their mirror observation)."""
    if skin_colour is not None:  # grazing or neck texels that do not look like skin: background, collar
        neck_doubt = _interpolate_where_nonzero(tt, neck, direct.seen) if neck is not None else None
        direct.weight[direct.seen] *= skin_colour.oblique_weight(direct.colour, direct.cos_view, neck_doubt)
    direct.cos_view = None  # (only the colour test needs it)
    direct.weight = _feather(tt, direct.weight)
    # the mirror side only matters where the texel itself is not fully seen
    need = _flatnonzero32(direct.weight < 1.0)
    mirrored = observer.observe(tt, need, mirror)
    if skin_colour is not None:
        neck_doubt = _interpolate_where_nonzero(tt, neck, need[mirrored.seen]) if neck is not None else None
        mirrored.weight[mirrored.seen] *= skin_colour.oblique_weight(mirrored.colour, mirrored.cos_view, neck_doubt)
    mirrored.cos_view = None
    # (fully seen texels count as "mirror seen" for the feather: no dip where the views meet)
    full_weight = np.ones(tt.count, np.float32)
    full_weight[need] = mirrored.weight
    mirrored.weight = _feather(tt, full_weight)[need]
    return need, mirrored


def _interpolate_where_nonzero(tt: TileTexels, vertex_values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``tt.interpolate(vertex_values, rows)[0]`` for a (1, N) field that is zero on most of the skin
    (the neck): only texels of triangles with a non-zero corner are interpolated, the others are 0."""
    nonzero = (vertex_values[0][tt.layout_triangles] != 0).any(axis=1)  # (T,)
    out = np.zeros(rows.size, np.float32)
    hit = _flatnonzero32(nonzero[np.take(tt.triangle, rows)])
    out[hit] = tt.interpolate(vertex_values, np.take(rows, hit))[0]
    return out


def _direct_on_sample_grid(tt: TileTexels, direct: _Observation) -> np.ndarray:
    """(k,) indices into ``direct.seen`` of the seen texels on the tile's sample grid (ascending texels)."""
    on_grid = np.zeros(tt.count, bool)
    on_grid[tt.vertex_sample] = True
    return np.flatnonzero(on_grid[direct.seen])


def _fit_skin_colour(layout: SkinUVLayout, direct_obs: list[_Observation], fit_region: np.ndarray | None):
    """Skin colour model from plain-skin texels seen face-on (a regular subset of them)."""
    colours, weights = [], []
    for tt, direct in zip(layout.tiles, direct_obs):
        sample = _direct_on_sample_grid(tt, direct)
        texel = direct.seen[sample]
        w = direct.weight[texel] * (direct.cos_view[sample] > TRUST_COS)
        if fit_region is not None:
            w = w * tt.interpolate(fit_region, texel)[0]
        colours.append(direct.colour[:, sample])
        weights.append(w)
    return fit_skin_colour(np.concatenate(colours, axis=1), np.concatenate(weights))


def _fit_lighting(layout: SkinUVLayout, direct_obs: list[_Observation], cam_normals: np.ndarray,
                  fit_region: np.ndarray | None) -> SkinLighting:
    """Fit the SH shading to the directly seen plain-skin texels (a regular subset of them)."""
    normals_by_vertex = np.ascontiguousarray(cam_normals.T)  # (3, N)
    normals, colours, weights = [], [], []
    for tt, direct in zip(layout.tiles, direct_obs):
        sample = _direct_on_sample_grid(tt, direct)
        texel = direct.seen[sample]
        w = direct.weight[texel]
        if fit_region is not None:
            w = w * tt.interpolate(fit_region, texel)[0]
        # else no landmarks: every skin texel that faces the camera
        keep = np.flatnonzero(w > 0.05)
        n = tt.interpolate(normals_by_vertex, texel[keep])
        n /= np.maximum(np.sqrt(np.einsum("ck,ck->k", n, n)), 1e-12)
        normals.append(n)
        colours.append(direct.colour[:, sample[keep]])
        weights.append(w[keep])
    return fit_skin_lighting(np.concatenate(normals, axis=1), np.concatenate(colours, axis=1), np.concatenate(weights))


@dataclass
class _TileAlbedo:
    """A tile's delit observations: coverage everywhere, albedo and trust where the coverage is ≠ 0."""

    coverage: np.ndarray  # (K,) float32 in [0, 1]: how much the photo saw, directly or through the mirror
    covered: np.ndarray  # (c,) int32 texels with coverage ≠ 0 (ascending)
    albedo: np.ndarray  # (3, c) float32 linear albedo there
    trust: np.ndarray  # (c,) float32 in [0, coverage]: how far it may spread into what nobody saw
    # with mirror_asymmetry (else None):
    asymmetry: np.ndarray | None  # (3, r, r) float32: the seen left/right difference (:func:`mirror_side_asymmetry`)
    mirrored_texel: np.ndarray | None  # (m,) int32 texels (flat indices into S², ascending) that take some of the
    #                                    mirror side ...
    from_mirror: np.ndarray | None  # (m,) float32 ... this much of their weight (the rest: their own view, the fill)

    def on_sample_grid(self, tt: TileTexels) -> tuple[np.ndarray, np.ndarray]:
        """(albedo (3, k), trust (k,)) at ``tt.vertex_sample`` (0 where not covered)."""
        slot = np.searchsorted(self.covered, tt.vertex_sample)  # (k,)
        slot = np.minimum(slot, max(self.covered.size - 1, 0))
        hit = np.flatnonzero(self.covered[slot] == tt.vertex_sample) if self.covered.size else slot[:0]
        albedo = np.zeros((3, tt.vertex_sample.size), np.float32)
        trust = np.zeros(tt.vertex_sample.size, np.float32)
        albedo[:, hit] = self.albedo[:, slot[hit]]
        trust[hit] = self.trust[slot[hit]]
        return albedo, trust


def _blend_views(tt: TileTexels, direct: _Observation, need: np.ndarray, mirrored: _Observation,
                 vertex_shading: np.ndarray, mirror: np.ndarray, skin_colour,
                 asymmetry_of: tuple[ReferenceTopology, tuple[str, ...]] | None = None) -> _TileAlbedo:
    """Albedo per texel: the direct view where seen, the mirror side where not (each delit with the
    shading of the point it saw), weighted by how well each saw it; with ``asymmetry_of`` (the topology and
    the baked materials), from the direct view alone the seen left/right difference that the fill adds to the
    mirror side's share. The observations' colours are released as soon as they are used (the peak memory of
    a 2048² bake is here)."""
    coverage = direct.weight.copy()  # (K,)
    a_mirror = (1.0 - direct.weight[need]) * mirrored.weight  # (n,)
    coverage[need] += a_mirror
    covered = _flatnonzero32(coverage != 0)  # (the colour test can leave −1e-7)
    slot = np.empty(tt.count, np.int32)  # texel → its column in ``albedo`` (only read for covered texels)
    slot[covered] = np.arange(covered.size, dtype=np.int32)
    albedo = np.zeros((3, covered.size), np.float32)
    # direct: seen texels whose weight survived the colour test and the feather; then the mirror
    # side, delit with the shading of the mirror point
    keep = _flatnonzero32(direct.weight[direct.seen] != 0)
    texel = direct.seen[keep]
    column = slot[texel]
    _add_delit(albedo, column, tt, corner_table(vertex_shading, tt.layout_triangles), texel, direct.colour, keep,
               direct.weight[texel], first=True)
    direct.colour = direct.seen = None
    asymmetry = None
    if asymmetry_of is not None:  # (the columns hold weight × direct albedo until the mirror side is added)
        topology, materials = asymmetry_of
        asymmetry = mirror_side_asymmetry(topology, tt.tile, tt.size, np.take(tt.texel, texel), albedo,
                                          direct.weight[texel], materials, columns=column)
    keep = _flatnonzero32(a_mirror[mirrored.seen] != 0)
    texel = need[mirrored.seen[keep]]
    from_mirror = a_mirror[mirrored.seen[keep]]
    _add_delit(albedo, slot[texel], tt, corner_table(vertex_shading, tt.layout_triangles, mirror), texel,
               mirrored.colour, keep, from_mirror)
    mirrored.colour = mirrored.seen = None
    del slot, keep, column, a_mirror
    coverage_covered = coverage[covered]
    np.divide(albedo, coverage_covered, out=albedo, where=coverage_covered > 1e-6)
    # how far this texel's colour may spread into what nobody saw: only skin-like colours do
    trust = coverage_covered * skin_colour.likelihood(albedo) if skin_colour is not None else coverage_covered
    if asymmetry is None:
        return _TileAlbedo(coverage, covered, albedo, trust, None, None, None)
    return _TileAlbedo(coverage, covered, albedo, trust, asymmetry, np.take(tt.texel, texel), from_mirror)


# ---- the mirror side's asymmetry -----------------------------------------------------------------

def mirror_side_asymmetry(topology: ReferenceTopology, tile: int, size: int, texel: np.ndarray,
                          premultiplied: np.ndarray, weight: np.ndarray, materials: tuple[str, ...] = SKIN_MATERIALS,
                          columns: np.ndarray | None = None) -> np.ndarray:
    """The seen left/right difference of ``tile`` (:func:`~topos_server.texture.fill.seen_asymmetry`) from its
    direct observation: texels ``texel`` (k,) (flat indices into size², ascending), ``premultiplied`` (3, k)
    weight × albedo (or (3, c) read at ``columns`` (k,)), ``weight`` (k,). Found at r = min(size,
    ASYMMETRY_RESOLUTION): (3, r, r) float32, a texel's colour minus its mirror point's."""
    resolution = min(size, ASYMMETRY_RESOLUTION)
    low, low_weight = reduced_observation(texel, size, premultiplied, weight, resolution, columns)
    return seen_asymmetry(low, low_weight, *mirror_texel_map(topology, resolution, tile, materials))


def reduced_observation(texel: np.ndarray, size: int, premultiplied: np.ndarray, weight: np.ndarray, resolution: int,
                        columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A tile's observation at resolution²: per cell of (size / resolution)² texels (``cv2.INTER_AREA``'s cells),
    the weighted mean albedo (3, r, r) and the mean weight (r, r), float32. Arguments as
    :func:`mirror_side_asymmetry`."""
    cells = resolution * resolution

    def part(chunk: slice) -> np.ndarray:
        flat = texel[chunk].astype(np.int64)
        cell = (flat // size * resolution // size) * resolution + flat % size * resolution // size
        values = premultiplied[:, chunk] if columns is None else np.take(premultiplied, columns[chunk], axis=1)
        return np.stack([np.bincount(cell, weights=w, minlength=cells) for w in (weight[chunk], *values)])

    sums = np.zeros((4, cells))  # (4, r²) float64: weight, then weight × albedo
    for chunk_sums in in_chunks(part, texel.size):
        sums += chunk_sums
    albedo = np.divide(sums[1:], sums[0], out=np.zeros_like(sums[1:]), where=sums[0] > 1e-8)
    mean_weight = sums[0] * (resolution / size) ** 2
    return (albedo.reshape(3, resolution, resolution).astype(np.float32),
            mean_weight.reshape(resolution, resolution).astype(np.float32))


def add_mirror_side_asymmetry(albedo: np.ndarray, texel: np.ndarray, from_mirror: np.ndarray,
                              asymmetry: np.ndarray) -> None:
    """In place: ``albedo`` (3, S, S) += asymmetry (3, r, r) (bilinear, as ``cv2.resize`` to S²) × ``from_mirror``
    (m,) at the texels ``texel`` (m,) (flat, distinct): the share of their colour that came from the mirror side."""
    size, resolution = albedo.shape[-1], asymmetry.shape[-1]
    planes = albedo.reshape(albedo.shape[0], -1)  # (3, S²) view
    asymmetry_planes = [np.ascontiguousarray(plane, np.float32) for plane in asymmetry]
    scale = np.float32(resolution / size)

    def part(chunk: slice) -> None:
        flat = texel[chunk]
        xy = np.stack([(flat % size).astype(np.float32), (flat // size).astype(np.float32)])  # (2, c)
        xy += np.float32(0.5)
        xy *= scale
        shift = _sample_bilinear(asymmetry_planes, xy)  # (3, c)
        shift *= from_mirror[chunk]
        for plane, plane_shift in zip(planes, shift):
            plane[flat] += plane_shift

    in_chunks(part, texel.size)


_MIRROR_TEXEL_MAPS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def mirror_texel_map(topology: ReferenceTopology, size: int, tile: int,
                     materials: tuple[str, ...] = SKIN_MATERIALS) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) x and y maps for ``cv2.remap``: each texel of ``tile`` reads its mirror point across the face's
    symmetry plane (same barycentrics on the mirrored triangle corners, :func:`mirror_vertex_map`); texels
    off the island read themselves (cached per topology, size and tile)."""
    key = (topology.topology_id, int(size), int(tile), tuple(materials))
    if key not in _MIRROR_TEXEL_MAPS:
        layout = skin_uv_layout(topology, size, materials)
        tt = next(t for t in layout.tiles if t.tile == tile)
        vertex_uv = vertex_uv_in_tile(layout.triangles, layout.uv_triangles, topology.num_points, tile)  # (N, 2)
        mirrored_corners = mirror_vertex_map(topology)[tt.corners]  # (3, K)
        uv = np.einsum("ck,ckx->kx", tt.barycentric, vertex_uv[mirrored_corners])  # (K, 2)
        cols, rows = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
        map_x, map_y = cols.reshape(-1), rows.reshape(-1)
        map_x[tt.texel] = (uv[:, 0] - (tile - 1001) % 10) * size - 0.5
        map_y[tt.texel] = (1.0 - (uv[:, 1] - (tile - 1001) // 10)) * size - 0.5
        if len(_MIRROR_TEXEL_MAPS) > 16:
            _MIRROR_TEXEL_MAPS.clear()
        _MIRROR_TEXEL_MAPS[key] = (map_x.reshape(size, size), map_y.reshape(size, size))
    return _MIRROR_TEXEL_MAPS[key]


def vertex_uv_in_tile(triangles: np.ndarray, uv_triangles: np.ndarray, num_points: int, tile: int) -> np.ndarray:
    """(N, 2) float64 one UV per vertex, from a triangle corner in ``tile`` where the vertex has one (seams).
    triangles: (T, 3) vertex ids; uv_triangles: (T, 3, 2) their corners' UVs."""
    uv_corners = uv_triangles.reshape(-1, 2)  # (3T, 2)
    vertices = triangles.reshape(-1)
    in_tile = (1001 + np.floor(uv_corners[:, 0]) + 10 * np.floor(uv_corners[:, 1])).astype(int) == tile
    uv = np.zeros((num_points, 2))
    order = np.argsort(in_tile, kind="stable")  # corners in the tile are written last and win
    uv[vertices[order]] = uv_corners[order]
    return uv


def _flatnonzero32(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(mask)`` as int32, found per piece (no (K,) int64 intermediate)."""
    return np.concatenate(in_chunks(lambda chunk: np.flatnonzero(mask[chunk]).astype(np.int32) + np.int32(chunk.start),
                                    mask.size))


def _add_delit(albedo: np.ndarray, column: np.ndarray, tt: TileTexels, shading_table: np.ndarray,
               texel: np.ndarray, colour: np.ndarray, colour_rows: np.ndarray, weight: np.ndarray,
               first: bool = False) -> None:
    """``albedo[:, column] += weight × clip(colour / shading, 0, 1)`` for the texels ``texel`` (k,):
    ``colour[:, colour_rows]`` (3, k) seen at the points where the shading is interpolated from
    ``shading_table`` (1, 3, T) (:func:`corner_table`: the texel's own corners or their mirrors).
    ``column`` (k,) must not repeat; ``first``: those columns are still 0 (assigned, not added)."""
    def part(chunk: slice) -> None:
        rows = texel[chunk]
        shading = interpolate_corners(shading_table, np.take(tt.triangle, rows), tt.barycentric_rows(rows))[0]  # (c,)
        seen_at, columns = colour_rows[chunk], column[chunk]
        for plane, colour_plane in zip(albedo, colour):
            value = np.take(colour_plane, seen_at)
            value /= shading
            np.clip(value, 0.0, 1.0, out=value)
            value *= weight[chunk]
            if first:
                plane[columns] = value
            else:
                plane[columns] += value

    in_chunks(part, texel.size)


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

