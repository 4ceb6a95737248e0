"""`topos convert` end to end on held-out synthetic heads: VAE only vs VAE + refinement vs NICP only.

    OMP_NUM_THREADS=1 python bench/convert_eval.py --heads 200 --out /tmp/convert_eval            # vae, refined
    OMP_NUM_THREADS=1 python bench/convert_eval.py --heads 50 --methods nicp --out /tmp/convert_eval
    python bench/convert_eval.py --real MESH [MESH ...] --out /tmp/convert_eval                   # real meshes
    python bench/convert_eval.py --report --out /tmp/convert_eval                                  # markdown

Heads are those of ``bench/vae_eval.py`` (seed ``EVAL_SEED``, never a training seed; re-topologised by
marching cubes, which training never sees; noise, holes, a random similarity pose with scale 0.1–10),
cached in ``OUT/inputs`` (the same cache layout as vae_eval). Two variants per head:

- ``whole``: the head as generated (neck cut, holes);
- ``face_only``: the same mesh cut to the face as a scanner's face mask would be (input triangles whose
  ground-truth nearest reference vertex lies in ICT's ``narrow_face`` group).

Each method runs the full `topos convert` geometry path (``HeadConverter.convert_surface``: boundary
check, pose search, VAE, refinement) and is timed end to end without the error report, in wall seconds
and in CPU seconds of its one thread (what the wall time is on an otherwise idle machine; the benchmark
machine is shared); the VAE-only row is the same conversion's head before its refinement (its time:
the total less the refinement's share). For face-only inputs convert's prior is the mean head (TOPOS-VAE never
saw partial inputs in training and decodes them worse: face vertex error 13.5 → 9.3 mm before refinement). Errors are
measured in the head's own centimetres (the known random pose undone), reported in mm:

- input→converted: exact closest-point distance from 20,000 input-surface samples to the converted
  skin — "does the converted head lie on the scan";
- vertex error: per reference skin vertex against the ground truth (whole skin, and face region);
  unseen regions of a face-only input are the prior's guess, so the face region is the fair number.
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
from vae_eval import EVAL_SEED, load_inputs  # noqa: E402

METHODS = ("vae", "refined", "nicp")
VARIANTS = ("whole", "face_only")
FACE_GROUP = "narrow_face"
ERROR_SAMPLES = 20000


def face_only_crop(sample, face_mask: np.ndarray, surface_vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """(points, triangles) of the input mesh cut to the faces whose ground-truth nearest skin vertex is in the mask."""
    from scipy.spatial import cKDTree

    from topos_server.geometry.canonical_pose import invert

    head_points = invert(sample.input_from_head).apply(sample.mesh_points.astype(np.float64))
    _, nearest = cKDTree(sample.target[:surface_vertex_count]).query(head_points)
    triangles = sample.mesh_triangles[face_mask[nearest][sample.mesh_triangles].all(1)]
    used = np.unique(triangles)
    remap = np.full(len(sample.mesh_points), -1, np.int64)
    remap[used] = np.arange(len(used))
    return sample.mesh_points[used].astype(np.float64), remap[triangles]


def run(args) -> None:
    import torch

    from topos_server.assets.cache import AssetCache
    from topos_server.assets.head_model import HeadModel
    from topos_server.data.synthetic_heads import HELD_OUT_METHOD, SyntheticHeadOptions, SyntheticHeads
    from topos_server.geometry.canonical_pose import invert
    from topos_server.geometry.registration import TriangleSurface
    from topos_server.geometry.surface_points import sample_surface
    from topos_server.pipelines.convert import INFERENCE_POINTS, HeadConverter, load_vae

    torch.set_num_threads(args.threads)
    topology = AssetCache.default().ict_topology()
    heads = SyntheticHeads(HeadModel.load(), topology, seed=EVAL_SEED, methods=(HELD_OUT_METHOD,),
                           options=SyntheticHeadOptions(num_points=INFERENCE_POINTS))
    count = heads.surface_vertex_count
    converter = HeadConverter(load_vae(args.weights), topology)
    converter.decode_canonical(heads.mean_head[:2048], np.tile([0.0, 0.0, 1.0], (2048, 1)))  # warm-up
    group = np.asarray(topology.vertex_groups[FACE_GROUP])
    face_mask = np.zeros(count, bool)
    face_mask[group[group < count]] = True
    methods = [m for m in args.methods.split(",") if m]
    nicp = None
    if "nicp" in methods:
        from topos_server.geometry.nicp import NicpBaseline

        nicp = NicpBaseline(heads.mean_head, count, heads.surface_triangles)
    records = {(m, v): [] for m in methods for v in VARIANTS}
    started = time.monotonic()
    for i, sample, _, _ in load_inputs(heads, args.heads, args.out / "inputs"):
        back = invert(sample.input_from_head)  # input frame → head frame (cm)
        for variant in VARIANTS:
            if variant == "whole":
                points, triangles = sample.mesh_points.astype(np.float64), sample.mesh_triangles
            else:
                points, triangles = face_only_crop(sample, face_mask, count)
            head_points = back.apply(points)
            rng = np.random.default_rng(i)
            input_samples, _, _ = sample_surface(head_points, triangles, ERROR_SAMPLES, rng)
            outputs = {}  # method → (input-frame points, wall seconds, CPU seconds)
            if "nicp" in methods:
                start, cpu = time.perf_counter(), time.process_time()
                result = nicp_conversion(converter, nicp, points, triangles, i)
                outputs["nicp"] = result, time.perf_counter() - start, time.process_time() - cpu
            if {"vae", "refined"} & set(methods):
                # one conversion gives both: the VAE's head before the refinement, and after it
                start, cpu = time.perf_counter(), time.process_time()
                conversion = converter.convert_surface(points, triangles, units="normalized", seed=i, report=False)
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
                refine_share = conversion.report["timings_s"]["refine_s"] / seconds
                outputs["refined"] = conversion.input_frame_points.astype(np.float64), seconds, cpu_seconds
                outputs["vae"] = (conversion.prior_input_frame_points.astype(np.float64), seconds * (1 - refine_share),
                                  cpu_seconds * (1 - refine_share))
            for method in methods:
                result_input_frame, seconds, cpu_seconds = outputs[method]
                result = back.apply(result_input_frame)
                to_converted = TriangleSurface(result[:count], heads.surface_triangles).closest(input_samples).distance
                vertex = heads.head_frame_error_cm(sample, result_input_frame)[:count]
                records[method, variant].append({
                    "head": i, "seconds": seconds, "cpu_seconds": cpu_seconds, "input_to_converted_mm": 10 * float(to_converted.mean()),
                    "input_to_converted_p95_mm": 10 * float(np.percentile(to_converted, 95)),
                    "vertex_mm": 10 * float(vertex.mean()), "vertex_face_mm": 10 * float(vertex[face_mask].mean()),
                    "input_distances_mm": (10 * to_converted[:: max(1, len(to_converted) // 2000)]).round(4).tolist()})
        if (i + 1) % 5 == 0:
            line = "  ".join(f"{m}/{v} {np.mean([r['input_to_converted_mm'] for r in records[m, v]]):.2f}mm "
                             f"{np.mean([r['seconds'] for r in records[m, v]]):.2f}s" for m, v in records)
            print(f"[{i + 1}/{args.heads}] {time.monotonic() - started:.0f} s  {line}", file=sys.stderr, flush=True)
    results = args.out / "results"
    results.mkdir(parents=True, exist_ok=True)
    for (method, variant), rows in records.items():
        (results / f"{method}-{variant}.json").write_text(json.dumps(
            {"method": method, "variant": variant, "machine": machine_description(), "torch_threads": args.threads,
             "heads": rows}))


def nicp_conversion(converter, nicp, points: np.ndarray, triangles: np.ndarray, seed: int) -> np.ndarray:
    """NICP of the mean head onto the input after the same pose search as convert (no VAE): (N, 3) input frame."""
    from topos_server.geometry.canonical_pose import invert
    from topos_server.geometry.mesh_input import open_boundary_ratio
    from topos_server.geometry.registration import TriangleSurface
    from topos_server.pipelines.convert import INFERENCE_POINTS, PARTIAL_BOUNDARY_RATIO, outward_samples

    samples, normals, _ = outward_samples(points, triangles, INFERENCE_POINTS, np.random.default_rng(seed))
    partial = open_boundary_ratio(points, triangles) > PARTIAL_BOUNDARY_RATIO
    canonical, _ = converter.canonicalize(samples, normals, partial, seed=seed)
    registered = nicp.register(TriangleSurface(canonical.apply(points), triangles))
    return invert(canonical).apply(registered)


def run_real(args) -> None:
    """Real meshes: convert each, report the input→converted distance (the file's units → mm via --units)."""
    from topos_server.geometry.mesh_input import largest_component, read_mesh
    from topos_server.pipelines.convert import HeadConverter

    converter = HeadConverter.load(args.weights)
    rows = []
    for path in args.real:
        mesh = largest_component(read_mesh(path))
        for refine in (False, True):
            start = time.perf_counter()
            conversion = converter.convert_surface(mesh.points, mesh.triangles, units=args.units, refine=refine)
            seconds = time.perf_counter() - start - conversion.report["report_s"]
            error = conversion.report["surface_error"]
            rows.append({"mesh": Path(path).name, "refined": refine, "seconds": seconds, "units": conversion.units,
                         "alignment": conversion.report["alignment"],
                         "input_to_converted_mm": error["input_to_converted"]["mean_mm"],
                         "input_to_converted_p95_mm": error["input_to_converted"]["p95_mm"],
                         "input_to_converted_p50_mm": 10 * error["input_to_converted"]["p50"] * conversion.cm_per_unit,
                         "within_1mm": error["input_to_converted"]["within_1mm"],
                         "constrained_skin_fraction": conversion.report["refinement"].get("constrained_skin_fraction"),
                         "regions": error["regions"]})
            print(json.dumps(rows[-1]["mesh"]), "refined" if refine else "vae", f"{rows[-1]['input_to_converted_mm']:.2f} mm",
                  f"p95 {rows[-1]['input_to_converted_p95_mm']:.2f}", f"{seconds:.2f} s", file=sys.stderr)
    results = args.out / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "real.json").write_text(json.dumps({"machine": machine_description(), "meshes": rows}, indent=1))


