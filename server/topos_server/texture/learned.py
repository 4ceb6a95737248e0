"""``--texture learned``: TOPOS-Texture completes the photo bake; ``--texture bake`` keeps the bake as is.

Engines call :func:`portrait_textures`, which bakes (:func:`~topos_server.texture.bake.bake_textures`, at the size
the photo fills) and calls :func:`complete_textures` with the ``diagnostics`` dict the bake filled::

    maps, bake_size = portrait_textures(image, posed_points, camera, neutral_points, topology, size, options.texture,
                                        seed, landmarks=face.points)

Several photos of one person: :func:`views_textures`, the same on the merge of their bakes
(:func:`~topos_server.texture.multiview.bake_views`: observations, coverage and fill merged by viewing angle).

What ``learned`` does, for the skin tile the model knows (1001, the face; other tiles keep the bake):

1. The bake's observed albedo and coverage are reduced to the model's R² (area average). Seen
   texels whose colour is far from the portrait's skin in the lips band, on the forehead or the neck
   (teeth, hair, collar; :func:`~topos_server.data.texture_pairs.skin_trust`) count as unseen.
2. With the head's UV position and normal maps, the model samples the complete low-frequency albedo
   (de-lit) and roughness in ``SAMPLE_STEPS`` Euler steps (``FlowMatchEulerDiscreteScheduler``'s, taken by
   the numpy sampler) from noise seeded by ``seed`` (the seed varies what the photo did not see).
3. Where the photo saw the skin, the bake's low frequencies (its SH de-lighting) stay unless
   ``delight_seen``: the model's own de-lighting measured worse (BENCHMARKS.md); it completes the rest.
4. Merge at the bake's own (working) size, then to 8-bit sRGB scaled up to the requested size as the bake
   scales its maps (``bake.upsampled``): the model replaces the bake's low frequencies, the bake keeps its high
   ones — ``albedo = up(learned) + keep · (bake − up(bake at R²))`` — the photo's detail where it saw skin,
   the mirror side's where the baker filled from it; ``keep`` is 0 on texels the skin test took out
   (teeth, hair, collar: their detail goes with them). The model's prior is the bake's fill with the face's
   seen left/right difference carried over to what the baker copied from the mirror side, as in training
   (``texture_pairs.add_mirror_asymmetry``; added here at R² unless the bake did it: ``bake_textures(
   mirror_asymmetry=True)``, never twice). An untrained model returns the bake where the photo saw and, where
   the baker copied the mirror side, that copy shifted by the seen left/right difference.
   Detail normals: the bake's where its detail is kept, elsewhere the baker's
   ``material_maps.normal_tiles`` of the merged albedo (made at ``NORMAL_RESOLUTION``). Roughness: the
   model's, upsampled.

The model loads once per process from ``models/weights/topos_texture_small`` (or ``$TOPOS_TEXTURE_MODEL``)
into :class:`~topos_server.models.texture_model_numpy.NumpyTextureModel`: the same network in numpy, so this
path imports neither torch nor diffusers (4–6 s of every CLI run before); a 32² UNet after pixel-unshuffle.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from topos_sdk.errors import AssetError, InvalidInputError
from topos_sdk.generate import check_texture
from topos_sdk.head_result import Camera, TextureMap
from topos_sdk.topology import ReferenceTopology
from topos_server.texture import material_maps
from topos_server.texture.bake import SKIN_MATERIALS, bake_textures, photo_texture_size, skin_uv_layout
from topos_server.texture.fill import push_pull
from topos_server.texture.skin_lighting import linear_to_srgb8

if TYPE_CHECKING:
    from topos_server.models.texture_model_numpy import NumpyTextureModel

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights" / "topos_texture_small"
SAMPLE_STEPS = 1  # one Euler step from noise: the conditional mean; 2 steps measured worse (BENCHMARKS.md)
NORMAL_RESOLUTION = 512  # detail normals of the replaced texels are made at this size
DELIGHT_SEEN = False  # the model's de-lighting of seen skin measured worse than the bake's SH (bench/texture_eval.py)


def views_textures(images: list[np.ndarray], posed_points: list[np.ndarray], cameras: list[Camera],
                   points: np.ndarray, topology: ReferenceTopology, size: int, mode: str, seed: int, *,
                   landmarks: list[np.ndarray] | None = None, before_view=None,
                   timings: dict[str, float] | None = None) -> dict[str, TextureMap]:
    """The textures of several photos of one person at ``size``² per tile: their bakes merged
    (:func:`~topos_server.texture.multiview.bake_views`, arguments as there), then completed by ``mode``
    (:func:`complete_textures`, on the merge as on one photo's bake). ``timings`` as in :func:`portrait_textures`."""
    from topos_server.texture.multiview import bake_views

    mode = check_texture(mode)
    start = time.perf_counter()
    diagnostics = {} if mode != "bake" else None
    baked = bake_views(images, posed_points, cameras, points, topology, size, landmarks=landmarks,
                       before_view=before_view, diagnostics=diagnostics)
    return _completed(baked, diagnostics, start, points, topology, size, mode, seed, timings)


def _completed(baked: dict[str, TextureMap], diagnostics: dict | None, start: float, points: np.ndarray,
               topology: ReferenceTopology, size: int, mode: str, seed: int,
               timings: dict[str, float] | None) -> dict[str, TextureMap]:
    """``baked`` (baked since ``start``, ``time.perf_counter()``) completed by ``mode``; ``timings`` receives
    ``"bake"`` and, unless mode is bake, ``"texture_<mode>"`` seconds."""
    baked_at = time.perf_counter()
    maps = complete_textures(baked, diagnostics or {}, points, topology, size, seed, mode=mode)
    if timings is not None:
        timings["bake"] = baked_at - start
        if mode != "bake":
            timings["texture_" + mode] = time.perf_counter() - baked_at
    return maps


@functools.lru_cache(maxsize=2)
def load_texture_model(folder: str | None = None) -> "NumpyTextureModel":
    """The committed model (or ``folder`` / ``$TOPOS_TEXTURE_MODEL``) as numpy arrays (float32), cached per process."""
    from safetensors import SafetensorError

    from topos_server.models.texture_model_numpy import NumpyTextureModel

    path = Path(folder or os.environ.get("TOPOS_TEXTURE_MODEL") or WEIGHTS_DIR)
    if not (path / "config.json").is_file():
        raise AssetError(f"--texture learned needs TOPOS-Texture weights; none in {path} "
                         f"(train them: topos train texture --out DIR)")
    try:
        return NumpyTextureModel.load(path)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise AssetError(f"TOPOS-Texture weights in {path} do not load: {exc}") from exc


def portrait_textures(image: np.ndarray, posed_points: np.ndarray, camera: Camera, points: np.ndarray,
                      topology: ReferenceTopology, size: int, mode: str, seed: int, *, landmarks: np.ndarray | None = None,
                      timings: dict[str, float] | None = None) -> tuple[dict[str, TextureMap], int]:
    """The textures of one portrait at ``size``² per tile: baked at the size the photo fills
    (:func:`~topos_server.texture.bake.photo_texture_size`), then completed by ``mode`` (:func:`complete_textures`).

    image: (H, W, 3) uint8; posed_points: (N, 3) the fitted head with its expression; camera: its camera;
    points: (N, 3) the neutral head; landmarks: the photo's (478, 2|3) FaceMesh points. ``timings`` receives
    ``"bake"`` and, unless mode is bake, ``"texture_<mode>"`` seconds. Returns the maps and the bake's size.
    """
    mode = check_texture(mode)
    start = time.perf_counter()
    working = photo_texture_size((image.shape[1], image.shape[0]), posed_points, camera, topology, size)
    # the bake's per-texel diagnostics (~150–200 MiB at 2048²) only for the learned completion that reads them
    diagnostics = {} if mode != "bake" else None
    baked = bake_textures(image, posed_points, camera, topology, size=size, landmarks=landmarks,
                          working_size=working, diagnostics=diagnostics)
    return _completed(baked, diagnostics, start, points, topology, size, mode, seed, timings), working


def complete_textures(bake_maps: dict[str, TextureMap], diagnostics: dict, points: np.ndarray,
                      topology: ReferenceTopology, size: int, seed: int, mode: str = "learned",
                      model=None, steps: int = SAMPLE_STEPS,
                      delight_seen: bool = DELIGHT_SEEN) -> dict[str, TextureMap]:
    """The textures of ``mode``: ``"bake"`` returns ``bake_maps``; ``"learned"`` completes them (module notes).

    bake_maps: what ``bake_textures`` returned; diagnostics: the dict it filled (``albedo_linear``,
    ``coverage``, and ``observed_albedo_linear`` when the baker provides it: tile → (3, S, S) /
    (S, S) float32); points: (N, 3) the head (reference order, same frame as the bake's normals —
    any, the maps are normalised); size: texels per tile side of the bake; seed: noise of the sampler;
    model: a :class:`~topos_server.models.texture_model_numpy.NumpyTextureModel` or a torch ``ToposTextureModel``
    (run through the numpy one; default: :func:`load_texture_model`);
    steps: Euler steps of the sampler; delight_seen: the model's low frequencies also where the photo saw
    the skin (its de-lighting), else only where it did not (the bake's SH de-lighting stays).
    Deterministic per seed. Returns albedo (sRGB), normal (raw) and roughness (raw) maps.
    """
    if check_texture(mode) == "bake":
        return bake_maps
    from topos_server.data.texture_pairs import (add_mirror_asymmetry, decode_albedo, downsample_observation, mirrored,
                                                 model_condition, skin_trust, uv_geometry)
    from topos_server.models.texture_model_numpy import NumpyTextureModel

    model = model or load_texture_model()
    if not isinstance(model, NumpyTextureModel):
        model = NumpyTextureModel.of(model)
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
    if not diagnostics.get("mirror_asymmetry", False):  # the prior carries the seen asymmetry over, as in training
        seen = np.clip(low_weight * trust, 0.0, 1.0) * geometry.island  # (R, R)
        mirror_weight = mirrored(low, seen, topology, tile)[1] * geometry.island
        add_mirror_asymmetry(fill, low, seen, (1.0 - seen) * np.clip(mirror_weight, 0.0, 1.0), topology, tile)
        np.clip(fill, 0.0, 1.0, out=fill)
    condition = model_condition(low, low_weight * trust, fill, geometry, topology, tile)  # (18, R, R)
    x0 = model.sample(condition[None], steps, int(seed))[0]  # (4, R, R)

    learned = decode_albedo(x0[:3])  # (3, R, R)
    if not delight_seen:  # where the photo saw the skin its low frequencies stay: the model completes the rest
        seen_low = np.clip(low_weight * trust, 0.0, 1.0)  # (R, R)
        learned += (bake_low - learned) * seen_low

    def resized(planes: np.ndarray, side: int, interpolation=cv2.INTER_LINEAR) -> np.ndarray:  # (C, r, r) → (C, side, side)
        out = np.empty((len(planes), side, side), np.float32)
        for plane, dst in zip(planes, out):
            cv2.resize(np.ascontiguousarray(plane, np.float32), (side, side), dst=dst, interpolation=interpolation)
        return out

    # keep the bake's high frequencies (bake − its R² low-pass) except where the skin test took texels out
    working = bake_albedo.shape[-1]  # W: the bake's own size (bake_textures' working_size), at most ``size``
    keep = 1.0 - coverage * (1.0 - resized(trust[None], working)[0])  # (W, W)
    detail = resized(bake_low, working)  # (3, W, W)
    np.subtract(bake_albedo, detail, out=detail)
    detail *= keep
    albedo = resized(learned, working)  # (3, W, W)
    albedo += detail
    del detail
    np.clip(albedo, 0.0, 1.0, out=albedo)
    merged = resized(albedo, NORMAL_RESOLUTION)  # (3, n, n) for the detail normals below
    # to 8-bit sRGB at the bake's size, then scaled up as the bake scales its own maps (bake.upsampled)
    albedo8 = np.ascontiguousarray(linear_to_srgb8(albedo).transpose(1, 2, 0))  # (W, W, 3) uint8
    del albedo
    if working != size:
        albedo8, keep = cv2.resize(albedo8, (size, size), interpolation=cv2.INTER_LINEAR), \
            resized(keep[None], size)[0]  # (S, S, 3), (S, S)

    # detail normals: the bake's where its detail is kept, elsewhere those of the merged albedo
    layout = skin_uv_layout(topology, NORMAL_RESOLUTION, SKIN_MATERIALS)
    tt = next(t for t in layout.tiles if t.tile == tile)
    learned_normal = material_maps.normal_tiles(dataclasses.replace(layout, tiles=(tt,)), points, {tile: merged},
                                                {tile: tt.island.astype(np.float32)})[tile]  # (n, n, 3) uint8
    learned_normal = cv2.resize(learned_normal, (size, size), interpolation=cv2.INTER_LINEAR)
    # a convex blend of unit normals: slightly short only across the kept/replaced transition (shaders normalise)
    normal = cv2.blendLinear(bake_maps["normal"].tiles[tile], learned_normal, keep, 1.0 - keep)  # (S, S, 3) uint8
    roughness8 = np.clip(np.rint((x0[3] + 1.0) * 127.5), 0, 255).astype(np.uint8)  # (R, R)

    albedo_tiles = dict(bake_maps["albedo"].tiles)
    albedo_tiles[tile] = albedo8
    normal_tiles = dict(bake_maps["normal"].tiles)
    normal_tiles[tile] = normal
    roughness_tiles = dict(bake_maps["roughness"].tiles)
    roughness_tiles[tile] = cv2.resize(roughness8, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, None]
    return {"albedo": TextureMap("albedo", albedo_tiles, "sRGB"), "normal": TextureMap("normal", normal_tiles, "raw"),
            "roughness": TextureMap("roughness", roughness_tiles, "raw")}
