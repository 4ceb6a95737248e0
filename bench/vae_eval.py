"""TOPOS-VAE vs optimal-step NICP vs the mean head on held-out synthetic heads in an unseen topology.

    OMP_NUM_THREADS=1 python bench/vae_eval.py --heads 200 --methods mean,nicp --out /tmp/vae_eval  # baselines
    OMP_NUM_THREADS=1 python bench/vae_eval.py --heads 200 --methods vae --out /tmp/vae_eval
    python bench/vae_eval.py --report --out /tmp/vae_eval                              # markdown table
    OMP_NUM_THREADS=1 python bench/vae_eval.py --clean-neutral --heads 200 --out /tmp/vae_eval  # reconstruction floor

Heads: :class:`SyntheticHeads` with seed ``EVAL_SEED`` (never a training seed) re-topologised only by
``marching_cubes``, the method training never sees, each in a random similarity pose (rotation
uniform on SO(3), scale 0.1–10, translation ±50), with noise and missing patches as in training.
All methods share the same pose canonicalisation (timed apart); errors are measured after mapping
each result back through it and through the known random pose, in the head's own centimetres,
reported in mm over all reference vertices and over the outer skin. Generated inputs are cached
in ``OUT/inputs/`` so each method sees identical data and can run in its own process (the pose
canonicalisation is deterministic and re-run, and timed, by every process).

``--clean-neutral``: TOPOS-VAE's reconstruction floor, what TOPOS-DiT's output can be at best. Neutral heads
in ICT's own topology and frame (identity ~ N(0, 1), no expression, no noise, holes or pose; seed
``CLEAN_SEED``, never used in training) encoded and decoded through :class:`HeadLatents`; error per outer-skin
vertex in mm. Two sets: the head model's identity heads, and the same with the out-of-span deformations of
:class:`SyntheticHeads` (RBF warps, region scalings: what the DiT's targets look like). The mean head as the
answer is the baseline row.

Also (with ``vae``): topology invariance — the same head (no noise, no holes) as a marching-cubes
mesh and as an isotropic remesh, both converted; distance between the two results.
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

EVAL_SEED = 20_240_601
CLEAN_SEED = 20_261_130
METHODS = ("mean", "nicp", "vae")


def load_inputs(heads, count: int, cache: Path):
    """Yield (index, SyntheticHead, canonical Similarity, canonicalise seconds).

    Heads (the slow part: marching cubes) are cached in ``cache``; the pose canonicalisation runs
    every time (it is timed, and it must be the code under test).
    """
    from topos_server.data.synthetic_heads import SyntheticHead
    from topos_server.geometry.registration import Similarity

    cache.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        file = cache / f"head_{i:04d}.npz"
        if file.exists():
            z = np.load(file)
            sample = SyntheticHead(z["target"], z["mesh_points"], z["mesh_triangles"],
                                   Similarity(float(z["pose_scale"]), z["pose_rotation"], z["pose_translation"]),
                                   z["points"], z["normals"], str(z["method"]))
        else:
            sample = heads.sample(i)
            np.savez(file, target=sample.target, mesh_points=sample.mesh_points, mesh_triangles=sample.mesh_triangles,
                     pose_scale=sample.input_from_head.scale, pose_rotation=sample.input_from_head.rotation,
                     pose_translation=sample.input_from_head.translation, points=sample.points,
                     normals=sample.normals, method=sample.method)
        start = time.perf_counter()
        canonical = heads.canonicalize(sample)
        yield i, sample, canonical, time.perf_counter() - start


def summarize(errors_mm: list[np.ndarray], surface_count: int, seconds: list[float]) -> dict:
    all_err = np.concatenate([e for e in errors_mm])
    skin_err = np.concatenate([e[:surface_count] for e in errors_mm])
    per_head = np.array([e.mean() for e in errors_mm])
    return {"heads": len(errors_mm), "mean_mm": float(all_err.mean()), "p95_mm": float(np.percentile(all_err, 95)),
            "skin_mean_mm": float(skin_err.mean()), "skin_p95_mm": float(np.percentile(skin_err, 95)),
            "worst_head_mean_mm": float(per_head.max()), "seconds_per_head": float(np.mean(seconds)),
            "seconds_per_head_median": float(np.median(seconds))}


def run_methods(args) -> None:
    import torch
    from topos_server.assets.cache import AssetCache
    from topos_server.assets.head_model import HeadModel
    from topos_server.data.synthetic_heads import HELD_OUT_METHOD, SyntheticHeads
    from topos_server.geometry.canonical_pose import invert
    from topos_server.geometry.registration import TriangleSurface

    torch.set_num_threads(args.threads)
    topology = AssetCache.default().ict_topology()
    head_model = HeadModel.load()
    from topos_server.data.synthetic_heads import SyntheticHeadOptions
    from topos_server.pipelines.convert import INFERENCE_POINTS

    # as `topos convert` sees a mesh: INFERENCE_POINTS stratified samples, the pose found from them
    heads = SyntheticHeads(head_model, topology, seed=EVAL_SEED, methods=(HELD_OUT_METHOD,),
                           options=SyntheticHeadOptions(num_points=INFERENCE_POINTS))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    nicp = converter = None
    if "nicp" in methods:
        from topos_server.geometry.nicp import NicpBaseline

        nicp = NicpBaseline(heads.mean_head, heads.surface_vertex_count, heads.surface_triangles)
    if "vae" in methods:
        from topos_server.pipelines.convert import HeadConverter, load_vae

        converter = HeadConverter(load_vae(args.weights), topology)
        converter.decode_canonical(heads.mean_head[:2048], np.tile([0.0, 0.0, 1.0], (2048, 1)))  # warm-up: query cache
    errors = {m: [] for m in methods}
    seconds = {m: [] for m in methods}
    canon_seconds = []
    started = time.monotonic()
    for i, sample, canonical, canon_s in load_inputs(heads, args.heads, args.out / "inputs"):
        canon_seconds.append(canon_s)
        back = invert(canonical)
        for method in methods:
            start = time.perf_counter()
            if method == "mean":
                canonical_result = heads.mean_head
            elif method == "nicp":
                target = TriangleSurface(canonical.apply(sample.mesh_points.astype(np.float64)), sample.mesh_triangles)
                canonical_result = nicp.register(target)
            else:
                canonical_result = converter.decode_canonical(canonical.apply(sample.points.astype(np.float64)),
                                                              sample.normals @ canonical.rotation.T)
            seconds[method].append(time.perf_counter() - start)
            errors[method].append(10.0 * heads.head_frame_error_cm(sample, back.apply(canonical_result)))
        if (i + 1) % 10 == 0:
            line = " ".join(f"{m} {np.mean([e.mean() for e in errors[m]]):.2f}mm/{np.mean(seconds[m]):.2f}s" for m in methods)
            print(f"[{i + 1}/{args.heads}] {time.monotonic() - started:.0f} s  {line}", file=sys.stderr, flush=True)
    results_dir = args.out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    for method in methods:
        record = summarize(errors[method], heads.surface_vertex_count, seconds[method])
        record["canonicalize_seconds_per_head"] = float(np.mean(canon_seconds))
        record["machine"] = machine_description()
        record["torch_threads"] = args.threads
        if method == "vae":
            record["weights"] = str(args.weights)
            if args.invariance_heads > 0:
                record["invariance"] = topology_invariance(heads, converter, args.invariance_heads)
        label = f"{method}-{args.label}" if method == "vae" and args.label else method
        record["label"] = label
        (results_dir / f"{label}.json").write_text(json.dumps(record, indent=2))
        print(method, json.dumps(record), file=sys.stderr)


def topology_invariance(heads, converter, count: int) -> dict:
    """The same clean head as a marching-cubes mesh and as an isotropic remesh: converted results' distance (mm)."""
    from dataclasses import replace

    from topos_server.data.synthetic_heads import SyntheticHeads

    clean = SyntheticHeads(heads.head_model, heads.topology, seed=EVAL_SEED + 1,
                           options=replace(heads.options, noise_cm=(0.0, 0.0), max_holes=0))
    distances = []
    for i in range(count):
        rng = np.random.default_rng([EVAL_SEED, 99, i])
        head = clean.head(rng)
        results = []
        for method in ("marching_cubes", "isotropic"):
            mesh_points, mesh_triangles = clean.retopologized_surface(head, method, rng)
            conversion = converter.convert_surface(mesh_points, mesh_triangles, units="cm", seed=i, report=False)
            results.append(conversion.input_frame_points.astype(np.float64))
        distances.append(10.0 * np.linalg.norm(results[0] - results[1], axis=1))
    d = np.concatenate(distances)
    per_head = np.array([x.mean() for x in distances])
    return {"heads": count, "mean_mm": float(d.mean()), "p95_mm": float(np.percentile(d, 95)),
            "max_mm": float(d.max()), "worst_head_mean_mm": float(per_head.max()),
            "heads_within_1mm_mean": int((per_head <= 1.0).sum())}


