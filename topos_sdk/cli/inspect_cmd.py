"""``topos inspect PATH`` (what a head asset holds) and ``topos validate PATH`` (exit 0 clean, 1 with
one line per problem). PATH: an asset folder, its ``NAME.usda`` or a ``.usdz``."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    inspect = subparsers.add_parser("inspect", help="summarise a head asset: topology, meshes, materials, blendshapes, validation")
    inspect.add_argument("path", help="asset folder, NAME.usda or NAME.usdz")
    inspect.set_defaults(handler=inspect_asset)
    validate = subparsers.add_parser("validate", help="validate a head asset (UsdValidation + TOPOS rules); exit 1 on problems")
    validate.add_argument("path", help="asset folder, NAME.usda or NAME.usdz")
    validate.add_argument("--warnings", action="store_true", help="report USD validator warnings as problems too")
    validate.set_defaults(handler=validate_asset_cmd)


def _require_usd() -> None:
    try:
        import pxr  # noqa: F401
    except ImportError:
        from topos_sdk.errors import ToposError
        raise ToposError("needs OpenUSD's Python module 'pxr': pip install 'topos[usd]' (or run inside Maya/Houdini)") from None


def validate_asset_cmd(args) -> int:
    _require_usd()
    from topos_sdk.usd import validate_asset

    problems = validate_asset(args.path, include_warnings=args.warnings)
    for line in problems:
        print(line)
    if not problems:
        print(f"{args.path}: ok")
    return 1 if problems else 0


def inspect_asset(args) -> int:
    _require_usd()
    from pxr import UsdSkel

    from topos_sdk.usd import layout, validate_asset
    from topos_sdk.usd.asset_reader import open_stage, root_asset_info
    from topos_sdk.usd.geometry import head_meshes, mesh_arrays

    with open_stage(args.path) as (root_file, stage):
        info = root_asset_info(stage)
        meshes = [mesh_arrays(p) for p in head_meshes(stage)]
        anim = next((UsdSkel.Animation(p) for p in stage.Traverse() if p.IsA(UsdSkel.Animation)), None)
        shapes = list(anim.GetBlendShapesAttr().Get() or []) if anim else []
        has_camera = any(p.GetTypeName() == "Camera" for p in stage.Traverse())
    out = sys.stdout.write
    out(f"asset        {root_file}\n")
    out(f"name         {info.get('name')}   version {info.get('version')}\n")
    out(f"topology id  {info.get(layout.TOPOLOGY_ID_KEY)}\n")
    n_points = sum(len(m["points"]) for m in meshes)
    n_faces = sum(len(m["face_vertex_counts"]) for m in meshes)
    out(f"counts       {n_points} points, {n_faces} faces, {len(meshes)} meshes\n")
    for m in meshes:
        counts = m["face_vertex_counts"]
        sides = ", ".join(f"{(counts == k).sum()} {label}" for k, label in ((3, "tris"), (4, "quads")) if (counts == k).any())
        ngons = int((counts > 4).sum())
        sides += f", {ngons} n-gons" if ngons else ""
        parts = ", ".join(s["name"] for s in m["submeshes"])
        materials = ", ".join(name for name, _ in m["material_subsets"])
        out(f"  mesh {m['name']}: {len(m['points'])} points, {len(counts)} faces ({sides}), "
            f"subdivision {m['subdivision_scheme']}\n      sub-meshes: {parts}\n      materials: {materials}\n")
    textures = json.loads(info.get(layout.TEXTURES_KEY, "{}"))
    for name, spec in textures.items():
        out(f"texture      {name}: {spec['file']} tiles {spec['tiles']} ({spec['colorSpace']})\n")
    out(f"blendshapes  {len(shapes)}{': ' + ', '.join(shapes[:8]) + (' …' if len(shapes) > 8 else '') if shapes else ''}\n")
    out(f"camera       {'yes' if has_camera else 'no'}\n")
    provenance = json.loads(info.get(layout.PROVENANCE_KEY, "{}"))
    if provenance:
        out(f"provenance   engine {provenance.get('engine')}, seed {provenance.get('seed')}\n")
    problems = validate_asset(args.path)
    out(f"validation   {'clean' if not problems else f'{len(problems)} problem(s)'}\n")
    for line in problems:
        out(f"  {line}\n")
    return 0
