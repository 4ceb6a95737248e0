"""``topos convert MESH -o OUTDIR``: a head mesh of any topology → a head asset in the reference topology."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("convert", help="head mesh of any topology (OBJ/PLY/STL/USD) → reference-topology asset",
                       description="Bring a scan, sculpt or head from another tool into the reference topology with "
                                   "TOPOS-VAE: writes OUTDIR/NAME/NAME.usda and OUTDIR/NAME.conversion.json "
                                   "(distance from the converted surface to the input surface).")
    p.add_argument("mesh", type=Path, metavar="MESH", help=".obj/.obj.xz/.ply/.stl/.usd/.usda/.usdc/.usdz")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="OUTDIR")
    p.add_argument("--name", help="asset name (default: the file name)")
    p.add_argument("--weights", type=Path, metavar="DIR", help="TOPOS-VAE model folder (default: the bundled one)")
    p.add_argument("--units", default="auto", help="input units: auto, mm, cm, m, in, normalized (default auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the surface sampling")
    p.add_argument("--all-components", action="store_true",
                   help="use every connected component (default: the largest, dropping eyeballs, teeth, debris)")
    p.add_argument("--usdz", action="store_true", help="also write NAME.usdz")
    p.add_argument("--texture-size", type=int, default=1024, metavar="N",
                   help="albedo tile size when the input has vertex colours (default 1024; 0: points only)")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="keep TOPOS-VAE's head as decoded (default: pull its skin onto the input where the input "
                        "has surface)")
    p.add_argument("--landmarks", type=Path, metavar="FILE",
                   help="JSON landmarks in the mesh's coordinates: named multipie68 points {name: [x, y, z]} or "
                        "the 68 Multi-PIE points in order; they set the pose and pin correspondence")
    p.add_argument("--topology", metavar="NAME",
                   help="write the head in a studio topology registered with `topos topology add`")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(handler=run)


def run(args) -> int:
    from topos_server.pipelines.convert import convert_mesh_file

    asset, report = convert_mesh_file(args.mesh, args.out, name=args.name, weights=args.weights, units=args.units,
                                      seed=args.seed, all_components=args.all_components, usdz=args.usdz,
                                      texture_size=args.texture_size, refine=args.refine,
                                      landmarks_file=args.landmarks, topology=args.topology)
    err = report["surface_error"]["input_to_converted"]
    constrained = report["refinement"].get("constrained_skin_fraction")
    covered = "" if constrained is None else f"; {100 * constrained:.0f} % of the skin on the input"
    print(f"wrote {asset} ({report['units']}; input→converted surface distance mean {err['mean_mm']:.2f} mm, "
          f"p95 {err['p95_mm']:.2f} mm{covered}; {sum(report['timings_s'].values()):.2f} s)", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0
