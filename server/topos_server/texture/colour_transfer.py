"""Re-baking an input mesh's vertex colours into the reference UV layout for ``topos convert``.

    texel of the skin UV layout ─► point on the converted head (input frame) ─► closest point on the
    input surface ─► its interpolated vertex colour ─► albedo texel

Texels whose closest input point is farther than ``max_distance`` (holes, a cut-off neck, the
inside of the mouth) get no observation: they are filled as the photo bake fills what the camera
did not see — a harmonic field over the mesh's vertices, then a push-pull blend in UV space.
"""

from __future__ import annotations

import numpy as np

from topos_sdk.head_result import TextureMap
from topos_server.geometry.registration import TriangleSurface
from topos_server.texture.bake import skin_uv_layout, skin_vertex_field
from topos_server.texture.fill import extend_beyond_islands, fill_islands
from topos_server.texture.skin_lighting import linear_to_srgb8, srgb_to_linear

QUERY_CHUNK = 65536


def transfer_vertex_colours(converted_points: np.ndarray, topology, input_points: np.ndarray,
                            input_triangles: np.ndarray, input_colours: np.ndarray, max_distance: float,
                            size: int = 1024) -> tuple[TextureMap, float]:
    """An sRGB ``albedo`` :class:`TextureMap` (one image per UDIM tile) and the fraction of skin texels
    observed on the input.

    converted_points (N, 3): the converted head in the input's frame and units; input_colours (V, 3)
    sRGB in [0, 1]; ``max_distance`` in input units.
    """
    colours_linear = srgb_to_linear(np.clip(np.asarray(input_colours, np.float64), 0.0, 1.0))  # (V, 3)
    surface = TriangleSurface(input_points, input_triangles, candidates=6)  # colour, not geometry: near enough
    layout = skin_uv_layout(topology, size)
    num_points = topology.num_points
    points_t = np.ascontiguousarray(np.asarray(converted_points, np.float64).T)  # (3, N)
    observed = []
    for tt in layout.tiles:
        texel_points = tt.interpolate(points_t).T.astype(np.float64)  # (K, 3)
        colour = np.zeros((3, tt.count), np.float32)
        coverage = np.zeros(tt.count, np.float32)
        for start in range(0, tt.count, QUERY_CHUNK):
            hits = surface.closest(texel_points[start:start + QUERY_CHUNK])
            corners = colours_linear[surface.triangles[hits.triangle]]  # (q, 3, 3)
            colour[:, start:start + QUERY_CHUNK] = np.einsum("qk,qkc->cq", hits.barycentric, corners)
            # full weight up to half the limit, fading to zero at it (no seam where coverage ends)
            coverage[start:start + QUERY_CHUNK] = np.clip(2.0 - 2.0 * hits.distance / max_distance, 0.0, 1.0)
        observed.append((colour, coverage))

    vertex_colour = skin_vertex_field(layout, num_points, observed)  # (3, N)
    tiles = {}
    covered = total = 0.0
    for tt, (colour, coverage) in zip(layout.tiles, observed):
        filled = fill_islands(tt.image(colour), tt.image(coverage), tt.image(tt.interpolate(vertex_colour)), tt.island)
        linear = extend_beyond_islands(np.clip(filled, 0.0, 1.0), tt.island)
        tiles[tt.tile] = np.ascontiguousarray(linear_to_srgb8(linear).transpose(1, 2, 0))
        covered += float((coverage > 0).sum())
        total += tt.count
    return TextureMap("albedo", tiles, "sRGB"), covered / max(total, 1.0)
