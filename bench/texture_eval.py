"""TOPOS-Texture (``--texture learned``) against today's bake, on held-out data only.

    python bench/texture_eval.py [--model DIR] [--portraits 96] [--heads 10] [--timing]
                                 [--openings 96] [--hair 96] [--clothing 96]
                                 [--sheet docs/texture_contact_sheet.jpg --sheet-names A000014 ...]

1. **Restoration** on the held-out portraits' bakes (``TextureBank("eval")``: the 96 portraits
   ``split_portraits`` holds out; never seen in training). Each bake's observed texels (tile 1001,
   512²) are hidden by another held-out portrait's observation weight (flipped left↔right for every
   other portrait) times the visibility from a head turn (yaw ±70°, pitch ±25°, fixed seeds) — the
   protocol of training, on other people. Scored on the hidden-but-observed texels (truth weight
   > 0.5, visible < 0.5): mean L1 in linear RGB and the L1 of the finite-difference gradients, for
   today's fill (``texture_pairs.bake_fill``: the baker's mirror step, harmonic vertex field and
   push-pull of the residual), the same with the seen left/right difference added to what it took from the
   mirror side (``mirror_asymmetry=True``; ``fill_asymmetry``), and for ``complete_textures(mode="learned")``
   given either bake (``learned``: today's, ``learned_asymmetry``: the other, one seed). All go
   through 8-bit sRGB, as the asset's PNGs do. Seed spread: the mean |difference| on those texels between
   two seeds. Also the *oracle* of the design: the fill with its
   low frequencies at the model's R² replaced by the truth's (``fill + up(truth↓R) − up(fill↓R)``), the
   best a model that works at R² could do.
2. **De-lighting** on synthetic heads with known albedo (held-out bank textures,
   ``SyntheticPortraits("eval")``): each head is rendered under 5 random lights (same head, albedo
   and camera) and baked through the true camera; error of the albedo against the truth on the
   texels seen well (coverage > 0.5) after one gain per channel (the exposure is unknowable), and
   the spread across the 5 lights (per-texel std of the gain-matched albedo, averaged) — today's SH
   de-lighting (and baked with ``mirror_asymmetry=True``: ``sh_asymmetry``) vs learned.
3. **Timing** (``--timing``): ``complete_textures`` at 1024² and 2048² and the model's sampling alone
   (the numpy sampler ``--texture learned`` runs; ``OMP_NUM_THREADS=1`` for one thread), warm, best of 3.
4. **Openings** (``--openings N``): the first N held-out portraits fitted by the classic engine and baked at
   512² with and without their landmarks (``bake_textures(landmarks=)``: the mouth and eye openings masked; the
   hair and clothing masks off in both).
   Per portrait and region of the face tile (``face_regions`` "lips" > 0.5, "eyes" > 0.5): the share of the
   region's texels the photo saw (direct weight > 0.5) that look into an opening (the mask takes them out), and
   how far those texels' baked colour is from the rest of the region's (mean sRGB L1 to its median colour, 0–255)
   without and with the mask: teeth and sclera are far from lips and lids. (The restoration and de-lighting
   protocols above bake without landmarks: the bank's bakes and the synthetic renders have none.)
5. **Hair** (``--hair N``): the first N held-out portraits baked at 512² with their landmarks, without and with
   the hair mask (``bake_textures(hair=)``, :mod:`topos_server.texture.hair_mask`). Per portrait: whether it has a
   mask (hair and skin colours told apart), the share of the forehead's texels (``face_regions`` "forehead" > 0.5)
   the photo saw (direct weight > 0.5) that the mask takes out, and how far the forehead's baked colour is from
   the cheeks' (mean sRGB L1 to the median of "lighting_fit" > 0.5 away from the forehead, 0–255) without and
   with it, and the share of its texels brighter (luma) than the cheeks' brightest 2 %. Portraits without a mask
   bake bit for bit as without it (checked). The clothing mask is off in both.
   **Clothing** (``--clothing N``): the same for the clothing mask (:mod:`topos_server.texture.clothing_mask`) on
   the neck (``face_regions`` "neck" > 0.5), the hair mask off in both: a white collar is far from the cheeks'
   colour and brighter than them (a neck in shadow is far from it too, but darker).
6. **Contact sheet** (``--sheet``): portrait | today's bake | learned albedo | learned relit preview.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZE = 512
LIGHTS = 5


def through_srgb8(linear: np.ndarray) -> np.ndarray:
    from topos_server.texture.skin_lighting import linear_to_srgb8, srgb8_to_linear

    return srgb8_to_linear(linear_to_srgb8(linear))


def learned_albedo(model, observed, weight, bake_albedo, points, topology, seed: int, steps: int,
                   mirror_asymmetry: bool = False) -> np.ndarray:
    """complete_textures on a bake given as arrays (tile 1001 only) → (3, S, S) linear albedo (via sRGB8)."""
    from topos_sdk.head_result import TextureMap
    from topos_server.texture.learned import complete_textures
    from topos_server.texture.skin_lighting import linear_to_srgb8, srgb8_to_linear

    size = weight.shape[0]
    flat_normal = np.zeros((size, size, 3), np.uint8)
    flat_normal[:] = (128, 128, 255)
    maps = {"albedo": TextureMap("albedo", {1001: linear_to_srgb8(bake_albedo).transpose(1, 2, 0)}, "sRGB"),
            "normal": TextureMap("normal", {1001: flat_normal}, "raw"),
            "roughness": TextureMap("roughness", {1001: np.full((size, size, 1), 140, np.uint8)}, "raw")}
    diagnostics = {"albedo_linear": {1001: bake_albedo}, "coverage": {1001: weight},
                   "observed_albedo_linear": {1001: observed}, "mirror_asymmetry": mirror_asymmetry}
    out = complete_textures(maps, diagnostics, points, topology, size, seed, model=model, steps=steps)
    return srgb8_to_linear(out["albedo"].tiles[1001]).transpose(2, 0, 1)


def scores(predicted: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean L1 over ``mask`` (S, S) and mean L1 of the x/y finite differences where both texels are in it."""
    l1 = float(np.abs(predicted - truth)[:, mask].mean())
    errors = []
    for axis, both in ((2, mask[:, 1:] & mask[:, :-1]), (1, mask[1:, :] & mask[:-1, :])):
        errors.append(np.abs(np.diff(predicted, axis=axis) - np.diff(truth, axis=axis))[:, both])
    return l1, float(np.concatenate(errors, axis=1).mean())


