"""Texture bake timing and memory: `python bench/texture_bake.py [--sizes 1024 2048] [--runs 5]`.

`--cli [--baseline CHECKOUT]`: the whole `topos generate` command instead (one new process per run,
warm caches, best of ``--runs`` by wall time, alternating with the baseline checkout when given, e.g. a
`git worktree` of an older commit): wall, CPU (user + sys) and peak RSS of the process, and the load
average before each run (the runs of bench/generate_e2e.py --cli; that script reports medians).

The ICT head from the asset cache, placed over the face of `skimage.data.astronaut()` (512²) as in
tests/test_texture_bake.py. Each size runs in a fresh subprocess (peak RSS is per process):
- cold: empty memory caches and no disk cache (UV raster, regions, Laplacian all built),
- cold, disk cache: empty memory caches, UV layout and facial regions read from $TOPOS_HOME/bake,
- warm: best of N in the same process (what a server or a batch sees after its first image).
Wall and CPU seconds (CPU counts OpenCV's worker threads too) and per-stage wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def run_one(size: int, runs: int, disk_cache: str) -> dict:
    import resource

    import numpy as np
    from skimage.data import astronaut
    from topos_server.assets.cache import AssetCache
    from topos_server.texture import bake as texture_bake
    from topos_server.texture.bake import bake_textures

    from topos_sdk import Camera

    topology = AssetCache.default().ict_topology()
    image = astronaut()
    focal, distance = 1000.0, 1000.0 * 14.7 / 120
    m = np.eye(4)
    m[:3, 3] = [(240 - 256) * distance / focal, (256 - 145) * distance / focal, -distance]
    camera = Camera(focal, (256, 256), (512, 512), m)
    os.environ["TOPOS_HOME"] = disk_cache  # only the bake cache lives here; the topology is loaded already

    def timed():
        stages: dict[str, float] = {}
        wall, cpu = time.perf_counter(), time.process_time()
        maps = bake_textures(image, topology.rest_points, camera, topology, size, timings=stages)
        return time.perf_counter() - wall, time.process_time() - cpu, stages, maps

    def forget_memory_caches():  # what a new process starts with
        from topos_server.texture import face_regions
        from topos_server.texture import fill as texture_fill

        texture_bake._LAYOUTS.clear()
        texture_bake._MIRRORS.clear()
        face_regions._CACHE.clear()
        texture_fill._LAPLACIANS.clear()

    forget_memory_caches()
    cold = timed()
    forget_memory_caches()
    cold_disk = timed()
    warm = min((timed() for _ in range(runs)), key=lambda r: r[0])
    return {
        "size": size,
        "cold": cold[:3], "cold_disk_cache": cold_disk[:3], "warm_best": warm[:3],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": os.getloadavg(),
    }


def best_cli_runs(sizes: list[int], runs: int, baseline: str | None) -> None:
    """`topos generate` per size: the best of ``runs`` by wall time per build, as a Markdown table."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generate_e2e import PORTRAIT, run_cli
    from machine import machine_description

    builds = ([("baseline " + baseline, Path(baseline).resolve())] if baseline else []) + [("this checkout", None)]
    print(f"Machine: {machine_description()}")
    print(f"`topos generate {PORTRAIT.name} --texture-size S`, new process per run, warm caches, best of {runs} "
          "by wall time (builds alternating); load = 1-min load average before each run")
    print("\n| texture | build | wall s | CPU s | peak RSS MiB | load |\n|---|---|---|---|---|---|")
    for size in sizes:
        for _, checkout in builds:  # warm the asset, UV-layout and OS file caches
            run_cli(size, checkout)
        results = {name: [] for name, _ in builds}
        for _ in range(runs):
            for name, checkout in builds:
                results[name].append(run_cli(size, checkout))
        for name, _ in builds:
            best = min(results[name], key=lambda r: r["wall"])
            loads = [r["load"] for r in results[name]]
            print(f"| {size}² ×2 tiles | {name} | {best['wall']:.2f} | {best['cpu']:.2f} | {best['rss']:.0f} | "
                  f"{min(loads):.1f}–{max(loads):.1f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cli", action="store_true", help="time the whole `topos generate` command")
    parser.add_argument("--baseline", help="with --cli: another checkout to alternate with (e.g. a git worktree)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli:
        best_cli_runs(args.sizes, args.runs, args.baseline)
        return 0
    if args.child:
        print(json.dumps(run_one(args.child, args.runs, args.cache)))
        return 0
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as cache:
            out = subprocess.run([sys.executable, __file__, "--child", str(size), "--runs", str(args.runs),
                                  "--cache", cache], check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"\n{size}² (2 tiles), load average {r['load_average'][0]:.1f}, peak RSS {r['peak_rss_mib']:.0f} MiB")
        for label in ("cold", "cold_disk_cache", "warm_best"):
            wall, cpu, stages = r[label]
            detail = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            print(f"  {label:16s} wall {wall:5.2f} s  cpu {cpu:5.2f} s  | {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
