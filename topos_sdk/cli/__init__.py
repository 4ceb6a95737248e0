"""The ``topos`` command. Each sub-command lives in its own module with ``register(subparsers)``;
the module's handler returns an exit code. Errors the user can fix print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys

from ..errors import ToposError

# sub-command modules, imported at start-up: keep them light (no torch at import time)
COMMAND_MODULES = [
    "topos_sdk.cli.assets_cmd",
    "topos_sdk.cli.inspect_cmd",
    "topos_sdk.cli.generate_cmd",
    "topos_sdk.cli.preview_cmd",
    "topos_sdk.cli.integrations_cmd",
    "topos_sdk.cli.serve_cmd",
    "topos_sdk.cli.train_cmd",
    "topos_sdk.cli.convert_cmd",
    "topos_sdk.cli.topology_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="topos", description="One portrait in, a production head out.")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # argparse's float() takes "inf" and "nan": no option of any command means either
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            print(f"topos {args.command}: error: --{name.replace('_', '-')} must be a finite number, got {value}",
                  file=sys.stderr)
            return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("topos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error worth a message
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ToposError, OSError, ValueError) as exc:
        if args.verbose:
            raise
        print(f"topos {args.command}: error: {exc}", file=sys.stderr)
        return 1