def restoration(model, topology, count: int, steps: tuple[int, ...]) -> dict:
    from topos_server.data.texture_bank import TextureBank
    import cv2
    from topos_server.data.texture_pairs import (MAX_PITCH_DEG, MAX_YAW_DEG, bake_fill, downsample_observation,
                                                 pose_visibility, uv_geometry)

    def upsampled(planes: np.ndarray) -> np.ndarray:  # (3, r, r) → (3, SIZE, SIZE)
        return np.stack([cv2.resize(p, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for p in planes])

    bank = TextureBank("eval")
    names = bank.names[:count]
    if len(names) < 2:
        raise SystemExit(f"the eval texture bank has {len(names)} entries; build it: "
                         "python -m topos_server.data.texture_bank --split eval")
    bank.require_current()
    geometry = uv_geometry(topology, topology.rest_points, SIZE)
    rows = []
    for index, name in enumerate(names):
        entry = bank.load(name)
        other = bank.load(names[(index + 1) % len(names)])
        rng = np.random.default_rng([13, index])
        visible = other["observed_weight"].astype(np.float32)
        if index % 2:
            visible = visible[:, ::-1]
        visible = visible * pose_visibility(geometry.normal, rng)
        truth = entry["observed_albedo"].astype(np.float32).transpose(2, 0, 1)  # (3, S, S)
        truth_weight = entry["observed_weight"].astype(np.float32)
        seen = truth_weight * visible
        observed = truth * (seen > 0)
        hidden = (truth_weight > 0.5) & (visible < 0.5) & geometry.island.astype(bool)
        if hidden.sum() < 100:
            continue
        fill, _ = bake_fill(observed, seen, topology)
        fill_l1, fill_grad = scores(through_srgb8(fill), truth, hidden)
        row = {"name": name, "hidden_texels": int(hidden.sum()), "fill_l1": fill_l1, "fill_grad": fill_grad}
        fill_asymmetry, _ = bake_fill(observed, seen, topology, mirror_asymmetry=True)
        row["fill_asymmetry_l1"], row["fill_asymmetry_grad"] = scores(through_srgb8(fill_asymmetry), truth, hidden)
        r = model.config.resolution
        oracle = fill + upsampled(downsample_observation(truth, truth_weight, r)[0]) \
            - upsampled(downsample_observation(fill, None, r)[0])
        row["oracle_l1"], row["oracle_grad"] = scores(through_srgb8(np.clip(oracle, 0.0, 1.0)), truth, hidden)
        for n in steps:
            learned = learned_albedo(model, observed, seen, fill, topology.rest_points, topology, index, n)
            row[f"learned{n}_l1"], row[f"learned{n}_grad"] = scores(learned, truth, hidden)
            other_seed = learned_albedo(model, observed, seen, fill, topology.rest_points, topology, index + 1000, n)
            row[f"learned{n}_seed_spread"] = float(np.abs(other_seed - learned)[:, hidden].mean())
            learned = learned_albedo(model, observed, seen, fill_asymmetry, topology.rest_points, topology, index, n,
                                     mirror_asymmetry=True)
            row[f"learned_asymmetry{n}_l1"], row[f"learned_asymmetry{n}_grad"] = scores(learned, truth, hidden)
        rows.append(row)
        print(f"{name}: hidden {hidden.sum()} texels  L1 fill {fill_l1:.4f} "
              f"with asymmetry {row['fill_asymmetry_l1']:.4f} oracle {row['oracle_l1']:.4f} "
              + " ".join(f"learned({n} steps) {row[f'learned{n}_l1']:.4f}" for n in steps)
              + f"  grad fill {fill_grad:.4f} " + " ".join(f"{row[f'learned{n}_grad']:.4f}" for n in steps),
              file=sys.stderr, flush=True)
    keys = ["fill_l1", "fill_grad", "fill_asymmetry_l1", "fill_asymmetry_grad", "oracle_l1", "oracle_grad"] + [
        f"learned{n}_{m}" for n in steps for m in ("l1", "grad", "seed_spread")] + [
        f"learned_asymmetry{n}_{m}" for n in steps for m in ("l1", "grad")]
    summary = {key: float(np.mean([r[key] for r in rows])) for key in keys}
    summary["fill_asymmetry_l1_reduction"] = 1.0 - summary["fill_asymmetry_l1"] / summary["fill_l1"]
    summary["fill_asymmetry_better_portraits"] = int(sum(r["fill_asymmetry_l1"] < r["fill_l1"] for r in rows))
    for n in steps:
        summary[f"learned{n}_l1_reduction"] = 1.0 - summary[f"learned{n}_l1"] / summary["fill_l1"]
        summary[f"learned{n}_grad_reduction"] = 1.0 - summary[f"learned{n}_grad"] / summary["fill_grad"]
        summary[f"learned{n}_better_portraits"] = int(sum(r[f"learned{n}_l1"] < r["fill_l1"] for r in rows))
        summary[f"learned_asymmetry{n}_better_portraits"] = int(
            sum(r[f"learned_asymmetry{n}_l1"] < r["fill_asymmetry_l1"] for r in rows))
    summary.update(portraits=len(rows),
                   protocol=f"hide: another held-out bake's weight (mirrored every other) x head-turn visibility "
                            f"(yaw ±{MAX_YAW_DEG:g}°, pitch ±{MAX_PITCH_DEG:g}°)")
    return {"summary": summary, "rows": rows}


def delighting(model, heads: int) -> dict:
    from topos_server.data.synthetic_portraits import FACE_TILE, SyntheticPortraits
    from topos_server.texture.bake import bake_textures
    from topos_server.texture.learned import DELIGHT_SEEN

    portraits = SyntheticPortraits("eval", seed=7)
    topology = portraits.topology
    rows = []
    for index in range(heads):
        rng = portraits.rng(index)
        identity = rng.normal(size=portraits.engine.identity_basis.shape[0])
        head = portraits.engine.identity_points(identity).astype(np.float64)  # (N, 3) neutral expression
        albedo, _ = portraits.albedo(rng)
        camera, pose = portraits.camera(head, rng)
        truth = albedo[FACE_TILE].transpose(2, 0, 1)  # (3, S, S) linear
        estimates = {"sh": [], "sh_asymmetry": [], "learned": [], "model_delit": []}
        masks = []
        for light in range(LIGHTS):
            image = portraits.draw(head, albedo, camera, np.random.default_rng([21, index, light]))
            diagnostics: dict = {}
            try:
                maps = bake_textures(image, head, camera, topology, size=truth.shape[-1], diagnostics=diagnostics)
            except ValueError as exc:  # the baker fails on some renders (reported, not hidden)
                print(f"head {index} light {light}: bake failed ({exc})", file=sys.stderr, flush=True)
                break
            masks.append(diagnostics["coverage"][FACE_TILE] > 0.5)
            estimates["sh"].append(through_srgb8(diagnostics["albedo_linear"][FACE_TILE]))
            with_asymmetry: dict = {}
            bake_textures(image, head, camera, topology, size=truth.shape[-1], mirror_asymmetry=True,
                          diagnostics=with_asymmetry)
            estimates["sh_asymmetry"].append(through_srgb8(with_asymmetry["albedo_linear"][FACE_TILE]))
            from topos_server.texture.learned import complete_textures
            from topos_server.texture.skin_lighting import srgb8_to_linear

            for key, delight_seen in (("learned", DELIGHT_SEEN), ("model_delit", True)):
                out = complete_textures(maps, diagnostics, head, topology, truth.shape[-1], seed=light, model=model,
                                        delight_seen=delight_seen)
                estimates[key].append(srgb8_to_linear(out["albedo"].tiles[FACE_TILE]).transpose(2, 0, 1))
        if len(masks) < LIGHTS:
            continue
        mask = np.logical_and.reduce(masks)
        if mask.sum() < 1000:
            continue
        row = {"head": index, "yaw_deg": round(float(pose["yaw_deg"]), 1), "texels": int(mask.sum())}
        for method, albedos in estimates.items():
            matched = []
            for estimate in albedos:
                gain = np.median(truth[:, mask], axis=1) / np.maximum(np.median(estimate[:, mask], axis=1), 1e-6)
                matched.append(estimate[:, mask] * gain[:, None])  # (3, M)
            matched = np.stack(matched)  # (L, 3, M)
            row[f"{method}_error"] = float(np.abs(matched - truth[:, mask][None]).mean())
            row[f"{method}_spread"] = float(matched.std(axis=0).mean())
        rows.append(row)
        print(f"head {index} (yaw {row['yaw_deg']}°): " + "  ".join(
            f"{method} error {row[f'{method}_error']:.4f} spread {row[f'{method}_spread']:.4f}" for method in estimates),
            file=sys.stderr, flush=True)
    summary = {f"{method}_{score}": float(np.mean([r[f"{method}_{score}"] for r in rows]))
               for method in ("sh", "sh_asymmetry", "learned", "model_delit") for score in ("error", "spread")}
    summary["heads"] = len(rows)
    return {"summary": summary, "rows": rows}


def timing(model, topology) -> dict:
    from skimage.data import astronaut
    from topos_server.engines import shared_engine
    from topos_server.data.texture_pairs import model_condition, uv_geometry
    from topos_server.texture.bake import bake_textures
    from topos_server.texture.learned import SAMPLE_STEPS, complete_textures

    engine = shared_engine("classic")
    result, _ = engine.fit_portrait(astronaut())
    out = {}
    for size in (1024, 2048):
        diagnostics: dict = {}
        maps = bake_textures(astronaut(), result.posed_points(), result.camera, topology, size=size,
                             diagnostics=diagnostics)
        best = []
        for _ in range(3):
            start = time.perf_counter()
            complete_textures(maps, diagnostics, result.points, topology, size, seed=0, model=model)
            best.append(time.perf_counter() - start)
        out[f"complete_textures_{size}_s"] = min(best)
    geometry = uv_geometry(topology, result.points, model.config.resolution)
    r = model.config.resolution
    zeros = np.zeros((3, r, r), np.float32)
    condition = model_condition(zeros, zeros[0], zeros, geometry, topology)[None]  # (1, 18, R, R)
    best = []
    for _ in range(3):
        start = time.perf_counter()
        model.sample(condition, SAMPLE_STEPS, 0)
        best.append(time.perf_counter() - start)
    out["model_sample_s"] = min(best)
    out["sample_steps"] = SAMPLE_STEPS
    out["parameters_M"] = round(sum(w.size for w in model.weights.values()) / 1e6, 2)
    return out


def face_tile_regions(topology, names: tuple[str, ...]) -> list:
    """The ``face_regions`` ``names`` on the face tile at SIZE²: one (S, S) float32 weight image each."""
    from topos_server.texture.bake import skin_uv_layout
    from topos_server.texture.face_regions import face_regions

    tt = next(t for t in skin_uv_layout(topology, SIZE).tiles if t.tile == 1001)
    regions = face_regions(topology)
    per_vertex = np.stack([regions.get(name, topology.num_points) for name in names])  # (R, N)
    return [tt.image(values) for values in tt.interpolate(per_vertex)]


def fitted_held_out_portraits(engine, count: int):
    """The first ``count`` held-out portraits the classic engine fits: yields (name, image, result, face); a portrait
    it cannot fit is reported and skipped."""
    from topos_server.data.texture_bank import split_files
    from topos_server.face import load_image
    from topos_sdk.errors import ToposError

    for path in split_files("eval")[:count]:
        image = load_image(path.read_bytes())
        try:
            result, face = engine.fit_portrait(image)
        except ToposError as exc:
            print(f"{path.stem}: skipped ({exc})", file=sys.stderr, flush=True)
            continue
        yield path.stem, image, result, face


def face_tile_bakes(image, result, topology, variants: dict[str, dict]) -> dict:
    """One 512² bake of the portrait per variant (name → extra ``bake_textures`` arguments): name → (albedo (S, S, 3)
    float32 sRGB, direct weight (S, S)) of the face tile."""
    from topos_server.texture.bake import bake_textures

    bakes = {}
    for key, arguments in variants.items():
        diagnostics: dict = {}
        maps = bake_textures(image, result.posed_points(), result.camera, topology, size=SIZE,
                             diagnostics=diagnostics, **arguments)
        bakes[key] = (maps["albedo"].tiles[1001].astype(np.float32), diagnostics["direct_weight"][1001])
    return bakes


def openings(count: int) -> dict:
    """Teeth on the lips and sclera on the lids, baked without and with the photo's landmarks (module notes)."""
    from topos_server.engines import shared_engine

    engine = shared_engine("classic")
    topology = engine.topology
    lips, eyes = (weight > 0.5 for weight in face_tile_regions(topology, ("lips", "eyes")))  # (S, S) each

    rows = []
    for portrait, image, result, face in fitted_held_out_portraits(engine, count):
        # the hair and clothing masks off in both: only the openings differ
        bakes = face_tile_bakes(image, result, topology,
                                {"without": {"landmarks": None, "hair": False, "clothing": False},
                                 "with": {"landmarks": face.points, "hair": False, "clothing": False}})
        row = {"name": portrait}
        for name, region in (("lips", lips), ("eyes", eyes)):
            seen = region & (bakes["without"][1] > 0.5)
            looks_in = seen & (bakes["with"][1] < 0.5)  # the texels the mask took out
            rest = seen & ~looks_in
            row[f"{name}_looking_in"] = float(looks_in.sum() / max(seen.sum(), 1))
            for key, (albedo, _) in bakes.items():
                reference = np.median(albedo[rest], axis=0) if rest.any() else np.zeros(3, np.float32)
                row[f"{name}_off_colour_{key}"] = (float(np.abs(albedo[looks_in] - reference).mean())
                                                   if looks_in.any() else 0.0)
        rows.append(row)
        print(f"{portrait}: " + "  ".join(
            f"{name}: {row[f'{name}_looking_in']:.2f} look in, off colour {row[f'{name}_off_colour_without']:.1f} -> "
            f"{row[f'{name}_off_colour_with']:.1f}" for name in ("lips", "eyes")), file=sys.stderr, flush=True)
    keys = [f"{region}_{what}" for region in ("lips", "eyes")
            for what in ("looking_in", "off_colour_without", "off_colour_with")]
    summary = {key: float(np.mean([r[key] for r in rows])) for key in keys}
    summary["portraits"] = len(rows)
    return {"summary": summary, "rows": rows}


MASKS = {  # --hair / --clothing: the bake_textures flag, the mask's function, the face region it is scored on
    "hair": ("hair_mask", "forehead"),
    "clothing": ("clothing_mask", "neck"),
}


def mask_effect(kind: str, count: int) -> dict:
    """The hair above the brows or the clothing around the neck, baked without and with its mask (module notes, 5)."""
    import importlib

    from topos_server.engines import shared_engine
    from topos_server.texture.skin_lighting import srgb8_to_linear

    module, region_name = MASKS[kind]
    make_mask = getattr(importlib.import_module(f"topos_server.texture.{module}"), module)
    engine = shared_engine("classic")
    topology = engine.topology
    region_weight, plain_weight = face_tile_regions(topology, (region_name, "lighting_fit"))  # (S, S) each
    region, cheeks = region_weight > 0.5, (plain_weight > 0.5) & (region_weight < 0.1)
    # only this mask differs between the two bakes
    others = {other: False for other in MASKS if other != kind}

    rows = []
    for name, image, result, face in fitted_held_out_portraits(engine, count):
        masked = make_mask([srgb8_to_linear(image[:, :, c]) for c in range(3)], face.points, result.camera.image_size)
        bakes = face_tile_bakes(image, result, topology,
                                {"without": {"landmarks": face.points, kind: False, **others},
                                 "with": {"landmarks": face.points, kind: True, **others}})
        row = {"name": name, "mask": masked is not None}
        seen = region & (bakes["without"][1] > 0.5)
        row[f"{region_name}_taken_out"] = float((seen & (bakes["with"][1] < 0.5)).sum() / max(seen.sum(), 1))
        for key, (albedo, _) in bakes.items():
            cheek_colour = np.median(albedo[cheeks], axis=0)  # (3,)
            row[f"{region_name}_off_colour_{key}"] = float(np.abs(albedo[region] - cheek_colour).mean())
            luma = albedo @ np.array([0.299, 0.587, 0.114], np.float32)  # (S, S)
            # a white collar is brighter than any of the cheeks' skin; a shadowed neck is not
            row[f"{region_name}_brighter_{key}"] = float((luma[region] > np.quantile(luma[cheeks], 0.98)).mean())
        if masked is None:
            assert np.array_equal(bakes["with"][0], bakes["without"][0]), name  # no mask: the same bake
        rows.append(row)
        print(f"{name}: mask {row['mask']}, {region_name} taken out {row[f'{region_name}_taken_out']:.2f}, off colour "
              f"{row[f'{region_name}_off_colour_without']:.1f} -> {row[f'{region_name}_off_colour_with']:.1f}",
              file=sys.stderr, flush=True)
    with_mask = [r for r in rows if r["mask"]]
    summary = {"portraits": len(rows), "with_a_mask": len(with_mask)}
    for what in ("taken_out", "off_colour_without", "off_colour_with", "brighter_without", "brighter_with"):
        key = f"{region_name}_{what}"
        summary[key + "_masked_mean"] = float(np.mean([r[key] for r in with_mask])) if with_mask else 0.0
    summary["closer_to_the_cheeks"] = int(sum(r[f"{region_name}_off_colour_with"] < r[f"{region_name}_off_colour_without"]
                                              for r in with_mask))
    return {"summary": summary, "rows": rows}


def contact_sheet(model_dir, names: list[str], path: Path) -> None:
    import cv2
    from topos_server.data.texture_bank import split_files
    from topos_server.engines import GenerateOptions, shared_engine
    from topos_sdk.preview import render_head

    if model_dir:
        os.environ["TOPOS_TEXTURE_MODEL"] = str(model_dir)
    engine = shared_engine("classic")
    files = {p.stem: p for p in split_files("eval")}
    cell = 256
    rows = []
    for name in names:
        if name not in files:
            raise SystemExit(f"{name} is not a held-out portrait")
        data = files[name].read_bytes()
        bake, learned = (engine.generate([data], GenerateOptions(texture_size=1024, texture=mode))[0]
                         for mode in ("bake", "learned"))
        photo = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        scale = cell / max(photo.shape[:2])
        photo = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
        pad = np.full((cell, cell, 3), 40, np.uint8)
        y, x = (cell - photo.shape[0]) // 2, (cell - photo.shape[1]) // 2
        pad[y:y + photo.shape[0], x:x + photo.shape[1]] = photo

        def tile(result) -> np.ndarray:
            return cv2.resize(result.textures["albedo"].tiles[1001], (cell, cell), interpolation=cv2.INTER_AREA)

        rows.append(np.concatenate([pad, tile(bake), tile(learned), render_head(learned, 20.0, cell)], axis=1))
    sheet = np.concatenate(rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"contact sheet: {path} ({len(names)} portraits: portrait | today's bake | learned albedo | "
          f"learned, relit preview)", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="TOPOS-Texture folder (default: the committed weights)")
    parser.add_argument("--portraits", type=int, default=96, help="held-out bakes to score (restoration)")
    parser.add_argument("--heads", type=int, default=10, help="synthetic heads × 5 lights (de-lighting); 0: skip")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4], help="sampler steps to score (restoration)")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--openings", type=int, default=0,
                        help="held-out portraits baked with/without their landmarks (teeth on the lips); 0: skip")
    parser.add_argument("--hair", type=int, default=0,
                        help="held-out portraits baked without/with the hair mask (a fringe on the forehead); 0: skip")
    parser.add_argument("--clothing", type=int, default=0,
                        help="held-out portraits baked without/with the clothing mask (a collar on the neck); 0: skip")
    parser.add_argument("--sheet", type=Path, help="write the contact sheet here (JPEG)")
    parser.add_argument("--sheet-names", nargs="*", default=[], help="held-out portrait stems for the sheet")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()

    from machine import machine_description
    from topos_server.assets.cache import AssetCache
    from topos_server.texture.learned import load_texture_model

    topology = AssetCache.default().ict_topology()
    model = load_texture_model(str(args.model) if args.model else None)
    report = {"machine": machine_description(), "load_average": os.getloadavg()}
    if args.portraits:
        report["restoration"] = restoration(model, topology, args.portraits, tuple(args.steps))
        print(json.dumps(report["restoration"]["summary"], indent=1), flush=True)
    if args.heads:
        report["delighting"] = delighting(model, args.heads)
        print(json.dumps(report["delighting"]["summary"], indent=1), flush=True)
    if args.timing:
        report["timing"] = timing(model, topology)
        print(json.dumps(report["timing"], indent=1), flush=True)
    if args.openings:
        report["openings"] = openings(args.openings)
        print(json.dumps(report["openings"]["summary"], indent=1), flush=True)
    for kind in MASKS:
        if getattr(args, kind):
            report[kind] = mask_effect(kind, getattr(args, kind))
            print(json.dumps(report[kind]["summary"], indent=1), flush=True)
    if args.sheet:
        contact_sheet(args.model, args.sheet_names, args.sheet)
    report["load_average_end"] = os.getloadavg()
    print(json.dumps({k: report[k] for k in ("machine", "load_average", "load_average_end")}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