def report(args) -> None:
    results = args.out / "results"
    print("| input | method | heads | input→converted mean (mm) | p95 (mm) | within 1 mm | vertex error skin (mm) | "
          "vertex error face (mm) | CPU s / head (median) | wall s / head (median, shared machine) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    machine = None
    for variant in VARIANTS:
        for method in METHODS:
            file = results / f"{method}-{variant}.json"
            if not file.exists():
                continue
            data = json.loads(file.read_text())
            machine = data["machine"]
            rows = data["heads"]
            distances = np.concatenate([r["input_distances_mm"] for r in rows])
            prior = "TOPOS-VAE" if variant == "whole" else "mean head"  # convert's prior for partial inputs
            label = {"vae": f"{prior} only (`--no-refine`)", "refined": f"{prior} + refinement (default)",
                     "nicp": "NICP only (same pose search)"}[method]
            print(f"| {variant.replace('_', '-')} | {label} | {len(rows)} | {distances.mean():.2f} | "
                  f"{np.percentile(distances, 95):.2f} | {100 * (distances <= 1.0).mean():.0f} % | "
                  f"{np.mean([r['vertex_mm'] for r in rows]):.2f} | {np.mean([r['vertex_face_mm'] for r in rows]):.2f} | "
                  f"{np.median([r.get('cpu_seconds', np.nan) for r in rows]):.2f} | "
                  f"{np.median([r['seconds'] for r in rows]):.2f} |")
    if machine:
        print(f"\nMachine: {machine}")
    real = results / "real.json"
    if real.exists():
        data = json.loads(real.read_text())
        print("\n| real mesh | method | alignment | input→converted mean (mm) | median (mm) | p95 (mm) | within 1 mm | "
              "face / ears / neck / back constrained | s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in data["meshes"]:
            constrained = " / ".join(f"{100 * (v['constrained_fraction'] or 0):.0f} %" for v in r["regions"].values())
            print(f"| {r['mesh']} | {'refined' if r['refined'] else 'prior only'} | {r['alignment']} | "
                  f"{r['input_to_converted_mm']:.2f} | {r['input_to_converted_p50_mm']:.2f} | "
                  f"{r['input_to_converted_p95_mm']:.2f} | {100 * r['within_1mm']:.0f} % | "
                  f"{constrained if r['refined'] else '—'} | {r['seconds']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", type=int, default=200)
    parser.add_argument("--methods", default="vae,refined", help=f"comma-separated, from {','.join(METHODS)}")
    parser.add_argument("--out", type=Path, default=Path("/tmp/convert_eval"))
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--real", nargs="+", type=Path, help="real meshes to convert instead of the synthetic set")
    parser.add_argument("--units", default="auto", help="units of the --real meshes")
    parser.add_argument("--report", action="store_true", help="print the markdown table of the saved results")
    args = parser.parse_args()
    if args.report:
        report(args)
    elif args.real:
        run_real(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
