"""Preview renders of a head: numpy only (no GPU, no OpenGL), used by ``topos preview`` and for the
asset thumbnail.

An orthographic camera frames the head; a z-buffer (:mod:`topos_sdk.raster`) picks the visible
triangle per pixel; smooth vertex normals are interpolated with the barycentrics and lit by a key
light and a headlight (Lambert, in linear light); the albedo texture is sampled through the UVs
(UDIM tile ``1001 + floor(u) + 10·floor(v)``, bilinear). Parts a person does not see as surfaces
(eyelashes, eye occlusion and blend shells, lacrimal fluid) are left out; eyes, teeth and gums get
flat colours because they reuse the skin's UV space with materials of their own.

Orientation: the topology's +Y is up and the face looks down +Z. ``yaw_deg`` turns the head about
+Y (90° shows the profile with the nose to the right of the image), ``pitch_deg`` about +X
(positive tilts the face down).
"""

from __future__ import annotations

import re

import numpy as np

from .head_result import HeadResult, TextureMap
from .raster import rasterize

# sub-mesh or material names (lower case, letters and digits only) that are not drawn
HIDDEN_NAME_PARTS = ("eyelash", "occlusion", "eyeblend", "lacrimal")
# flat sRGB colours for parts with their own materials (first match on the material, then the sub-mesh)
FLAT_COLOURS = (
    ("iris", (78, 58, 44)),
    ("sclera", (226, 222, 214)),
    ("eyeball", (226, 222, 214)),
    ("teeth", (222, 212, 188)),
    ("gum", (150, 70, 72)),
    ("tongue", (150, 70, 72)),
)
EYE_NAME_PARTS = ("iris", "sclera", "eyeball")
PUPIL, IRIS, SCLERA = (16, 13, 12), (96, 66, 44), (226, 222, 214)  # sRGB
PUPIL_DEG, IRIS_DEG = 8.5, 28.0  # angular radii from the eye's axis (an eye of 24 mm, iris of 12 mm)
SKIN_GREY = (188, 176, 168)  # sRGB, where there is no albedo
BACKGROUND = (58, 60, 64)  # sRGB
KEY_LIGHT = (np.array([-0.45, 0.55, 1.0]) / np.linalg.norm([-0.45, 0.55, 1.0]), 0.78)  # camera frame, intensity
HEADLIGHT = (np.array([0.0, 0.0, 1.0]), 0.30)
AMBIENT = 0.10
FRAME_FILL = 0.92  # fraction of the image the framing radius spans
VIEWS = (("front", 0.0), ("three-quarter", 35.0), ("profile", 90.0))


def render_head(result: HeadResult, yaw_deg: float = 0.0, size: int = 512, pitch_deg: float = 0.0, *,
                supersample: int = 2, background=BACKGROUND, alpha: bool = False) -> np.ndarray:
    """One view of the head: (size, size, 3) uint8 sRGB, or (size, size, 4) with ``alpha=True``."""
    return _render(_Scene.from_result(result), yaw_deg, size, pitch_deg, supersample, background, alpha)


def render_views(result: HeadResult, size: int = 512, *, supersample: int = 2, background=BACKGROUND) -> np.ndarray:
    """Front, three-quarter (yaw 35°) and profile (yaw 90°) side by side: (size, 3·size, 3) uint8."""
    scene = _Scene.from_result(result)
    return np.concatenate([_render(scene, yaw, size, 0.0, supersample, background, False) for _, yaw in VIEWS], axis=1)


def render_thumbnail(result: HeadResult, size: int = 256, **kwargs) -> np.ndarray:
    """The three-quarter view: (size, size, 3) uint8."""
    return render_head(result, dict(VIEWS)["three-quarter"], size, **kwargs)


