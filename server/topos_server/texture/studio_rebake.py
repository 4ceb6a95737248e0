"""Re-baking reference-UV textures into a studio topology's UVs with one lookup per texel.

Built once per studio topology and texture size (:func:`build_texel_map`, at ``topos topology add``):

    studio texel (its studio triangle + barycentrics in the UV raster) ─► point on the studio head ─►
    closest point on the reference skin placed on it ─► that point's reference UV (tile + local uv) and the
    2×2 rotation between the two UV frames there (tangent-space normals turn with it)

Texels outside the studio's UV islands take the lookup of the nearest island texel, so bilinear and mip
lookups at island edges see skin, not black. Per head (:func:`rebake`) every map is one ``cv2.remap`` per
source tile; normal maps also rotate their tangent-space xy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

from topos_sdk.atomic_files import atomic_output_path
from topos_sdk.head_result import TextureMap
from topos_sdk.topology import ReferenceTopology
from topos_server.data.synthetic_heads import OUTER_SURFACE_PARTS
from topos_server.geometry.registration import TriangleSurface
from topos_server.texture.bake import skin_uv_layout

QUERY_CHUNK = 32768
NORMAL_MAP = "normal"


@dataclass
class TileLookup:
    """Where every texel of one studio tile reads from: (size, size) arrays."""

    tile: int
    source_tile: np.ndarray  # (size, size) int16 reference UDIM tile
    u: np.ndarray  # (size, size) float32 uv within that tile
    v: np.ndarray  # (size, size) float32
    rotation: np.ndarray  # (size, size, 2, 2) float32: studio tangent xy = rotation @ reference tangent xy

    def pixel_maps(self, source_tiles: list[int], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap coordinates into the source tiles laid side by side (``width`` each); cached per layout."""
        key = (tuple(source_tiles), width, height)
        cache = self.__dict__.setdefault("_pixel_maps", {})
        if key not in cache:
            column = np.searchsorted(np.asarray(source_tiles), self.source_tile)  # tile's place in the atlas
            column = np.minimum(column, len(source_tiles) - 1)  # a tile the texture lacks: the last one
            u = np.clip(self.u, 0.0, 1.0) * width - 0.5
            cache.clear()
            cache[key] = ((u + column * width).astype(np.float32),
                          ((1.0 - np.clip(self.v, 0.0, 1.0)) * height - 0.5).astype(np.float32))
        return cache[key]


@dataclass
class TexelMap:
    size: int
    tiles: list[TileLookup]

    def save(self, path: Path) -> None:
        arrays = {"size": np.int64(self.size), "tiles": np.array([t.tile for t in self.tiles], np.int64)}
        for t in self.tiles:
            arrays[f"source_tile_{t.tile}"] = t.source_tile
            arrays[f"u_{t.tile}"], arrays[f"v_{t.tile}"] = t.u, t.v
            # an orthogonal 2×2 is an angle and whether it mirrors: 3 bytes a texel instead of 16
            arrays[f"angle_{t.tile}"] = np.arctan2(t.rotation[..., 1, 0], t.rotation[..., 0, 0]).astype(np.float16)
            arrays[f"mirrored_{t.tile}"] = (np.linalg.det(t.rotation) < 0).astype(np.int8)
        with atomic_output_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> "TexelMap":
        with np.load(path) as data:
            return cls(int(data["size"]), [TileLookup(int(t), data[f"source_tile_{t}"], data[f"u_{t}"], data[f"v_{t}"],
                                                      rotation_matrices(data[f"angle_{t}"], data[f"mirrored_{t}"]))
                                           for t in data["tiles"]])


def rotation_matrices(angle: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """(..., 2, 2) float32 rotations by ``angle``, mirrored (det −1, first column kept) where ``mirrored``."""
    c, s = np.cos(angle.astype(np.float32)), np.sin(angle.astype(np.float32))
    sign = np.where(mirrored.astype(bool), np.float32(-1), np.float32(1))
    return np.stack([np.stack([c, -s * sign], -1), np.stack([s, c * sign], -1)], -2)


def reference_skin_triangles(reference: ReferenceTopology) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) vertex ids and (T, 3) uv ids of the reference's outer skin triangles."""
    triangles, face_of = reference.triangles()
    use = np.zeros(len(triangles), bool)
    for name in OUTER_SURFACE_PARTS:
        part = reference.submesh(name)
        use |= (face_of >= part.face_start) & (face_of < part.face_stop)
    return triangles[use].astype(np.int64), reference.uv_triangles()[use].astype(np.int64)


