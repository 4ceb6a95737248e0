"""Textures of one head from several photos: each photo baked on its own (bake.py: visibility,
viewing angle, feathered edges, de-lighting, fill), then merged texel by texel.

Weight of a view at a texel: its direct-observation weight from the bake (z-buffer visibility ×
smoothstep of the viewing angle × skin-colour doubt, feathered in UV space) raised to
``ANGLE_SHARPNESS`` — the view that sees a texel most squarely dominates, and where two views meet
the weights cross smoothly (no seam). Texels no photo saw directly keep the blend of each bake's own
fill (its mirrored side and harmonic fill), weighted by how much that bake covered them. The normal
map is recomputed from the merged albedo; the roughness map does not depend on the photos.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from topos_sdk.errors import InvalidInputError
from topos_sdk.head_result import Camera, TextureMap
from topos_sdk.topology import ReferenceTopology
from topos_server.texture import material_maps
from topos_server.texture.bake import SKIN_MATERIALS, bake_textures, photo_texture_size, skin_uv_layout, upsampled
from topos_server.texture.fill import extend_beyond_islands
from topos_server.texture.skin_lighting import linear_to_srgb8

ANGLE_SHARPNESS = 2.0
UNSEEN_WEIGHT = 1e-3  # how much a bake's fill counts against a direct observation


def bake_views(images: list[np.ndarray], posed_points: list[np.ndarray], cameras: list[Camera], points: np.ndarray,
               topology: ReferenceTopology, size: int, *, landmarks: list[np.ndarray] | None = None,
               before_view: Callable[[int], None] | None = None,
               diagnostics: dict | None = None) -> dict[str, TextureMap]:
    """Every photo (H, W, 3) baked through its camera onto its posed head (N, 3), then merged
    (:func:`merge_view_bakes`) at the size the finest photo fills (:func:`~topos_server.texture.bake.photo_texture_size`)
    and scaled up to ``size``; points: (N, 3) the neutral head the normal map is made for; landmarks: each
    photo's own (478, 2|3) FaceMesh points (``bake_textures``' ``landmarks``), when known;
    ``before_view(v)`` is called before photo v is baked (progress); ``diagnostics`` receives what
    ``bake_textures`` gives one photo's (``coverage``, ``albedo_linear``, ``observed_albedo_linear``,
    ``mirror_asymmetry``) for the merge, at the merge's size (what ``learned.complete_textures`` reads)."""
    bakes, roughness = [], None
    if landmarks is None:
        landmarks = [None] * len(images)
    elif len(landmarks) != len(images):
        raise InvalidInputError(f"bake_views: {len(landmarks)} landmark sets for {len(images)} photos")
    # every view at the size the finest photo fills, merged there, then scaled up to size²
    working = max(photo_texture_size((image.shape[1], image.shape[0]), posed, camera, topology, size)
                  for image, posed, camera in zip(images, posed_points, cameras))
    for view, (image, posed, camera, view_landmarks) in enumerate(zip(images, posed_points, cameras, landmarks)):
        if before_view is not None:
            before_view(view)
        view_diagnostics: dict = {}
        maps = bake_textures(image, posed, camera, topology, size=working, landmarks=view_landmarks,
                             diagnostics=view_diagnostics)
        roughness = roughness or maps["roughness"]
        kept = ("direct_weight", "coverage", "albedo_linear") + (
            ("observed_albedo_linear", "mirror_asymmetry") if diagnostics is not None else ())
        bakes.append({k: view_diagnostics[k] for k in kept})
        del view_diagnostics
    merged = merge_view_bakes(bakes, roughness, points, topology, working, diagnostics=diagnostics)
    return merged if working == size else {name: upsampled(texture_map, size) for name, texture_map in merged.items()}


def merge_view_bakes(views: list[dict], roughness: TextureMap, points: np.ndarray,
                     topology: ReferenceTopology, size: int, diagnostics: dict | None = None) -> dict[str, TextureMap]:
    """``views``: per view, the ``diagnostics`` dict bake_textures filled (``direct_weight``,
    ``coverage``, ``albedo_linear``, and ``observed_albedo_linear`` when ``diagnostics`` is wanted: tile → (S, S) /
    (3, S, S) float32); points: (N, 3) neutral head. Returns albedo (sRGB), normal and the given roughness;
    ``diagnostics`` receives the merge's ``coverage`` (the most any view covered a texel), ``albedo_linear`` and
    ``observed_albedo_linear`` (the views' observations with the merge's weights, zero where none saw)."""
    layout = skin_uv_layout(topology, size, SKIN_MATERIALS)
    albedo_tiles, coverage_tiles, observed_tiles = {}, {}, {}
    for tt in layout.tiles:
        total = np.zeros((3, size, size), np.float64)
        weight_sum = np.zeros((size, size), np.float64)
        coverage = np.zeros((size, size), np.float64)
        observed = np.zeros((3, size, size), np.float64) if diagnostics is not None else None
        observed_weight = np.zeros((size, size), np.float64) if diagnostics is not None else None
        for view in views:
            direct = view["direct_weight"][tt.tile].astype(np.float64) ** ANGLE_SHARPNESS  # (S, S)
            weight = direct + UNSEEN_WEIGHT * view["coverage"][tt.tile]
            total += weight * view["albedo_linear"][tt.tile]
            weight_sum += weight
            coverage = np.maximum(coverage, view["coverage"][tt.tile])
            if observed is not None:
                seen = weight * (view["coverage"][tt.tile] > 0)  # (S, S) where this view's observation holds
                observed += seen * view["observed_albedo_linear"][tt.tile]
                observed_weight += seen
        merged = np.divide(total, weight_sum, out=views[0]["albedo_linear"][tt.tile].astype(np.float64).copy(),
                           where=weight_sum > 0)
        albedo_tiles[tt.tile] = extend_beyond_islands(np.clip(merged, 0.0, 1.0).astype(np.float32), tt.island)
        coverage_tiles[tt.tile] = coverage.astype(np.float32)
        if observed is not None:
            observed_tiles[tt.tile] = np.divide(observed, observed_weight, out=np.zeros_like(observed),
                                                where=observed_weight > 0).astype(np.float32)
    if diagnostics is not None:
        diagnostics.update(coverage=coverage_tiles, albedo_linear=albedo_tiles, observed_albedo_linear=observed_tiles,
                           mirror_asymmetry=all(view["mirror_asymmetry"] for view in views))
    albedo = {t: np.ascontiguousarray(linear_to_srgb8(img).transpose(1, 2, 0)) for t, img in albedo_tiles.items()}
    normal = material_maps.normal_tiles(layout, points, albedo_tiles, coverage_tiles)
    return {"albedo": TextureMap("albedo", albedo, "sRGB"), "normal": TextureMap("normal", normal, "raw"),
            "roughness": roughness}
