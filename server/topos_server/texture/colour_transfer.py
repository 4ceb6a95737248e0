"""Re-baking an input mesh's colours (vertex colours or UV textures) into the reference UV layout for
``topos convert``.

    texel of the skin UV layout ─► point on the converted head (input frame) ─► closest point on the
    input surface ─► its colour (interpolated vertex colour, or its UV looked up in the input's
    texture image, bilinear, tiles repeating) ─► albedo texel

Texels whose closest input point is farther than ``max_distance`` (holes, a cut-off neck, the
inside of the mouth) or lies on an untextured part get no observation: they are filled as the photo
bake fills what the camera did not see — a harmonic field over the mesh's vertices, then a push-pull
blend in UV space.
"""

from __future__ import annotations

import numpy as np

from topos_sdk.head_result import TextureMap
from topos_server.geometry.mesh_input import UvTextures
from topos_server.geometry.registration import TriangleSurface
from topos_server.texture.bake import skin_uv_layout, skin_vertex_field
from topos_server.texture.fill import extend_beyond_islands, fill_islands
from topos_server.texture.skin_lighting import linear_to_srgb8, srgb_to_linear

QUERY_CHUNK = 65536
REMAP_WIDTH = 4096


class SurfaceColour:
    """Linear-RGB colour at points of an input mesh: from vertex colours or from UV textures."""

    def __init__(self, vertex_colours: np.ndarray | None = None, textures: UvTextures | None = None):
        if (vertex_colours is None) == (textures is None):
            raise ValueError("give vertex colours or UV textures")
        self.vertex_linear = None if vertex_colours is None else srgb_to_linear(
            np.clip(np.asarray(vertex_colours, np.float64), 0.0, 1.0))  # (V, 3)
        self.textures = textures
        self.source = "vertex colours" if textures is None else "UV texture " + ", ".join(textures.names)

    @classmethod
    def of_mesh(cls, mesh) -> "SurfaceColour | None":
        """The mesh's UV textures when it has them, else its vertex colours, else None."""
        if mesh.textures is not None:
            return cls(textures=mesh.textures)
        if mesh.vertex_colors is not None:
            return cls(vertex_colours=mesh.vertex_colors)
        return None

    def at(self, surface: TriangleSurface, triangle: np.ndarray, barycentric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((Q, 3) linear RGB, (Q,) bool has colour) at points given as triangle + barycentric."""
        if self.vertex_linear is not None:
            corners = self.vertex_linear[surface.triangles[triangle]]  # (Q, 3, 3)
            return np.einsum("qk,qkc->qc", barycentric, corners), np.ones(len(triangle), bool)
        uv = np.einsum("qk,qkx->qx", barycentric, self.textures.corner_uvs[triangle])  # (Q, 2)
        image_of = self.textures.triangle_image[triangle]
        colour = np.zeros((len(triangle), 3))
        for index, image in enumerate(self.textures.images):
            rows = np.flatnonzero(image_of == index)
            if len(rows):
                colour[rows] = srgb_to_linear(sample_image(image, uv[rows]))
        return colour, image_of >= 0


def sample_image(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(Q, 3) bilinear samples of an (H, W, 3) image at UVs (Q, 2), v up, repeating outside [0, 1]."""
    import cv2

    height, width = image.shape[:2]
    count = len(uv)
    rows = -(-count // REMAP_WIDTH)  # OpenCV maps must stay under 32767 a side: lay the queries out in rows
    u = np.zeros(rows * REMAP_WIDTH, np.float32)
    v = np.zeros(rows * REMAP_WIDTH, np.float32)
    u[:count], v[:count] = np.mod(uv[:, 0], 1.0), np.mod(uv[:, 1], 1.0)
    map_x = (u * width - 0.5).reshape(rows, REMAP_WIDTH)
    map_y = ((1.0 - v) * height - 0.5).reshape(rows, REMAP_WIDTH)
    sampled = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)  # (rows, W, 3)
    return sampled.reshape(-1, 3)[:count]


def transfer_surface_colours(converted_points: np.ndarray, topology, input_points: np.ndarray,
                             input_triangles: np.ndarray, colour: SurfaceColour, max_distance: float,
                             size: int = 1024) -> tuple[TextureMap, float]:
    """An sRGB ``albedo`` :class:`TextureMap` (one image per UDIM tile) and the fraction of skin texels
    observed on the input.

    converted_points (N, 3): the converted head in the input's frame and units; ``max_distance`` in
    input units.
    """
    surface = TriangleSurface(input_points, input_triangles, candidates=6)  # colour, not geometry: near enough
    layout = skin_uv_layout(topology, size)
    num_points = topology.num_points
    points_t = np.ascontiguousarray(np.asarray(converted_points, np.float64).T)  # (3, N)
    observed = []
    for tt in layout.tiles:
        texel_points = tt.interpolate(points_t).T.astype(np.float64)  # (K, 3)
        texel_colour = np.zeros((3, tt.count), np.float32)
        coverage = np.zeros(tt.count, np.float32)
        for start in range(0, tt.count, QUERY_CHUNK):
            hits = surface.closest(texel_points[start:start + QUERY_CHUNK])
            values, has_colour = colour.at(surface, hits.triangle, hits.barycentric)  # (q, 3), (q,)
            texel_colour[:, start:start + QUERY_CHUNK] = values.T
            # full weight up to half the limit, fading to zero at it (no seam where coverage ends)
            coverage[start:start + QUERY_CHUNK] = np.clip(2.0 - 2.0 * hits.distance / max_distance, 0.0, 1.0) * has_colour
        observed.append((texel_colour, coverage))

    vertex_colour = skin_vertex_field(layout, num_points, [(colour[:, tt.vertex_sample], coverage[tt.vertex_sample])
                                                           for tt, (colour, coverage) in zip(layout.tiles, observed)])  # (3, N)
    tiles = {}
    covered = total = 0.0
    for tt, (texel_colour, coverage) in zip(layout.tiles, observed):
        filled = fill_islands(tt.image(texel_colour), tt.image(coverage), tt.image(tt.interpolate(vertex_colour)),
                              tt.island)
        linear = extend_beyond_islands(np.clip(filled, 0.0, 1.0), tt.island)
        tiles[tt.tile] = np.ascontiguousarray(linear_to_srgb8(linear).transpose(1, 2, 0))
        covered += float((coverage > 0).sum())
        total += tt.count
    return TextureMap("albedo", tiles, "sRGB"), covered / max(total, 1.0)