def _render(scene: "_Scene", yaw_deg, size, pitch_deg, supersample, background, alpha) -> np.ndarray:
    size, supersample = int(size), int(supersample)
    if size < 8 or supersample < 1:
        raise ValueError(f"preview size must be ≥ 8 and supersample ≥ 1, got {size}, {supersample}")
    full = size * supersample
    rotation = _rotation(yaw_deg, pitch_deg)
    cam_points = (scene.points - scene.centre) @ rotation.T  # (N, 3) camera frame, looking down −Z
    scale = FRAME_FILL * full / (2.0 * scene.radius(pitch_deg))
    screen = np.stack([full / 2 + scale * cam_points[:, 0], full / 2 - scale * cam_points[:, 1]], axis=1)  # (N, 2)
    tri = scene.triangles
    triangle_id, bary = rasterize(screen[tri], full, full, -cam_points[tri, 2])

    covered = triangle_id >= 0  # (full, full)
    pix_tri = triangle_id[covered]  # (P,)
    pix_bary = bary[covered].astype(np.float64)  # (P, 3)
    normals = _interpolate(scene.vertex_normals @ rotation.T, tri[pix_tri], pix_bary)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    # a back face seen through an opening (mouth, neck) is lit as if it faced the camera
    facing_away = _facing_away(cam_points, tri)[pix_tri]
    normals[facing_away] *= -1.0
    shade = AMBIENT + sum(intensity * np.clip(normals @ direction, 0.0, None) for direction, intensity in (KEY_LIGHT, HEADLIGHT))

    colour = scene.surface_colour(pix_tri, pix_bary)  # (P, 3) linear
    lit = _linear_to_srgb(colour * shade[:, None])  # (P, 3) in [0, 1]

    rgb = np.empty((full, full, 3), np.float64)
    rgb[:] = np.asarray(background, np.float64) / 255.0
    rgb[covered] = lit
    coverage = covered.astype(np.float64)
    if supersample > 1:
        rgb, coverage = _box_downsample(rgb, supersample), _box_downsample(coverage, supersample)
    out = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    if alpha:
        out = np.concatenate([out, np.clip(np.rint(coverage * 255.0), 0, 255).astype(np.uint8)[..., None]], axis=2)
    return out


# ---- the scene: what is drawn and with which colour ------------------------------------------

class _Scene:
    """The visible triangles of a head with their normals, UVs and colour sources."""

    def __init__(self, points, triangles, flat_colour, textured, is_eye, eye_directions, uv_triangles, uv_values, albedo):
        self.points = points  # (N, 3) float64
        self.triangles = triangles  # (T, 3) vertex ids
        self.flat_colour = flat_colour  # (T, 3) linear colour used when not textured
        self.textured = textured  # (T,) bool: sample the albedo
        self.is_eye = is_eye  # (T,) bool: paint a procedural eye
        self.eye_directions = eye_directions  # (N, 3) rest direction from the eye centre
        self.uv_triangles = uv_triangles  # (T, 3) uv ids or None
        self.uv_values = uv_values  # (M, 2) or None
        self.albedo = albedo  # TextureMap or None
        used = np.unique(triangles)
        lo, hi = points[used].min(axis=0), points[used].max(axis=0)
        self.centre = (lo + hi) / 2.0  # (3,)
        offsets = points[used] - self.centre
        self._radius_orbit = max(np.sqrt(offsets[:, 0] ** 2 + offsets[:, 2] ** 2).max(), (hi[1] - lo[1]) / 2.0)
        self._radius_sphere = np.linalg.norm(offsets, axis=1).max()
        self.vertex_normals = _vertex_normals(points, triangles)

    def radius(self, pitch_deg: float) -> float:
        """Framing radius: the same for every yaw (views side by side share one scale)."""
        return float(self._radius_orbit if pitch_deg == 0 else self._radius_sphere)

    @classmethod
    def from_result(cls, result: HeadResult) -> "_Scene":
        topo = result.topology
        if topo is None:
            raise ValueError("preview needs the HeadResult's topology (its connectivity); this one only has an id")
        points = result.posed_points().astype(np.float64)
        if not np.isfinite(points).all():
            raise ValueError("preview: the head's points are not all finite")
        tri, face_of = topo.triangles()
        hidden, kind = _face_roles(topo)
        keep = ~hidden[face_of]
        if not keep.any():
            raise ValueError(f"preview: topology {topo.name!r} has nothing to draw")
        albedo = result.textures.get("albedo")
        has_uv = topo.uv_values is not None
        palette = np.array([SKIN_GREY] + [colour for _, colour in FLAT_COLOURS], np.float64)  # (1 + K, 3)
        flat_srgb = palette[kind[face_of[keep]] + 1]  # (T, 3)
        textured = (kind[face_of[keep]] < 0) & has_uv & (albedo is not None)
        eye_faces = np.isin(kind, [i for i, (part, _) in enumerate(FLAT_COLOURS) if part in EYE_NAME_PARTS])
        return cls(points, tri[keep], _srgb_to_linear(flat_srgb / 255.0), textured,
                   eye_faces[face_of[keep]], _eye_directions(topo, eye_faces),
                   topo.uv_triangles()[keep] if has_uv else None,
                   topo.uv_values.astype(np.float64) if has_uv else None, albedo)

    def surface_colour(self, pix_tri: np.ndarray, pix_bary: np.ndarray) -> np.ndarray:
        """(P,) triangle per pixel and (P, 3) barycentrics → (P, 3) linear base colour."""
        colour = self.flat_colour[pix_tri].copy()
        eye = self.is_eye[pix_tri]
        if eye.any():
            directions = _interpolate(self.eye_directions, self.triangles[pix_tri[eye]], pix_bary[eye])
            colour[eye] = _eye_colour(directions[:, 2] / np.maximum(np.linalg.norm(directions, axis=1), 1e-12))
        sample = self.textured[pix_tri]
        if sample.any():
            colour[sample] = _sample_udim(self.albedo, self.uv_values, self.uv_triangles[pix_tri[sample]],
                                          pix_bary[sample], colour[sample])
        return colour


