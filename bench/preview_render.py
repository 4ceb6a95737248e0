"""Rasteriser and preview-renderer benchmark on the ICT mesh (52,220 triangles after fan triangulation).

    python bench/preview_render.py                         # prints a Markdown section
    python bench/preview_render.py --update                # and replaces the "Preview renderer" section of BENCHMARKS.md
    python bench/preview_render.py --sample docs/preview_sample_head.png   # also writes the README sample

Times (best of 5, wall and process CPU; the CPU figure is the fairer one on a shared machine):
``rasterize`` of the ICT mesh at 1024² with a z-buffer, of its UV layout at 2048² without depth
(the texture baker's case: every triangle passed, tile 1001 in the frame), ``render_views`` at 512²
per view and ``render_thumbnail`` at 256², untextured and with a two-tile 1024² albedo. The head is
identity sample 0 of seed 3 from the cache's ``HeadModel`` (the ICT neutral when there is none).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Preview renderer"
ICT_NEUTRAL = REPO.parent / "shared" / "ict-facekit" / "FaceXModel" / "generic_neutral_mesh.obj.xz"


def sampled_head():
    from topos_sdk import ReferenceTopology
    from topos_sdk.head_result import HeadResult

    try:
        import torch
        from topos_server.assets.cache import AssetCache
        from topos_server.assets.head_model import HeadModel

        cache = AssetCache.default()
        topology = cache.ict_topology()
        model = HeadModel.load(cache)
        with torch.no_grad():
            points = model.vertices(model.sample_identity(torch.Generator().manual_seed(3), 1), None)[0].numpy()
        return HeadResult(points=points, topology=topology), "HeadModel identity sample (seed 3), ICT topology from the cache"
    except Exception as exc:  # no imported assets
        topology = ReferenceTopology.from_obj(ICT_NEUTRAL)
        return HeadResult(points=topology.rest_points, topology=topology), f"ICT neutral OBJ ({exc.__class__.__name__})"


def timed(fn, repeats=5):
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def peak_mib(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def run(sample: Path | None) -> str:
    sys.path.insert(0, str(REPO / "bench"))
    from machine import machine_description

    from topos_sdk.head_result import HeadResult, TextureMap
    from topos_sdk.preview import render_thumbnail, render_views
    from topos_sdk.raster import rasterize

    head, source = sampled_head()
    topo = head.topology
    tri, _ = topo.triangles()
    p = head.points.astype(np.float64)
    lo, hi = p.min(0), p.max(0)
    scale = 0.9 * 1024 / (hi - lo)[:2].max()
    xy = np.stack([(p[:, 0] - (lo[0] + hi[0]) / 2) * scale + 512, 512 - (p[:, 1] - (lo[1] + hi[1]) / 2) * scale], 1)
    uv = topo.uv_values.astype(np.float64)
    uv_xy = np.stack([uv[:, 0] * 2048, (1 - uv[:, 1]) * 2048], 1)[topo.uv_triangles()]

    image_space = lambda: rasterize(xy[tri], 1024, 1024, -p[tri, 2])  # noqa: E731
    uv_space = lambda: rasterize(uv_xy, 2048, 2048)  # noqa: E731
    covered_image = (image_space()[0] >= 0).mean()
    covered_uv = (uv_space()[0] >= 0).mean()

    rng = np.random.default_rng(0)
    tiles = {t: (rng.integers(90, 230, size=(1024, 1024, 3))).astype(np.uint8) for t in (1001, 1002)}
    textured = HeadResult(points=head.points, topology=topo, textures={"albedo": TextureMap("albedo", tiles)})

    rows = [
        ("`rasterize` ICT mesh, 1024², z-buffer", timed(image_space), peak_mib(image_space), f"{covered_image:.0%} of pixels covered"),
        ("`rasterize` ICT UV layout, 2048², no depth", timed(uv_space), peak_mib(uv_space), f"{covered_uv:.0%} covered"),
        ("`render_views` 3 × 512², untextured", timed(lambda: render_views(head, 512)), peak_mib(lambda: render_views(head, 512)), "2× supersampled"),
        ("`render_views` 3 × 512², albedo 2 × 1024² tiles", timed(lambda: render_views(textured, 512)), None, ""),
        ("`render_thumbnail` 256², untextured", timed(lambda: render_thumbnail(head, 256)), None, ""),
        ("`render_thumbnail` 256², albedo", timed(lambda: render_thumbnail(textured, 256)), None, ""),
    ]
    lines = [
        SECTION, "",
        f"`python bench/preview_render.py` — {machine_description()}; best of 5 runs.",
        f"Head: {source}; {len(tri):,} triangles. Numpy only (no GPU, no OpenGL).", "",
        "| operation | wall s | CPU s | tracemalloc peak MiB | note |",
        "|---|---|---|---|---|",
    ]
    for name, (wall, cpu), peak, note in rows:
        lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {'' if peak is None else f'{peak:.0f}'} | {note} |")
    lines += ["", "Memory is bounded by the image (per-pixel key, id and barycentric buffers); the per-triangle work "
              "runs in chunks of 65,536 candidate pixels, whatever the triangle sizes."]
    if sample is not None:
        from topos_sdk.usd.png_io import write_png

        write_png(sample, render_views(head, 384))
        lines.append(f"\nSample render: `{sample.relative_to(REPO) if sample.is_absolute() else sample}`.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help=f"replace the {SECTION!r} section of BENCHMARKS.md")
    parser.add_argument("--sample", type=Path, help="also write front/three-quarter/profile views (384² each) here")
    args = parser.parse_args()
    text = run(args.sample.resolve() if args.sample else None)
    print(text)
    if args.update:
        path = REPO / "BENCHMARKS.md"
        doc = path.read_text()
        if SECTION in doc:
            start = doc.index(SECTION)
            end = doc.find("\n## ", start + len(SECTION))
            doc = doc[:start] + text + (doc[end + 1:] if end >= 0 else "")
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
        path.write_text(doc)


if __name__ == "__main__":
    main()
