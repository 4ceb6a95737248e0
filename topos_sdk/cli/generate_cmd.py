"""``topos generate IMAGE... -o OUTDIR``: one asset folder per portrait, in-process or via a server."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("generate", help="portrait(s) → USD head asset(s)",
                       description="Generate one head asset folder per portrait (named after the image).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="portrait files (JPEG, PNG, WebP, TIFF)")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="folder that receives the asset folders")
    p.add_argument("--engine", default="classic", help="engine name (default: classic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (results are deterministic per seed)")
    p.add_argument("--texture-size", type=int, default=1024, choices=(512, 1024, 2048), help="texels per UDIM tile side")
    p.add_argument("--server", metavar="HOST:PORT", help="use a `topos serve` server instead of running in-process")
    p.add_argument("--token-file", type=Path, help="file holding the server's bearer token")
    p.add_argument("--device", default="cpu", help="in-process device: cpu, cuda or auto")
    p.add_argument("--usdz", action="store_true", help="also write NAME.usdz")
    p.add_argument("--overwrite", action="store_true", help="replace existing asset folders")
    p.add_argument("--debug", action="store_true", help="also write debug/overlay.png and debug/landmarks.json")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(handler=run)


def _progress_bar(index: int, total: int, name: str):
    interactive = sys.stderr.isatty()

    def show(stage: str, fraction: float) -> None:
        done = (index + fraction) / total
        bar = "#" * int(done * 30)
        line = f"[{bar:<30}] {index + 1}/{total} {name}: {stage}"
        if interactive:
            print(f"\r{line:<100}", end="", file=sys.stderr, flush=True)
        elif fraction >= 1.0:  # no carriage returns in logs: one line per finished image
            print(line, file=sys.stderr)

    return show


def run(args) -> int:
    from ..errors import ToposError
    from ..generate import asset_name_for, check_output_folder, generate_head

    token = None
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise ToposError(f"cannot read token file {args.token_file}: {exc.strerror}") from None
    out = check_output_folder(args.out)
    results, failures = [], 0
    names_seen: set[str] = set()
    for index, image in enumerate(args.images):
        name = asset_name_for(image)
        if name in names_seen:
            name = f"{name}_{index}"
        names_seen.add(name)
        started = time.perf_counter()
        try:
            usda = generate_head(image, out, server=args.server, engine=args.engine, seed=args.seed,
                                 texture_size=args.texture_size, name=name, usdz=args.usdz,
                                 overwrite=args.overwrite, token=token, debug=args.debug, device=args.device,
                                 on_progress=_progress_bar(index, len(args.images), name))
            results.append({"image": str(image), "asset": str(usda), "ok": True,
                            "seconds": round(time.perf_counter() - started, 3)})
        except (ToposError, OSError, ValueError) as exc:
            if args.verbose:
                raise
            failures += 1
            if sys.stderr.isatty():
                print(file=sys.stderr)
            print(f"topos generate: {image}: {exc}", file=sys.stderr)
            results.append({"image": str(image), "ok": False, "error": str(exc)})
    ok = len(results) - failures
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"topos generate: {ok} of {len(results)} written to {out}" + (f", {failures} failed" if failures else ""),
          file=sys.stderr)
    if args.json:
        print(json.dumps({"results": results, "written": ok, "failed": failures}, indent=1))
    else:
        for r in results:
            if r["ok"]:
                print(r["asset"])
    return 1 if failures else 0