def _normalised_name(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (name or "").lower())


def _face_roles(topo):
    """(F,) hidden flag and (F,) index into FLAT_COLOURS per face (−1 = skin: albedo or skin grey)."""
    hidden = np.zeros(topo.num_faces, bool)
    kind = np.full(topo.num_faces, -1, np.int64)
    # materials are the more specific name (M_IrisLeft inside eyeball_left), so they go first
    ranges = [(m.name, m.face_start, m.face_stop) for m in topo.materials]
    ranges += [(s.name, s.face_start, s.face_stop) for s in topo.submeshes]
    for name, f0, f1 in ranges:
        key = _normalised_name(name)
        if any(part in key for part in HIDDEN_NAME_PARTS):
            hidden[f0:f1] = True
        matches = [i for i, (part, _) in enumerate(FLAT_COLOURS) if part in key]
        if matches:
            span = kind[f0:f1]
            span[span < 0] = matches[0]
    return hidden, kind


def _eye_directions(topo, eye_faces: np.ndarray) -> np.ndarray:
    """(N, 3) per eye vertex: its rest-pose direction from its eyeball's centre (zero elsewhere).

    The eye meshes carry no iris in their geometry colours (ICT paints it in a texture), so the
    preview paints one: the rest eye looks down +Z like the face, and the direction travels with
    the vertices when an expression turns the eye. The centre is taken from the lateral extent, as
    the cornea bulges the front.
    """
    directions = np.zeros((topo.num_points, 3))
    tri, face_of = topo.triangles()
    rest = topo.rest_points.astype(np.float64)
    for sm in topo.submeshes:
        in_part = eye_faces[face_of] & (face_of >= sm.face_start) & (face_of < sm.face_stop)
        if not in_part.any():
            continue
        ids = np.unique(tri[in_part])
        lo, hi = rest[ids].min(axis=0), rest[ids].max(axis=0)
        radius = (hi[0] - lo[0] + hi[1] - lo[1]) / 4.0
        centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] + radius])
        directions[ids] = rest[ids] - centre
    return directions


