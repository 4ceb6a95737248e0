"""End-to-end wall time and peak memory of `topos generate` on one 512² portrait, split by stage.

    python bench/generate_e2e.py [--sizes 1024 2048] [--repeat 3]

Stages: decode, landmarks + fit, texture bake, USD write, preview (thumbnail), each with its wall time
and its tracemalloc peak.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from PIL import Image
    from skimage.data import astronaut
    from topos_server.engines import shared_engine
    from topos_server.face import load_image
    from topos_server.texture.bake import bake_textures

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
            result.textures = m.run("bake", bake_textures, image, result.posed_points(), result.camera,
                                    engine.topology, size=size)
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
