"""Headless heads for farms: ``hython -m topos_houdini.batch portraits/ -o heads/ [--hip heads.hip]``.

Generates (or reuses, same cache as the TOPOS Head LOP) one asset per portrait without UI. With ``--hip``
the heads are also brought in: one ``topos::head::1.0`` LOP per portrait in ``/stage``, chained, saved as
that hip file. Without ``--hip`` no ``hou`` is needed (plain ``python -m topos_houdini.batch`` works too).
Exit status 0 when every portrait gave a head, 1 otherwise; one line per portrait on stdout
(``portrait<TAB>asset``), failures on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .generation_cache import GenerationKey, asset_name, generate_or_reuse, server_address

HEAD_LOP_TYPE = "topos::head::1.0"


@dataclass(frozen=True)
class BatchHead:
    portrait: str
    key: GenerationKey
    asset: Path



def argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hython -m topos_houdini.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="PORTRAIT_OR_FOLDER")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="asset folders are written here")
    p.add_argument("--server", default="local", help="host:port of `topos serve`, or 'local'")
    p.add_argument("--engine", default="classic", choices=("classic", "topos"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture-size", type=int, default=1024, choices=(512, 1024, 2048))
    p.add_argument("--topology", default="", metavar="NAME",
                   help="a studio topology (`topos topology add`; default: the reference)")
    p.add_argument("--hip", metavar="FILE", help="also build a LOP network referencing the heads and save it here")
    return p


def generate_all(portraits: list[str], out_dir: str, *, server: str | None, engine: str, seed: int,
                 texture_size: int, topology: str = "") -> tuple[list[BatchHead], list[tuple[str, str]]]:
    """(heads made or reused, [(portrait, one-line reason)] for the ones that failed)."""
    heads, failures = [], []
    for portrait in portraits:
        try:
            key = GenerationKey.for_portrait(portrait, seed, engine, texture_size, topology)
            heads.append(BatchHead(portrait, key, generate_or_reuse(portrait, out_dir, key, server)))
        except Exception as exc:  # noqa: BLE001 - one bad portrait must not stop the batch
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.append((portrait, reason))
    return heads, failures


def build_stage_network(heads: list[BatchHead], out_dir: str, *, server: str, hip_file: str) -> list:
    """One TOPOS Head LOP per head in /stage, each feeding the next, display on the last; saves ``hip_file``."""
    import hou

    from .head_lop import portable_path

    stage = hou.node("/stage") or hou.node("/").createNode("lopnet", "stage")
    nodes, previous = [], None
    for head in heads:
        name = asset_name(head.portrait, head.key)
        node = stage.createNode(HEAD_LOP_TYPE, f"head_{name}")
        for parm, value in (("portrait", head.portrait), ("output_folder", out_dir), ("server", server),
                            ("engine", head.key.engine), ("seed", head.key.seed),
                            ("texture_size", str(head.key.texture_size)), ("topology", head.key.topology),
                            ("primpath", f"/heads/{name}"),
                            ("asset_file", portable_path(os.fspath(head.asset))), ("asset_key", head.key.digest)):
            node.parm(parm).set(value)
        if previous is not None:
            node.setInput(0, previous)
        nodes.append(node)
        previous = node
    if nodes:
        nodes[-1].setDisplayFlag(True)
    hou.hipFile.save(hip_file)
    return nodes


def main(argv: list[str] | None = None) -> int:
    from topos_sdk.generate import portraits_in

    args = argument_parser().parse_args(argv)
    portraits = portraits_in(args.inputs)
    if not portraits:
        print("no portraits found", file=sys.stderr)
        return 1
    heads, failures = generate_all(portraits, args.output, server=server_address(args.server), engine=args.engine,
                                   seed=args.seed, texture_size=args.texture_size, topology=args.topology)
    for head in heads:
        print(f"{head.portrait}\t{head.asset}")
    for portrait, reason in failures:
        print(f"{portrait}: {reason}", file=sys.stderr)
    if args.hip and heads:
        build_stage_network(heads, args.output, server=args.server, hip_file=args.hip)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
