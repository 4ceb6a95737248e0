"""Regenerate the committed stubs from ``proto/topos/v1/topos.proto`` (needs grpcio-tools, dev extra).

    python -m topos_sdk._proto.regenerate          # rewrite the stubs
    python -m topos_sdk._proto.regenerate --check  # exit 1 if the committed stubs are stale

The generated ``*_pb2_grpc.py`` imports its messages as ``from topos.v1 import topos_pb2`` (the
proto's path); that import is rewritten to a relative one so the stubs live inside ``topos_sdk``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PROTO_FILES = ["topos/v1/topos.proto"]
STUB_DIR = Path(__file__).resolve().parent / "v1"
STUB_NAMES = ["topos_pb2.py", "topos_pb2.pyi", "topos_pb2_grpc.py"]


def generated_stubs() -> dict[str, str]:
    """File name → text of the stubs as grpcio-tools generates them now."""
    from grpc_tools import protoc  # dev-only dependency
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", *[str(PROTO_ROOT / f) for f in PROTO_FILES]]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_FILES}")
        out_dir = Path(tmp) / "topos" / "v1"
        texts = {name: (out_dir / name).read_text() for name in STUB_NAMES}
    texts["topos_pb2_grpc.py"] = texts["topos_pb2_grpc.py"].replace(
        "from topos.v1 import topos_pb2 as", "from . import topos_pb2 as")
    return texts


def stale_stubs() -> list[str]:
    """Names of committed stubs that differ from freshly generated ones (empty = current)."""
    return [name for name, text in generated_stubs().items()
            if not (STUB_DIR / name).exists() or (STUB_DIR / name).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_stubs()
        for name in stale:
            print(f"stale: {STUB_DIR / name}", file=sys.stderr)
        return 1 if stale else 0
    for name, text in generated_stubs().items():
        (STUB_DIR / name).write_text(text)
        print(f"wrote {STUB_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
