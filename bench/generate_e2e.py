"""End-to-end wall time and peak memory of `topos generate` on one 512² portrait.

    python bench/generate_e2e.py [--sizes 1024 2048] [--repeat 3]
    python bench/generate_e2e.py --cli [--sizes 1024 2048] [--repeat 3] [--baseline CHECKOUT] [--texture learned]

In-process (default): stages decode, landmarks + fit, texture bake, USD write, preview (thumbnail),
each with its wall time and its tracemalloc peak.

``--cli``: the command itself, `topos generate docs/examples/astronaut.png --texture-size S [--texture T]`, warm
cache (one untimed run first), each run a new process: wall and CPU seconds and the process's peak RSS
(from ``wait4``), median of ``--repeat`` runs, with the load average before each run. With
``--baseline`` (another checkout of the repository, e.g. a ``git worktree`` of an older commit) the
runs alternate between the baseline and this checkout, so both see the same load.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402


class StageMeter:
    """Wall time of each stage, or (with ``trace_memory``) its tracemalloc peak, numpy buffers included.

    The two are measured in separate runs: tracing slows Python-heavy stages down about twofold.
    """

    def __init__(self, trace_memory: bool = False):
        self.trace_memory = trace_memory
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}

    def run(self, stage, fn, *args, **kwargs):
        if self.trace_memory:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[stage] = time.perf_counter() - t
        if self.trace_memory:
            self.peak_mb[stage] = (tracemalloc.get_traced_memory()[1] - base) / 2**20
        return out


REPO = Path(__file__).resolve().parents[1]
PORTRAIT = REPO / "docs" / "examples" / "astronaut.png"
TOPOS_COMMAND = "import sys; from topos_sdk.cli import main; sys.argv[0] = 'topos'; sys.exit(main())"  # the `topos` script


def run_cli(size: int, checkout: Path | None, texture: str = "bake") -> dict:
    """One `topos generate` in a new process → wall s, CPU s (user + sys) and peak RSS MiB of that process."""
    env = dict(os.environ)
    if checkout is not None:  # the baseline's packages first on the path (the venv's editable install is this one)
        env["PYTHONPATH"] = os.pathsep.join([str(checkout), str(checkout / "server")])
    with tempfile.TemporaryDirectory() as out:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", TOPOS_COMMAND, "generate", str(PORTRAIT), "-o", out,
                                  "--texture-size", str(size), "--texture", texture], env=env, cwd=out,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        error = child.stderr.read().decode(errors="replace")
        child.stderr.close()
        if child.returncode != 0:
            raise RuntimeError(f"topos generate failed ({child.returncode}): {error[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024, "load": load}


def main_cli(args) -> None:
    builds = [("this checkout", None)]
    if args.baseline:
        builds.insert(0, ("baseline " + args.baseline, Path(args.baseline).resolve()))
    print(f"Machine: {machine_description()}")
    print(f"`topos generate` of {PORTRAIT.name} in a new process each run, warm cache; median of {args.repeat} "
          f"(alternating builds), --texture {args.texture}; load = 1-min load average before each run")
    print()
    print("| texture | build | wall s | CPU s | peak RSS MiB | load |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for _, checkout in builds:  # warm the asset, UV-layout and OS file caches
            run_cli(size, checkout, args.texture)
        runs = {name: [] for name, _ in builds}
        for _ in range(args.repeat):
            for name, checkout in builds:
                runs[name].append(run_cli(size, checkout, args.texture))
        for name, _ in builds:
            r = runs[name]
            med = {k: statistics.median(x[k] for x in r) for k in ("wall", "cpu", "rss")}
            loads = [x["load"] for x in r]
            print(f"| {size}² ×2 tiles | {name} | {med['wall']:.2f} | {med['cpu']:.2f} | {med['rss']:.0f} | "
                  f"{min(loads):.1f}–{max(loads):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="time the `topos generate` command, one process per run")
    parser.add_argument("--baseline", help="with --cli: another checkout to alternate with (e.g. a git worktree)")
    parser.add_argument("--texture", choices=("bake", "learned"), default="bake", help="with --cli: --texture of the runs")
    args = parser.parse_args()
    if args.cli:
        main_cli(args)
        return

    from PIL import Image
    from skimage.data import astronaut
    from topos_server.engines import shared_engine
    from topos_server.face import load_image
    from topos_server.texture.learned import portrait_textures

    from topos_sdk.preview import render_thumbnail
    from topos_sdk.usd import write_head_asset

    buf = io.BytesIO()
    Image.fromarray(astronaut()).save(buf, format="PNG")
    data = buf.getvalue()
    t = time.perf_counter()
    engine = shared_engine("classic", "cpu")
    load_s = time.perf_counter() - t
    order = ["decode", "landmarks+fit", "bake", "usd_write", "preview"]
    rows = []
    for size in args.sizes:
        runs = []
        for repeat in range(args.repeat + 1):
            m = StageMeter(trace_memory=(repeat == args.repeat))
            if m.trace_memory:
                tracemalloc.start()
            image = m.run("decode", load_image, data)
            result, _ = m.run("landmarks+fit", engine.fit_portrait, image)
            result.textures, _ = m.run("bake", portrait_textures, image, result.posed_points(), result.camera,
                                       result.points, engine.topology, size, "bake", 0)  # as the engine does
            with tempfile.TemporaryDirectory() as tmp:
                m.run("usd_write", write_head_asset, result, tmp, name="bench", thumbnail=False)
            m.run("preview", render_thumbnail, result)
            if m.trace_memory:
                tracemalloc.stop()
            runs.append(m)
        med_s = {k: statistics.median(r.seconds[k] for r in runs[:-1]) for k in order}
        rows.append((size, med_s, runs[-1].peak_mb))
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Machine: {machine_description()}")
    print(f"Engine load (head model, topology, interpreters): {load_s:.2f} s. Median of {args.repeat} runs; "
          f"memory = tracemalloc peak above the stage's start (numpy buffers included), from one more run; "
          f"max RSS of the whole process {max_rss_mb:.0f} MB")
    print()
    print("| texture | " + " | ".join(order) + " | total |")
    print("|---|" + "---|" * (len(order) + 1))
    for size, med_s, peak in rows:
        cells = [f"{med_s[k] * 1000:.0f} ms / {peak[k]:.0f} MB" for k in order]
        print(f"| {size}² ×2 tiles | " + " | ".join(cells) + f" | {sum(med_s.values()) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