def skin_materials(studio: ReferenceTopology) -> tuple[str, ...]:
    """Materials of the studio skin's faces (all of them when the skin group is not recorded)."""
    skin = studio.vertex_groups.get("skin")
    if skin is None:
        return tuple(sorted({m.name for m in studio.materials}))
    in_skin = np.zeros(studio.num_points, bool)
    in_skin[skin] = True
    first_vertex = studio.face_vertex_indices[studio.face_offsets[:-1]]  # (F,)
    return tuple(sorted({m.name for m in studio.materials if in_skin[first_vertex[m.face_start:m.face_stop]].any()}))


def build_texel_map(studio: ReferenceTopology, reference: ReferenceTopology, studio_points: np.ndarray,
                    reference_on_studio: np.ndarray, size: int) -> TexelMap:
    """The lookup of every studio skin texel; points (S, 3) and (N, 3) in one frame (the registration's)."""
    layout = skin_uv_layout(studio, size, materials=skin_materials(studio))
    ref_triangles, ref_uv_triangles = reference_skin_triangles(reference)
    surface = TriangleSurface(reference_on_studio, ref_triangles, candidates=8)
    ref_uv = reference.uv_values.astype(np.float64)[ref_uv_triangles]  # (T, 3, 2)
    studio_points = np.asarray(studio_points, np.float64)
    tiles = []
    for tt in layout.tiles:
        texel_points = tt.interpolate(np.ascontiguousarray(studio_points.T)).T.astype(np.float64)  # (K, 3)
        triangle = np.zeros(tt.count, np.int64)
        bary = np.zeros((tt.count, 3))
        for start in range(0, tt.count, QUERY_CHUNK):
            hits = surface.closest(texel_points[start:start + QUERY_CHUNK])
            triangle[start:start + QUERY_CHUNK], bary[start:start + QUERY_CHUNK] = hits.triangle, hits.barycentric
        uv = np.einsum("kc,kcx->kx", bary, ref_uv[triangle])  # (K, 2)
        whole = np.floor(uv)
        source_tile = (1001 + whole[:, 0] + 10 * whole[:, 1]).astype(np.int16)
        local = uv - whole
        # one frame rotation per (studio triangle, reference triangle) pair, not per texel
        pairs, pair_of_texel = np.unique(tt.triangle.astype(np.int64) * len(ref_triangles) + triangle,
                                         return_inverse=True)
        studio_tri, ref_tri = pairs // len(ref_triangles), pairs % len(ref_triangles)
        angle, mirrored = uv_frame_rotation(studio_points[layout.triangles[studio_tri]], layout.uv_triangles[studio_tri],
                                            reference_on_studio[ref_triangles[ref_tri]], ref_uv[ref_tri])
        rotation = rotation_matrices(angle[pair_of_texel], mirrored[pair_of_texel])  # (K, 2, 2)
        # every texel of the tile reads what its nearest island texel reads
        flat_index = np.full(size * size, -1, np.int64)
        flat_index[tt.texel] = np.arange(tt.count)
        _, (rows, cols) = distance_transform_edt(~tt.island, return_indices=True)
        nearest = flat_index[(rows * size + cols).reshape(-1)]  # (size²,) index into the K texels
        tiles.append(TileLookup(tt.tile, source_tile[nearest].reshape(size, size),
                                local[nearest, 0].astype(np.float32).reshape(size, size),
                                local[nearest, 1].astype(np.float32).reshape(size, size),
                                rotation[nearest].astype(np.float32).reshape(size, size, 2, 2)))
    return TexelMap(int(size), tiles)


