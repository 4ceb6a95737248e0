"""The generation worker: ``mayapy -m topos_maya.generation_process``, started by :mod:`topos_maya.job`.

It runs ``generate_head`` (engine or server call, and the USD write) in its own process, so Maya's main
thread and its USD layers (the USD Layer Editor, proxy shapes) are never touched while a head is made.

Protocol, one JSON object per line. stdin: the request first (``generate_head`` keyword arguments plus
``image`` and ``out_dir``), then ``"cancel"`` whenever the user cancels (end of input — Maya went away —
cancels too). stdout: ``{"progress": [stage, fraction]}`` …, then one of ``{"asset": path}``,
``{"cancelled": true}``, ``{"error": one line, "type": exception class}``. Tracebacks go to stderr.
No ``maya`` module is imported here.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback

CANCEL = "cancel"


class GenerationCancelled(Exception):
    """Raised inside the SDK's progress callback to stop a cancelled job (nothing is written)."""


def emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def watch_for_cancel(stream, cancelled: threading.Event) -> None:
    for line in stream:
        if line.strip() == json.dumps(CANCEL):
            break
    cancelled.set()


def main() -> int:
    request = json.loads(sys.stdin.readline())
    cancelled = threading.Event()
    threading.Thread(target=watch_for_cancel, args=(sys.stdin, cancelled), daemon=True).start()

    def on_progress(stage: str, fraction: float) -> None:
        if cancelled.is_set():
            raise GenerationCancelled()
        emit({"progress": [stage, float(fraction)]})

    from topos_sdk.generate import generate_head

    try:
        image, out_dir = request.pop("image"), request.pop("out_dir")
        path = generate_head(image, out_dir, on_progress=on_progress, **request)
    except GenerationCancelled:
        emit({"cancelled": True})
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to Maya as one line, traceback on stderr
        traceback.print_exc()
        lines = str(exc).strip().splitlines()
        emit({"error": lines[0] if lines else type(exc).__name__, "type": type(exc).__name__})
        return 1
    emit({"asset": os.fspath(path)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
