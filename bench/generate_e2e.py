"""End-to-end wall time and peak memory of `topos generate` on one 512² portrait, split by stage.

    python bench/generate_e2e.py [--sizes 1024 2048] [--repeat 3]

Stages: decode, landmarks, fit, bake (from the engine's provenance timings), USD write, preview
(thumbnail, inside the write; measured separately too). Peak memory is the process's max RSS.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from PIL import Image
    from skimage.data import astronaut

    from topos_sdk.preview import render_thumbnail
    from topos_sdk.usd import write_head_asset
    from topos_server.engines import GenerateOptions, shared_engine

    buf = io.BytesIO()
    Image.fromarray(astronaut()).save(buf, format="PNG")
    data = buf.getvalue()
    t = time.perf_counter()
    engine = shared_engine("classic", "cpu")
    load_s = time.perf_counter() - t
    rows = []
    for size in args.sizes:
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = engine.generate([data], GenerateOptions(texture_size=size))[0]
            t1 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                write_head_asset(result, tmp, name="bench", thumbnail=False)
                t2 = time.perf_counter()
                render_thumbnail(result)
                t3 = time.perf_counter()
            stages = dict(result.provenance.timings_s)
            stages.update({"usd_write": t2 - t1, "preview": t3 - t2, "total": (t1 - t0) + (t3 - t1)})
            runs.append(stages)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append((size, med))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    order = ["decode", "landmarks", "fit", "bake", "usd_write", "preview", "total"]
    print(f"Machine: {machine_description()}")
    print(f"Engine load (model, topology, interpreters): {load_s:.2f} s; median of {args.repeat} runs; "
          f"peak RSS of the whole run {peak_mb:.0f} MB")
    print()
    print("| texture | " + " | ".join(order) + " |")
    print("|---|" + "---|" * len(order))
    for size, med in rows:
        print(f"| {size}² ×2 tiles | " + " | ".join(f"{med[k] * 1000:.0f} ms" for k in order) + " |")


if __name__ == "__main__":
    main()