def uv_frame_rotation(studio_corners: np.ndarray, studio_uv: np.ndarray, reference_corners: np.ndarray,
                      reference_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The orthogonal part of d(reference uv)/d(studio uv), transposed — it takes a tangent-space vector in the
    reference UV frame into the studio UV frame — as (K,) angles and (K,) bool mirrored (see
    :func:`rotation_matrices`). Corners (K, 3, 3), uvs (K, 3, 2) of the studio and reference triangles."""
    studio_edges = np.stack([studio_corners[:, 1] - studio_corners[:, 0], studio_corners[:, 2] - studio_corners[:, 0]], -1)  # (K, 3, 2)
    studio_uv_edges = np.stack([studio_uv[:, 1] - studio_uv[:, 0], studio_uv[:, 2] - studio_uv[:, 0]], -1)  # (K, 2, 2)
    ref_edges = np.stack([reference_corners[:, 1] - reference_corners[:, 0],
                          reference_corners[:, 2] - reference_corners[:, 0]], -1)  # (K, 3, 2)
    ref_uv_edges = np.stack([reference_uv[:, 1] - reference_uv[:, 0], reference_uv[:, 2] - reference_uv[:, 0]], -1)
    eye = 1e-12 * np.eye(2)
    surface_from_studio_uv = studio_edges @ np.linalg.inv(studio_uv_edges + eye)  # (K, 3, 2)
    gram = np.swapaxes(ref_edges, 1, 2) @ ref_edges + eye  # (K, 2, 2)
    ref_uv_from_surface = ref_uv_edges @ np.linalg.inv(gram) @ np.swapaxes(ref_edges, 1, 2)  # (K, 2, 3)
    j = np.nan_to_num(ref_uv_from_surface @ surface_from_studio_uv)  # (K, 2, 2) jacobian
    # closed-form polar factor of a 2×2: the nearest rotation (det > 0) or reflection (det < 0); transposed,
    # a rotation by θ becomes one by −θ and a reflection stays itself
    mirrored = (j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]) < 0
    rotation_angle = np.arctan2(j[:, 1, 0] - j[:, 0, 1], j[:, 0, 0] + j[:, 1, 1])
    reflection_angle = np.arctan2(j[:, 1, 0] + j[:, 0, 1], j[:, 0, 0] - j[:, 1, 1])
    return np.where(mirrored, reflection_angle, -rotation_angle), mirrored


def rebake(texel_map: TexelMap, texture: TextureMap) -> TextureMap:
    """``texture`` (reference UVs, any tile size) → the same map in the studio UVs at the texel map's size."""
    import cv2

    sources = sorted(texture.tiles)
    height, width = texture.tiles[sources[0]].shape[:2]
    if any(texture.tiles[t].shape[:2] != (height, width) for t in sources):
        raise ValueError(f"texture {texture.name!r}: tiles of different sizes")
    # the source tiles side by side: one remap per studio tile reads from whichever tile each texel needs
    atlas = np.concatenate([texture.tiles[t] for t in sources], axis=1)  # (H, W·tiles, C)
    out = {}
    for lookup in texel_map.tiles:
        map_x, map_y = lookup.pixel_maps(sources, width, height)
        sampled = cv2.remap(atlas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        sampled = sampled.reshape(texel_map.size, texel_map.size, atlas.shape[2])
        if texture.name == NORMAL_MAP and sampled.shape[2] >= 3:
            sampled = rotate_normals(sampled, lookup.rotation)
        out[lookup.tile] = np.ascontiguousarray(sampled)
    return TextureMap(texture.name, out, texture.color_space)


def rotate_normals(image: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(H, W, C) encoded tangent-space normals with xy turned by (H, W, 2, 2) ``rotation``."""
    scale = np.float32(np.iinfo(image.dtype).max)
    x = image[..., 0].astype(np.float32) * (2 / scale) - 1
    y = image[..., 1].astype(np.float32) * (2 / scale) - 1
    out = image.copy()
    out[..., 0] = np.clip(np.rint((rotation[..., 0, 0] * x + rotation[..., 0, 1] * y + 1) * (scale / 2)), 0, scale)
    out[..., 1] = np.clip(np.rint((rotation[..., 1, 0] * x + rotation[..., 1, 1] * y + 1) * (scale / 2)), 0, scale)
    return out
