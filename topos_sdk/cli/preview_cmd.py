"""``topos preview ASSET -o out.png``: front / three-quarter / profile renders of a head asset, side by side."""

from __future__ import annotations

import sys
from pathlib import Path

VIEW_CHOICES = ("all", "front", "three-quarter", "profile")


def register(sub) -> None:
    p = sub.add_parser("preview", help="render a head asset to a PNG (no GPU needed)",
                       description="Render a TOPOS head asset (folder, NAME.usda or .usdz) with its albedo texture: "
                                   "front, three-quarter and profile views side by side.")
    p.add_argument("asset", metavar="ASSET", help="asset folder, NAME.usda or NAME.usdz")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="PNG", help="PNG file to write")
    p.add_argument("--size", type=int, default=512, help="pixels per view side (default 512)")
    p.add_argument("--view", choices=VIEW_CHOICES, default="all", help="one view instead of all three")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..atomic_files import atomic_output_path
    from ..preview import VIEWS, render_head, render_views
    from ..usd import read_head_asset
    from ..usd.png_io import write_png

    if not 8 <= args.size <= 4096:
        raise ValueError(f"--size must be between 8 and 4096, got {args.size}")
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {args.out}")
    result = read_head_asset(args.asset)
    if args.view == "all":
        image = render_views(result, args.size)
    else:
        image = render_head(result, dict(VIEWS)[args.view], args.size)
    with atomic_output_path(args.out) as tmp:
        write_png(tmp, image)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})", file=sys.stderr)
    return 0
