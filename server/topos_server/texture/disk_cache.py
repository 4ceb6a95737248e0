"""Head-independent bake data kept on disk under ``$TOPOS_HOME/bake/`` (default ``~/.cache/topos``).

The UV raster of a topology and its facial regions only depend on the topology, yet take a large part
of a one-portrait ``topos generate`` to compute. Each is one uncompressed ``.npz``, written atomically
(a file is never changed in place, so a large one can be read back as a memory map); a missing,
unreadable or stale file is simply rebuilt, an unwritable folder only costs the time.

The folder is kept under a size budget (``$TOPOS_BAKE_CACHE_MB``, default ``DEFAULT_BUDGET_MB``): each read
marks its file as used (its modification time), and each write removes the least recently used files beyond
the budget. Files of superseded versions (a new raster convention, another topology, texture sizes no longer
asked for) therefore go instead of piling up; removing one only means rebuilding it when it is needed again
(a process that has one mapped keeps reading it).
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import zipfile
from pathlib import Path

import numpy as np

from topos_sdk.atomic_files import atomic_output_path


DEFAULT_BUDGET_MB = 1024  # a 2048² UV layout is ~140 MB, a 1024² one ~35 MB
log = logging.getLogger(__name__)
_REPORTED: set[str] = set()  # bad $TOPOS_BAKE_CACHE_MB values already logged


def bake_cache_dir() -> Path:
    root = os.environ.get("TOPOS_HOME") or Path.home() / ".cache" / "topos"
    return Path(root).expanduser() / "bake"


def load_arrays(path: Path, names: list[str], mapped: bool = False) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of the ``.npz`` at ``path``, or None when it is missing or unreadable.

    ``mapped``: read-only arrays backed by the file's pages (``mmap``) instead of copies: no read
    and copy of the whole file up front, and the pages are shared with the OS's file cache.
    """
    try:
        if mapped:
            arrays = _mapped_arrays(path, names)
        else:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in names}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    try:
        os.utime(path)  # used now: the budget removes the least recently used files first
    except OSError:
        pass
    return arrays


def _mapped_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Map the members of an uncompressed ``.npz`` (what :func:`save_arrays` writes)."""
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as archive:
        starts = {}
        for name in names:
            info = archive.getinfo(name + ".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: {name} is compressed")
            fh.seek(info.header_offset)
            local = fh.read(30)  # the local file header: its name and extra field lengths are at 26 and 28
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: damaged zip member {name}")
            fh.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"))
            version = np.lib.format.read_magic(fh)
            shape, fortran_order, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                           else np.lib.format.read_array_header_2_0(fh))
            if fortran_order or dtype.hasobject:
                raise ValueError(f"{path}: {name} is not a C-ordered plain array")
            starts[name] = (fh.tell(), shape, dtype)
        pages = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return {name: np.frombuffer(pages, dtype, int(np.prod(shape)), offset).reshape(shape)
            for name, (offset, shape, dtype) in starts.items()}


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically; an unwritable folder is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    except OSError:
        return
    keep_within_budget(path.parent, keep=path)


def _budget_mb() -> float:
    """``$TOPOS_BAKE_CACHE_MB`` or ``DEFAULT_BUDGET_MB``; a value that is not a number ≥ 0 is said in the log once and
    the default used (a cache setting must not stop a bake)."""
    value = os.environ.get("TOPOS_BAKE_CACHE_MB")
    if value is None:
        return DEFAULT_BUDGET_MB
    try:
        budget = float(value)
    except ValueError:
        budget = -1.0
    if not (math.isfinite(budget) and budget >= 0):
        if value not in _REPORTED:
            _REPORTED.add(value)
            log.warning("TOPOS_BAKE_CACHE_MB=%r is not a size in MB (a number ≥ 0): the bake cache keeps to %d MB",
                        value, DEFAULT_BUDGET_MB)
        return DEFAULT_BUDGET_MB
    return budget


def keep_within_budget(folder: Path, keep: Path | None = None, budget_mb: float | None = None) -> list[Path]:
    """Remove the least recently used ``.npz`` files of ``folder`` until it holds at most ``budget_mb`` (default
    ``$TOPOS_BAKE_CACHE_MB`` or ``DEFAULT_BUDGET_MB``); ``keep`` is never removed. Returns the removed files."""
    if budget_mb is None:
        budget_mb = _budget_mb()
    files = []
    for entry in folder.glob("*.npz"):
        try:
            stat = entry.stat()
        except OSError:  # removed by another process meanwhile
            continue
        files.append((stat.st_mtime, stat.st_size, entry))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, entry in sorted(files, key=lambda f: f[0]):  # oldest use first
        if total <= budget_mb * 2**20:
            break
        if keep is not None and entry == keep:
            continue
        try:
            entry.unlink()
        except OSError:
            continue
        total -= size
        removed.append(entry)
    return removed
