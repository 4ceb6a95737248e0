"""Head-independent bake data kept on disk under ``$TOPOS_HOME/bake/`` (default ``~/.cache/topos``).

The UV raster of a topology and its facial regions only depend on the topology, yet take a large part
of a one-portrait ``topos generate`` to compute. Each is one uncompressed ``.npz`` (reading it back is
a copy), written atomically; a missing, unreadable or stale file is simply rebuilt, an unwritable
folder only costs the time.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from topos_sdk.atomic_files import atomic_output_path


def bake_cache_dir() -> Path:
    root = os.environ.get("TOPOS_HOME") or Path.home() / ".cache" / "topos"
    return Path(root).expanduser() / "bake"


def load_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of the ``.npz`` at ``path``, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in names}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically; an unwritable folder is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    except OSError:
        pass