def _eye_colour(cos_angle: np.ndarray) -> np.ndarray:
    """(P,) cosine of the angle from the eye's axis → (P, 3) linear colour: pupil, iris, sclera."""
    angle = np.degrees(np.arccos(np.clip(cos_angle, -1.0, 1.0)))
    pupil, iris, sclera = (_srgb_to_linear(np.array(c, np.float64) / 255.0) for c in (PUPIL, IRIS, SCLERA))
    to_iris = _smoothstep(PUPIL_DEG - 1.0, PUPIL_DEG + 1.0, angle)[:, None]
    to_sclera = _smoothstep(IRIS_DEG - 1.5, IRIS_DEG + 1.5, angle)[:, None]
    limbal = 1.0 - 0.45 * _smoothstep(IRIS_DEG - 6.0, IRIS_DEG - 1.0, angle)[:, None]  # dark iris rim
    inner = pupil * (1 - to_iris) + iris * limbal * to_iris
    return inner * (1 - to_sclera) + sclera * to_sclera


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(3, 3) world → camera rotation: yaw about +Y, then pitch about +X."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    yaw = np.array([[np.cos(y), 0.0, np.sin(y)], [0.0, 1.0, 0.0], [-np.sin(y), 0.0, np.cos(y)]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(p), -np.sin(p)], [0.0, np.sin(p), np.cos(p)]])
    return pitch @ yaw


def _vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) area-weighted smooth normals of the given triangles (zero for unused vertices)."""
    a, b, c = (points[triangles[:, k]] for k in range(3))
    face_normals = np.cross(b - a, c - a)  # (T, 3), length = 2·area
    normals = np.zeros_like(points)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _facing_away(cam_points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T,) True where a triangle's winding normal points away from the camera (+Z is toward it)."""
    a, b, c = (cam_points[triangles[:, k]] for k in range(3))
    return np.cross(b - a, c - a)[:, 2] < 0


def _interpolate(values: np.ndarray, corner_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """values (N, C), corner ids (P, 3), barycentrics (P, 3) → (P, C)."""
    return np.einsum("pk,pkc->pc", bary, values[corner_ids])


def _sample_udim(texture: TextureMap, uv_values, uv_corners, bary, fallback) -> np.ndarray:
    """Bilinear albedo lookup per pixel: (P, 3) linear colours (``fallback`` where a tile is missing)."""
    uv = _interpolate(uv_values, uv_corners, bary)  # (P, 2)
    # the tile of the triangle (its UV centroid), so texels on a tile border stay in their tile
    centroid = (uv_values[uv_corners[:, 0]] + uv_values[uv_corners[:, 1]] + uv_values[uv_corners[:, 2]]) / 3.0
    tile_uv = np.floor(centroid)  # (P, 2)
    tile = (1001 + tile_uv[:, 0] + 10 * tile_uv[:, 1]).astype(np.int64)
    local = np.clip(uv - tile_uv, 0.0, 1.0)
    out = fallback.copy()
    for tile_id, image in texture.tiles.items():
        here = tile == tile_id
        if here.any():
            texels = _bilinear(image, local[here])
            out[here] = _srgb_to_linear(texels) if texture.color_space == "sRGB" else texels
    return out


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """image (H, W, C) uint8/uint16, uv (P, 2) in [0, 1] with v up → (P, 3) float in [0, 1].

    Texel centres at ``(i + 0.5) / size``; grey is replicated to RGB, alpha dropped.
    """
    h, w = image.shape[:2]
    rgb = image[:, :, :3] if image.shape[2] >= 3 else image[:, :, [0, 0, 0]]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)  # floor: both are ≥ 0
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = rgb[y0, x0] * (1 - fx) + rgb[y0, x1] * fx
    bottom = rgb[y1, x0] * (1 - fx) + rgb[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy) / (255.0 if image.dtype == np.uint8 else 65535.0)


def _box_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """(H·f, W·f, ...) → (H, W, ...) mean of each f×f block."""
    total = sum(image[i::factor, j::factor] for i in range(factor) for j in range(factor))
    return total / (factor * factor)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)
