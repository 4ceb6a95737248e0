"""Headless heads for farms: ``mayapy -m topos_maya.batch portraits/ -o heads/ [--import]``.

Generates one asset per portrait (``heads/NAME_sSEED/``; a name already taken gets ``_2``, ``_3``…). With
``--import`` each head is also brought into a fresh Maya scene the way the shelf button does it
(``topos_maya.importer``: map1, materials, blendShape with the portrait's expression) and saved next to its
asset as ``NAME.ma`` (``--scene-type mayaBinary``: ``NAME.mb``). Maya itself (``maya.standalone``) starts
only with ``--import``. Exit status 0 when every portrait gave a head, 1 otherwise; one line per portrait
on stdout (``portrait<TAB>asset[<TAB>scene]``), failures on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

SCENE_SUFFIXES = {"mayaAscii": ".ma", "mayaBinary": ".mb"}



def argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mayapy -m topos_maya.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="PORTRAIT_OR_FOLDER")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="asset folders are written here")
    p.add_argument("--server", default="local", help="host:port of `topos serve`, or 'local'")
    p.add_argument("--engine", default="classic", choices=("classic", "topos"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture-size", type=int, default=1024, choices=(512, 1024, 2048))
    p.add_argument("--topology", metavar="NAME", help="a studio topology (`topos topology add`; default: the reference)")
    p.add_argument("--import", dest="import_scene", action="store_true",
                   help="import each head into a new Maya scene and save it beside the asset")
    p.add_argument("--scene-type", default="mayaAscii", choices=sorted(SCENE_SUFFIXES))
    return p


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def generate_all(args) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """([(portrait, asset)], [(portrait, reason)]): every portrait generated in this process."""
    from topos_sdk.generate import asset_name_for, generate_head, portraits_in

    from .job import unused_asset_name

    server = None if args.server.strip() in ("", "local") else args.server.strip()
    done, failed = [], []
    for portrait in portraits_in(args.inputs):
        try:
            name = unused_asset_name(args.output, f"{asset_name_for(portrait)}_s{args.seed}")
            asset = generate_head(portrait, args.output, server=server, engine=args.engine, seed=args.seed,
                                  texture_size=args.texture_size, name=name, topology=args.topology)
            done.append((portrait, os.fspath(asset)))
        except Exception as exc:  # noqa: BLE001 - one bad portrait must not stop the batch
            failed.append((portrait, one_line(exc)))
    return done, failed


def import_and_save(assets: list[str], scene_type: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Each asset imported into a new scene saved beside it: ({asset: scene}, [(asset, reason)])."""
    import maya.standalone

    maya.standalone.initialize(name="python")
    try:
        from maya import cmds

        from . import importer

        scenes, failed = {}, []
        for asset in assets:
            try:
                cmds.file(new=True, force=True)
                importer.import_asset(asset, "import")
                scene = os.path.splitext(asset)[0] + SCENE_SUFFIXES[scene_type]
                cmds.file(rename=scene)
                cmds.file(save=True, type=scene_type, force=True)
                scenes[asset] = scene
            except Exception as exc:  # noqa: BLE001
                failed.append((asset, one_line(exc)))
        return scenes, failed
    finally:
        maya.standalone.uninitialize()


def main(argv: list[str] | None = None) -> int:
    from topos_sdk.generate import portraits_in

    args = argument_parser().parse_args(argv)
    if not portraits_in(args.inputs):
        print("no portraits found", file=sys.stderr)
        return 1
    done, failed = generate_all(args)
    scenes = {}
    if args.import_scene and done:
        scenes, import_failed = import_and_save([asset for _, asset in done], args.scene_type)
        failed += import_failed
    for portrait, asset in done:
        print("\t".join([portrait, asset] + ([scenes[asset]] if asset in scenes else [])))
    for what, reason in failed:
        print(f"{what}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