def clean_neutral_heads(head_model, topology, count: int, deformed: bool) -> np.ndarray:
    """(count, N, 3) cm neutral heads of seed CLEAN_SEED: identity ~ N(0, 1), out-of-span deformations when ``deformed``."""
    import torch
    from topos_server.data.synthetic_heads import SyntheticHeadOptions, SyntheticHeads

    if deformed:
        heads = SyntheticHeads(head_model, topology, seed=CLEAN_SEED, options=SyntheticHeadOptions(expression_probability=0.0))
        return np.stack([heads.head(np.random.default_rng([CLEAN_SEED, i])) for i in range(count)]).astype(np.float32)
    identity = torch.randn(count, head_model.num_identity, generator=torch.Generator().manual_seed(CLEAN_SEED))
    with torch.no_grad():
        return head_model.vertices(identity, torch.zeros(count, len(head_model.arkit_expression_names))).numpy()


def run_clean_neutral(args) -> None:
    import torch
    from topos_server.assets.head_model import HeadModel
    from topos_server.pipelines.head_latents import HeadLatents

    torch.set_num_threads(args.threads)
    latents = HeadLatents.load(args.weights)
    head_model = HeadModel.load()
    mean_head = head_model.neutral.numpy()
    skin = latents.skin_vertex_count
    out = args.out / "floor"
    out.mkdir(parents=True, exist_ok=True)
    for deformed in (False, True):
        heads = clean_neutral_heads(head_model, latents.topology, args.heads, deformed)
        started = time.perf_counter()
        decoded = np.concatenate([latents.decode(latents.encode(heads[i:i + 25], seed=i)).numpy()
                                  for i in range(0, len(heads), 25)])
        seconds = (time.perf_counter() - started) / len(heads)
        for method, result in (("mean", np.broadcast_to(mean_head, heads.shape)), ("vae", decoded)):
            error = 10.0 * np.linalg.norm(result - heads, axis=-1)  # (H, N) mm
            record = {"heads": len(heads), "deformed": deformed, "skin_mean_mm": float(error[:, :skin].mean()),
                      "skin_p95_mm": float(np.percentile(error[:, :skin], 95)), "mean_mm": float(error.mean()),
                      "worst_head_skin_mean_mm": float(error[:, :skin].mean(1).max()),
                      "seconds_per_head": seconds if method == "vae" else 0.0, "machine": machine_description(),
                      "torch_threads": args.threads, "weights": str(args.weights or "bundled")}
            label = f"{'deformed' if deformed else 'identity'}-{method}" + (f"-{args.label}" if method == "vae" and args.label else "")
            (out / f"{label}.json").write_text(json.dumps(record, indent=2))
            print(label, json.dumps(record), file=sys.stderr)


