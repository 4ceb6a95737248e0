"""Which real portraits a model may learn from and which are kept for reporting numbers.

One rule for every learned model and benchmark: a portrait is held out when the first byte of the
SHA-256 of its file *name* (not its content, so re-encoding does not move it) is below
``HELD_OUT_FRACTION`` · 256. The split is therefore fixed per name, independent of which other files
sit in the folder, and the same on every machine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HELD_OUT_FRACTION = 0.2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def is_held_out(path: str | Path) -> bool:
    digest = hashlib.sha256(Path(path).name.encode("utf-8")).digest()
    return digest[0] < HELD_OUT_FRACTION * 256


def portrait_files(folder: str | Path) -> list[Path]:
    """The portraits in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of portraits")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_portraits(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(training, held-out) portraits of ``folder``, each sorted by name."""
    files = portrait_files(folder)
    return [p for p in files if not is_held_out(p)], [p for p in files if is_held_out(p)]
