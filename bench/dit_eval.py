"""TOPOS-DiT vs the classic fit vs the mean head: neutral-skin error on held-out synthetic portraits,
seed diversity, real held-out portraits, and timings.

    OMP_NUM_THREADS=1 python bench/dit_eval.py tune --pairs /tmp/topos_pairs/eval --count 64 --out /tmp/dit_eval --write
    OMP_NUM_THREADS=1 python bench/dit_eval.py synthetic --pairs /tmp/topos_pairs/eval --skip 64 --sampling-defaults \
        --out /tmp/dit_eval
    OMP_NUM_THREADS=1 python bench/dit_eval.py real --portraits ../shared/portraits/us-congress-pd --out /tmp/dit_eval \
        --sheet docs/dit_contact_sheet.png
    OMP_NUM_THREADS=1 python bench/dit_eval.py timing --out /tmp/dit_eval
    python bench/dit_eval.py report --out /tmp/dit_eval        # markdown for BENCHMARKS.md

synthetic: pairs written by ``python -m topos_server.data.synthetic_portraits --split eval`` — identities
from a random stream training never draws from, albedo only from held-out portraits, poses to ±70°
yaw; the real face front-end ran on every render. Per pair, the neutral head of: topos (seed 0, and
the best of 8 seeds — an oracle pick, what a user choosing among variants could reach), classic (the
fit the generator stored, run on the same render and landmarks), the mean head, and the VAE's floor
(the true head encoded as the training targets were, then decoded). Error: mean per-vertex distance in mm over the outer skin
(11,248 vertices) and over the front of the face (ICT ``narrow_face``, 6,706), after the best rigid
alignment (rotation + translation; a wrong size counts). Seed diversity: per-vertex standard
deviation across the 8 seeds, front of the face vs the rest of the skin (ears, temples, back of the
head, neck).

real: held-out portraits (``data/portrait_split.py``): success rate, landmark reprojection RMS of the
fitted result (px and % of the eye distance), for topos and classic; a contact sheet of 8.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402

YAW_BINS = ((0, 30), (30, 50), (50, 70))
SEEDS = 8
FRONT_GROUP = "narrow_face"


def rigid_errors_mm(estimate: np.ndarray, truth: np.ndarray, front: np.ndarray) -> tuple[float, float, float]:
    """(skin, front of the face, skin shape) mean per-vertex distance in mm after the best rotation +
    translation of ``estimate`` onto ``truth`` (both (S, 3) cm, skin vertices); the last also after the
    best scale (the shape alone: one photo hardly tells a head's size from its distance)."""
    from scipy.spatial.transform import Rotation

    a, b = estimate - estimate.mean(axis=0), truth - truth.mean(axis=0)
    rotation, _ = Rotation.align_vectors(b, a)
    a = rotation.apply(a)
    distance = 10.0 * np.linalg.norm(a - b, axis=1)
    scaled = 10.0 * np.linalg.norm(a * ((a * b).sum() / (a * a).sum()) - b, axis=1)
    return float(distance.mean()), float(distance[front].mean()), float(scaled.mean())


def synthetic(args) -> dict:
    import torch

    from topos_server.assets.head_model import HeadModel
    from topos_server.engines.topos import load_dit, sampling_defaults
    from topos_server.pipelines.head_generation import SamplingOptions, sample_latents, stored_condition
    from topos_server.pipelines.head_latents import HeadLatents
    from topos_server.training.dit import shard_files

    latents = HeadLatents.load()
    dit = load_dit(args.weights)
    sampling = SamplingOptions(steps=args.steps, guidance=args.guidance, temperature=args.temperature)
    if args.sampling_defaults:
        sampling = sampling_defaults(args.weights)
    model = HeadModel.load()
    mean_head = model.neutral.numpy()
    identity_basis = model.identity_basis.numpy()
    skin = latents.skin_vertex_count
    front = np.zeros(skin, bool)
    front[latents.topology.vertex_groups[FRONT_GROUP]] = True
    front = np.flatnonzero(front)
    rest = np.setdiff1d(np.arange(skin), front)

    rows = []
    to_skip = args.skip
    for shard in shard_files(args.pairs):
        with np.load(shard) as data:
            arrays = {k: data[k] for k in ("crop", "landmarks", "neutral", "classic_identity", "yaw_deg")}
        skipped = min(to_skip, len(arrays["crop"]))
        arrays = {k: v[skipped:] for k, v in arrays.items()}
        to_skip -= skipped
        for start in range(0, len(arrays["crop"]), args.batch):
            if len(rows) >= args.count:
                break
            ids = list(range(start, min(len(arrays["crop"]), start + args.batch, start + args.count - len(rows))))
            conditions = [stored_condition(arrays["crop"][i], arrays["landmarks"][i]) for i in ids]
            landmarks = torch.from_numpy(np.stack([c[0] for c in conditions]))
            crops = torch.from_numpy(np.stack([c[1] for c in conditions]))
            truth = arrays["neutral"][ids].astype(np.float64)
            t = time.perf_counter()
            identity = torch.from_numpy(arrays["classic_identity"][ids]) if dit.config.identity_condition else None
            sampled = [latents.decode(sample_latents(dit, landmarks, crops, [seed] * len(ids), sampling, identity)).numpy()
                       for seed in range(SEEDS)]  # SEEDS × (B, N, 3)
            seconds = (time.perf_counter() - t) / (SEEDS * len(ids))
            floor = latents.decode(latents.encode_with_vertices(truth.astype(np.float32))).numpy()
            for j, i in enumerate(ids):
                classic = mean_head + np.tensordot(arrays["classic_identity"][i], identity_basis, axes=1)
                t_skin = truth[j, :skin]
                seeds = [rigid_errors_mm(s[j, :skin], t_skin, front) for s in sampled]
                spread = 10.0 * np.stack([s[j, :skin] for s in sampled]).std(axis=0).mean(axis=-1)  # (S,) mm
                best = min(range(SEEDS), key=lambda k: seeds[k][0])
                rows.append({"yaw": float(abs(arrays["yaw_deg"][i])), "topos": seeds[0], "topos_best8": seeds[best],
                             "classic": rigid_errors_mm(classic[:skin], t_skin, front),
                             "mean": rigid_errors_mm(mean_head[:skin], t_skin, front),
                             "vae_floor": rigid_errors_mm(floor[j, :skin], t_skin, front),
                             "spread_front_mm": float(spread[front].mean()), "spread_rest_mm": float(spread[rest].mean()),
                             "dit_seconds_per_sample": seconds})
            print(f"{len(rows)} pairs: topos {np.mean([r['topos'][0] for r in rows]):.2f} mm, "
                  f"classic {np.mean([r['classic'][0] for r in rows]):.2f} mm", file=sys.stderr, flush=True)
        if len(rows) >= args.count:
            break
    return {"rows": rows, "weights": str(args.weights or "bundled"), "sampling": vars(sampling),
            "dit": dit.config.size_name, "pairs": f"{args.pairs}, from pair {args.skip}"}


def tune(args) -> dict:
    """Mean neutral-skin error (rigid, 1 seed) over the first ``--count`` pairs for a grid of guidance scales and
    temperatures; the best setting is written as ``sampling.json`` beside the weights (``--write``)."""
    import itertools

    import torch

    from topos_server.engines.topos import SAMPLING_FILE, dit_weights_path, load_dit
    from topos_server.pipelines.head_generation import SamplingOptions, sample_latents, stored_condition
    from topos_server.pipelines.head_latents import HeadLatents
    from topos_server.training.dit import shard_files

    latents = HeadLatents.load()
    dit = load_dit(args.weights)
    skin = latents.skin_vertex_count
    front = np.flatnonzero(np.isin(np.arange(skin), latents.topology.vertex_groups[FRONT_GROUP]))
    with np.load(shard_files(args.pairs)[0]) as data:
        arrays = {k: data[k][: args.count] for k in ("crop", "landmarks", "neutral")}
    conditions = [stored_condition(c, lm) for c, lm in zip(arrays["crop"], arrays["landmarks"])]
    landmarks = torch.from_numpy(np.stack([c[0] for c in conditions]))
    crops = torch.from_numpy(np.stack([c[1] for c in conditions]))
    truth = arrays["neutral"][:, :skin].astype(np.float64)
    grid = []
    for guidance, temperature in itertools.product((1.0, 1.5, 2.5), (1.0, 0.6, 0.3)):
        options = SamplingOptions(steps=args.steps, guidance=guidance, temperature=temperature)
        heads = latents.decode(sample_latents(dit, landmarks, crops, [0] * len(crops), options)).numpy()
        error = float(np.mean([rigid_errors_mm(h[:skin], t, front)[0] for h, t in zip(heads, truth)]))
        grid.append({"guidance": guidance, "temperature": temperature, "skin_error_mm": error})
        print(f"guidance {guidance} temperature {temperature}: {error:.2f} mm", file=sys.stderr, flush=True)
    best = min(grid, key=lambda g: g["skin_error_mm"])
    if args.write:
        chosen = {"steps": args.steps, "guidance": best["guidance"], "shift": 1.0, "temperature": best["temperature"]}
        (dit_weights_path(args.weights) / SAMPLING_FILE).write_text(json.dumps(chosen, indent=1) + "\n")
    return {"grid": grid, "best": best, "pairs": f"{args.pairs}: first {len(truth)}"}


def real(args) -> dict:
    import cv2

    from topos_server.data.portrait_split import split_portraits
    from topos_server.engines.topos import ToposEngine
    from topos_server.face import load_image
    from topos_sdk.preview import render_head

    engine = ToposEngine(weights=args.weights)
    _, held_out = split_portraits(args.portraits)
    held_out = held_out[: args.count]
    rows, sheet = [], []
    for path in held_out:
        image = load_image(path.read_bytes())
        row = {"portrait": path.name}
        try:
            t = time.perf_counter()
            classic, face = engine.classic.fit_portrait(image)
            row["classic_s"] = time.perf_counter() - t
            eyes = face.points[[33, 133, 362, 263], :2]
            eye_distance = float(np.linalg.norm(eyes[:2].mean(0) - eyes[2:].mean(0)))
            t = time.perf_counter()
            heads = engine.fit_portrait(image, seeds=range(4))
            row["topos_s"] = time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001 — a benchmark counts failures of any kind
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        row.update(eye_distance_px=eye_distance, classic_rms_px=classic.provenance.extra["fit_rms_px"],
                   topos_rms_px=[h.provenance.extra["fit_rms_px"] for h in heads])
        rows.append(row)
        if len(sheet) < args.sheet_rows:
            tile = args.tile
            photo = cv2.resize(image, (tile * image.shape[1] // image.shape[0], tile), interpolation=cv2.INTER_AREA)
            photo = cv2.copyMakeBorder(photo, 0, 0, 0, max(0, tile - photo.shape[1]), cv2.BORDER_CONSTANT, value=0)[:, :tile]
            renders = [render_head(h, yaw_deg=25.0, size=tile) for h in (*heads, classic)]
            sheet.append(np.concatenate([photo, *renders], axis=1))
        print(f"{len(rows)}/{len(held_out)} {path.name}", file=sys.stderr, flush=True)
    if args.sheet and sheet:
        from topos_sdk.atomic_files import atomic_output_path

        image = np.concatenate(sheet, axis=0)
        labels = ["portrait", "topos seed 0", "seed 1", "seed 2", "seed 3", "classic"]
        header = np.full((28, image.shape[1], 3), 255, np.uint8)
        for k, label in enumerate(labels):
            cv2.putText(header, label, (k * args.tile + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate([header, image]), cv2.COLOR_RGB2BGR))
        with atomic_output_path(Path(args.sheet)) as tmp:
            tmp.write_bytes(png.tobytes())
    return {"rows": rows, "portraits": len(held_out)}


def timing(args) -> dict:
    import skimage.data
    import torch

    from topos_server.engines.base import GenerateOptions
    from topos_server.engines.classic import ClassicEngine
    from topos_server.engines.topos import ToposEngine

    image = skimage.data.astronaut()
    topos = ToposEngine(weights=args.weights)
    classic = ClassicEngine()
    out = {"threads": torch.get_num_threads()}
    for batch in (1, 16):
        topos.fit_portrait(image, seeds=range(batch))  # warm
        runs = [topos.fit_portrait(image, seeds=range(batch))[0].provenance.timings_s for _ in range(3)]
        out[f"dit_batch{batch}_s"] = float(np.median([r["dit"] for r in runs])) * batch  # the call, not per head
        out[f"vae_decode_batch{batch}_s"] = float(np.median([r["vae_decode"] for r in runs])) * batch
    for name, engine in (("classic", classic), ("topos", topos)):
        engine.generate([image], GenerateOptions(texture_size=1024))  # warm
        times, parts = [], []
        for _ in range(3):
            t = time.perf_counter()
            result = engine.generate([image], GenerateOptions(texture_size=1024))[0]
            times.append(time.perf_counter() - t)
            parts.append(result.provenance.timings_s)
        out[f"{name}_generate_1024_s"] = float(np.median(times))
        out[f"{name}_stages_s"] = parts[int(np.argsort(times)[1])]
    return out


def report(out: Path) -> str:
    lines = [f"Machine: {machine_description()}", ""]
    file = out / "synthetic.json"
    if file.exists():
        data = json.loads(file.read_text())
        rows = data["rows"]
        lines += [f"Held-out synthetic portraits: {len(rows)} ({data['pairs']}), DiT `{data['dit']}`, "
                  f"{data['sampling']['steps']} Euler steps, guidance {data['sampling']['guidance']}, "
                  f"temperature {data['sampling'].get('temperature', 1.0)}. "
                  "Neutral-skin error after rigid alignment, mm — mean / p95 (in brackets: the front of the face's "
                  "mean, and the skin's mean after a similarity alignment, i.e. the shape without its size):", "",
                  "| method | all | " + " | ".join(f"yaw {a}–{b}°" for a, b in YAW_BINS) + " |",
                  "|---|---|" + "---|" * len(YAW_BINS)]
        for key, label in (("topos", "topos, 1 sample (seed 0)"), ("topos_best8", "topos, best of 8 seeds (oracle)"),
                           ("classic", "classic fit"), ("mean", "mean head"), ("vae_floor", "TOPOS-VAE floor (truth encoded)")):
            def cell(subset):
                if not subset:
                    return "–"
                skin = np.array([r[key][0] for r in subset])
                face = np.array([r[key][1] for r in subset])
                shape = np.array([r[key][2] for r in subset])
                return (f"{skin.mean():.2f} / {np.percentile(skin, 95):.2f} ({face.mean():.2f}; shape "
                        f"{shape.mean():.2f}) n={len(subset)}")
            bins = [[r for r in rows if a <= r["yaw"] < b or (b == YAW_BINS[-1][1] and r["yaw"] >= b)] for a, b in YAW_BINS]
            lines.append(f"| {label} | {cell(rows)} | " + " | ".join(cell(b) for b in bins) + " |")
        lines += ["", f"Seed diversity (per-vertex std across 8 seeds, mean): front of the face "
                      f"{np.mean([r['spread_front_mm'] for r in rows]):.2f} mm, rest of the skin (ears, temples, back of "
                      f"the head, neck) {np.mean([r['spread_rest_mm'] for r in rows]):.2f} mm. DiT sampling "
                      f"{1000 * np.mean([r['dit_seconds_per_sample'] for r in rows]):.0f} ms per head in batches.", ""]
    file = out / "tune.json"
    if file.exists():
        data = json.loads(file.read_text())
        lines += [f"Sampler settings chosen on {data['pairs']} (1 seed, mean rigid skin error): "
                  + ", ".join(f"guidance {g['guidance']} / temperature {g['temperature']}: {g['skin_error_mm']:.2f} mm"
                              for g in data["grid"]) + f"; chosen guidance {data['best']['guidance']}, temperature "
                  f"{data['best']['temperature']} (the synthetic rows skip these pairs).", ""]
    file = out / "real.json"
    if file.exists():
        data = json.loads(file.read_text())
        ok = [r for r in data["rows"] if "error" not in r]
        if ok:
            classic = np.array([r["classic_rms_px"] / r["eye_distance_px"] for r in ok]) * 100
            topos = np.array([np.mean(r["topos_rms_px"]) / r["eye_distance_px"] for r in ok]) * 100
            lines += [f"Real held-out portraits: {len(ok)} of {data['portraits']} succeeded "
                      f"({len(data['rows']) - len(ok)} failed). Landmark reprojection RMS of the fitted result, % of "
                      f"the eye distance, mean / p95: topos (seeds 0–3) {topos.mean():.2f} / "
                      f"{np.percentile(topos, 95):.2f}, classic {classic.mean():.2f} / {np.percentile(classic, 95):.2f}.", ""]
    file = out / "timing.json"
    if file.exists():
        t = json.loads(file.read_text())
        lines += [f"Timing (CPU, {t['threads']} torch threads, astronaut 512², texture 1024, warm): DiT sampling "
                  f"batch 1 {t['dit_batch1_s']:.3f} s, batch 16 {t['dit_batch16_s']:.3f} s "
                  f"({16 / t['dit_batch16_s']:.1f} heads/s); end to end: classic {t['classic_generate_1024_s']:.2f} s, "
                  f"topos {t['topos_generate_1024_s']:.2f} s. Stages (topos): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in t["topos_stages_s"].items()) + "; (classic): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in t["classic_stages_s"].items()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("synthetic", "tune", "real", "timing", "report"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/dit_eval"))
    parser.add_argument("--weights", type=Path, help="TOPOS-DiT folder (default: the bundled one)")
    parser.add_argument("--pairs", type=Path, default=Path("/tmp/topos_pairs/eval"))
    parser.add_argument("--portraits", type=Path, default=Path(__file__).resolve().parents[2] / "shared/portraits/us-congress-pd")
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N pairs (the ones the sampler settings were chosen on)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--write", action="store_true", help="tune: write the best setting as sampling.json")
    parser.add_argument("--sampling-defaults", action="store_true",
                        help="sample as the engine does (sampling.json beside the weights) instead of the options")
    parser.add_argument("--sheet", type=Path)
    parser.add_argument("--sheet-rows", type=int, default=8)
    parser.add_argument("--tile", type=int, default=160)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "report":
        print(report(args.out))
        return
    result = {"synthetic": synthetic, "tune": tune, "real": real, "timing": timing}[args.what](args)
    result["machine"] = machine_description()
    (args.out / f"{args.what}.json").write_text(json.dumps(result, indent=1))
    print(report(args.out))


if __name__ == "__main__":
    main()
