"""``--texture learned``: TOPOS-Texture completes the photo bake; ``--texture bake`` keeps the bake as is.

Engines call :func:`complete_textures` right after :func:`~topos_server.texture.bake.bake_textures`
(with the same ``diagnostics`` dict the bake filled)::

    diagnostics = {}
    maps = bake_textures(image, posed_points, camera, topology, size, diagnostics=diagnostics)
    maps = complete_textures(maps, diagnostics, neutral_points, topology, size, seed, mode=options.texture)

What ``learned`` does, for the skin tile the model knows (1001, the face; other tiles keep the bake):

1. The bake's observed albedo and coverage are reduced to the model's R² (area average). Seen
   texels whose colour is far from the portrait's skin in the lips band, on the forehead or the neck
   (teeth, hair, collar; :func:`~topos_server.data.texture_pairs.skin_trust`) count as unseen.
2. With the head's UV position and normal maps, the model samples the complete albedo (de-lit),
   roughness and detail height in ``SAMPLE_STEPS`` Euler steps of ``FlowMatchEulerDiscreteScheduler``
   from noise seeded by ``seed`` (the seed varies what the photo did not see).
3. Merge at the requested size: the learned albedo is upsampled, and where the photo saw the skin
   the bake's high-frequency detail (bake ÷ its own R²-low-pass, a ratio in [½, 2]) multiplies it,
   so seen texels keep the photo's detail and take the model's low frequencies (its de-lighting).
   Outside the skin island the model's own output (its fill) stands, so bilinear and mip lookups see
   no background. Detail normals: the baker's ``material_maps.normal_tiles`` of the learned albedo
   with the learned detail height added to its log-luminance, made at ``NORMAL_RESOLUTION`` and
   blended with the bake's normal map by how well the photo saw each texel. Roughness: the model's,
   upsampled.

The model loads once per process from ``models/weights/topos_texture_small`` (or ``$TOPOS_TEXTURE_MODEL``),
on the CPU with one thread's worth of work: a 64² UNet after pixel-unshuffle.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from topos_sdk.errors import AssetError, InvalidInputError
from topos_sdk.generate import check_texture
from topos_sdk.head_result import TextureMap
from topos_sdk.topology import ReferenceTopology
from topos_server.texture import material_maps
from topos_server.texture.bake import SKIN_MATERIALS, skin_uv_layout
from topos_server.texture.fill import push_pull
from topos_server.texture.skin_lighting import linear_to_srgb8

if TYPE_CHECKING:
    from topos_server.models.texture_model import ToposTextureModel

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights" / "topos_texture_small"
SAMPLE_STEPS = 2
NORMAL_RESOLUTION = 512  # the learned detail normals are made at this size (the model's maps are 256²)
DETAIL_RATIO_RANGE = (0.5, 2.0)


@functools.lru_cache(maxsize=2)
def load_texture_model(folder: str | None = None) -> "ToposTextureModel":
    """The committed model (or ``folder`` / ``$TOPOS_TEXTURE_MODEL``), eval mode, CPU, cached per process."""
    from topos_server.models.texture_model import ToposTextureModel

    path = Path(folder or os.environ.get("TOPOS_TEXTURE_MODEL") or WEIGHTS_DIR)
    if not (path / "config.json").is_file():
        raise AssetError(f"--texture learned needs TOPOS-Texture weights; none in {path} "
                         f"(train them: topos train texture --out DIR)")
    return ToposTextureModel.from_pretrained(path, low_cpu_mem_usage=False).float().eval()  # stored as float16


def complete_textures(bake_maps: dict[str, TextureMap], diagnostics: dict, points: np.ndarray,
                      topology: ReferenceTopology, size: int, seed: int, mode: str = "learned",
                      model: "ToposTextureModel | None" = None, steps: int = SAMPLE_STEPS) -> dict[str, TextureMap]:
    """The textures of ``mode``: ``"bake"`` returns ``bake_maps``; ``"learned"`` completes them (module notes).

    bake_maps: what ``bake_textures`` returned; diagnostics: the dict it filled (``albedo_linear``,
    ``coverage``, and ``observed_albedo_linear`` when the baker provides it: tile → (3, S, S) /
    (S, S) float32); points: (N, 3) the head (reference order, same frame as the bake's normals —
    any, the maps are normalised); size: texels per tile side of the bake; seed: noise of the sampler;
    steps: Euler steps of the sampler.
    Deterministic per seed. Returns albedo (sRGB), normal (raw) and roughness (raw) maps.
    """
    if check_texture(mode) == "bake":
        return bake_maps
    # torch models and diffusers load only when learned textures are asked for (the bake path stays light)
    import torch

    from topos_server.data.texture_pairs import (decode_albedo, downsample_observation, model_condition, skin_trust,
                                                 uv_geometry)
    from topos_server.models.texture_model import HEIGHT_SCALE

    model = model or load_texture_model()
    tile = model.config.tile
    if tile not in diagnostics.get("albedo_linear", {}) or tile not in diagnostics.get("coverage", {}):
        raise InvalidInputError(f"complete_textures needs the bake's diagnostics for tile {tile} "
                                "(pass diagnostics= to bake_textures)")
    resolution = model.config.resolution
    bake_albedo = diagnostics["albedo_linear"][tile]  # (3, S, S) filled
    observed = diagnostics.get("observed_albedo_linear", diagnostics["albedo_linear"])[tile]  # (3, S, S)
    coverage = np.clip(diagnostics["coverage"][tile], 0.0, 1.0)  # (S, S)

    geometry = uv_geometry(topology, points, resolution, tile)
    low, low_weight = downsample_observation(observed, coverage, resolution)  # (3, R, R), (R, R)
    trust = skin_trust(low, low_weight, geometry)  # (R, R)
    bake_low = downsample_observation(bake_albedo, None, resolution)[0]  # (3, R, R)
    # the prior never holds what the skin test took out (teeth, hair, collar), as in training: filled from around
    kept = np.where(low_weight > 0, trust, 1.0).astype(np.float32)  # (R, R)
    fill = bake_low * kept + push_pull(bake_low * kept, kept) * (1.0 - kept)  # (3, R, R)
    condition = model_condition(low, low_weight * trust, fill, geometry)  # (14, R, R)
    with torch.no_grad():
        x0 = model.sample(torch.from_numpy(condition)[None], steps,
                          torch.Generator().manual_seed(int(seed)))[0].numpy()  # (5, R, R)

    def resized(planes: np.ndarray, side: int, interpolation=cv2.INTER_LINEAR) -> np.ndarray:  # (C, r, r) → (C, side, side)
        out = np.empty((len(planes), side, side), np.float32)
        for plane, dst in zip(planes, out):
            cv2.resize(np.ascontiguousarray(plane, np.float32), (side, side), dst=dst, interpolation=interpolation)
        return out

    learned = resized(decode_albedo(x0[:3]), size)  # (3, S, S)
    seen = coverage * resized(trust[None], size)[0]  # (S, S)
    bake_low = resized(bake_low, size)  # (3, S, S) the bake at the model's resolution
    ratio = np.divide(bake_albedo, bake_low, out=np.ones_like(bake_albedo), where=bake_low > 1e-4)
    np.clip(ratio, *DETAIL_RATIO_RANGE, out=ratio)
    ratio -= 1.0
    ratio *= seen
    ratio += 1.0
    albedo = np.clip(learned * ratio, 0.0, 1.0, out=learned)  # (3, S, S); off the island: the model's own fill

    # detail normals of what the model made, at NORMAL_RESOLUTION, blended with the bake's where the photo saw
    layout = skin_uv_layout(topology, NORMAL_RESOLUTION, SKIN_MATERIALS)
    tt = next(t for t in layout.tiles if t.tile == tile)
    height = resized(x0[4:5], NORMAL_RESOLUTION)[0] * np.float32(HEIGHT_SCALE)  # (n, n) log-luminance detail
    detail = resized(decode_albedo(x0[:3]), NORMAL_RESOLUTION) * np.exp(height)[None]
    learned_normal = material_maps.normal_tiles(dataclasses.replace(layout, tiles=(tt,)), points, {tile: detail},
                                                {tile: tt.island.astype(np.float32)})[tile]  # (n, n, 3) uint8
    learned_normal = cv2.resize(learned_normal, (size, size), interpolation=cv2.INTER_LINEAR)
    # a convex blend of unit normals: slightly short only across the seen/unseen transition (shaders normalise)
    normal = cv2.blendLinear(bake_maps["normal"].tiles[tile], learned_normal, seen, 1.0 - seen)  # (S, S, 3) uint8
    roughness = resized((x0[3:4] + 1.0) * 0.5, size)[0]  # (S, S)

    albedo_tiles = dict(bake_maps["albedo"].tiles)
    albedo_tiles[tile] = np.ascontiguousarray(linear_to_srgb8(albedo).transpose(1, 2, 0))
    normal_tiles = dict(bake_maps["normal"].tiles)
    normal_tiles[tile] = normal
    roughness_tiles = dict(bake_maps["roughness"].tiles)
    roughness_tiles[tile] = np.clip(np.rint(roughness * 255.0), 0, 255).astype(np.uint8)[:, :, None]
    return {"albedo": TextureMap("albedo", albedo_tiles, "sRGB"), "normal": TextureMap("normal", normal_tiles, "raw"),
            "roughness": TextureMap("roughness", roughness_tiles, "raw")}