def report_clean_neutral(args) -> None:
    files = sorted((args.out / "floor").glob("*.json"))
    if not files:
        return
    print("\n| heads (neutral, ICT topology, clean) | encoded → decoded by | heads | skin mean (mm) | skin p95 (mm) "
          "| worst head skin mean (mm) | all vertices mean (mm) |")
    print("|---|---|---|---|---|---|---|")
    for f in files:
        r = json.loads(f.read_text())
        _, method, label = (f.stem.split("-", 2) + [""])[:3]
        name = "mean head (no encoding)" if method == "mean" else f"TOPOS-VAE{f' ({label})' if label else ''}"
        kind = "identity + out-of-span deformations" if r["deformed"] else "identity ~ N(0, 1)"
        print(f"| {kind} | {name} | {r['heads']} | {r['skin_mean_mm']:.2f} | {r['skin_p95_mm']:.2f} | "
              f"{r['worst_head_skin_mean_mm']:.2f} | {r['mean_mm']:.2f} |")


def report(args) -> None:
    report_clean_neutral(args)
    files = sorted((args.out / "results").glob("*.json"), key=lambda f: (METHODS.index(f.stem.split("-")[0]), f.stem))
    if not files:
        return
    results = {f.stem: json.loads(f.read_text()) for f in files}
    print("| method | heads | mean error (mm) | p95 (mm) | skin mean (mm) | skin p95 (mm) | time per head (s) "
          "| with pose canonicalisation (s) |")
    print("|---|---|---|---|---|---|---|---|")
    names = {"mean": "mean head", "nicp": "optimal-step NICP", "vae": "TOPOS-VAE"}
    for m, r in results.items():
        method, _, label = m.partition("-")
        print(f"| {names[method]}{f' ({label})' if label else ''} | {r['heads']} | {r['mean_mm']:.2f} | {r['p95_mm']:.2f} | {r['skin_mean_mm']:.2f} | "
              f"{r['skin_p95_mm']:.2f} | {r['seconds_per_head']:.3f} | "
              f"{r['seconds_per_head'] + r['canonicalize_seconds_per_head']:.2f} |")
    any_r = next(iter(results.values()), None)
    if any_r:
        print(f"\nShared pose canonicalisation: {any_r['canonicalize_seconds_per_head']:.2f} s per head "
              f"(not in the times above). Machine: {any_r['machine']}.")
    nicp = results.get("nicp")
    for m, r in results.items():
        if nicp and m.startswith("vae"):
            method_ratio = nicp["seconds_per_head"] / r["seconds_per_head"]
            whole_ratio = ((nicp["seconds_per_head"] + nicp["canonicalize_seconds_per_head"])
                           / (r["seconds_per_head"] + r["canonicalize_seconds_per_head"]))
            print(f"\nSpeed, {m}: {method_ratio:.0f}× NICP for the registration itself, {whole_ratio:.0f}× "
                  f"with the shared pose canonicalisation.")
    for m, r in results.items():
        if "invariance" not in r:
            continue
        inv = r["invariance"]
        print(f"\nTopology invariance, {m} ({inv['heads']} heads, marching cubes vs isotropic remesh): mean "
              f"{inv['mean_mm']:.2f} mm, p95 {inv['p95_mm']:.2f} mm, max {inv['max_mm']:.2f} mm; "
              f"{inv['heads_within_1mm_mean']}/{inv['heads']} heads within 1 mm on average.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", type=int, default=200)
    parser.add_argument("--methods", default="mean,nicp,vae")
    parser.add_argument("--weights", type=Path, help="TOPOS-VAE model folder (default: the bundled one)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/topos_vae_eval"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--invariance-heads", type=int, default=20)
    parser.add_argument("--label", help="suffix of the vae result file (to compare several checkpoints)")
    parser.add_argument("--report", action="store_true", help="only print the table from OUT/results")
    parser.add_argument("--clean-neutral", action="store_true",
                        help="the reconstruction floor: clean neutral ICT heads encoded and decoded (--heads of them)")
    args = parser.parse_args()
    if args.report:
        report(args)
    elif args.clean_neutral:
        run_clean_neutral(args)
    else:
        run_methods(args)


if __name__ == "__main__":
    main()
