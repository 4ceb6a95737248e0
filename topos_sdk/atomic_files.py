"""Atomic writes: everything goes to a temporary name in the destination folder, then is renamed.

A crash or an exception half-way never leaves a half-written file (or folder) at the final path, and
the previous version stays intact until the rename.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path


def _process_umask() -> int:
    """The umask, read without changing it where the OS tells (Linux), else set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_FILE_MODE = 0o666 & ~_process_umask()


def _default_mode(path: Path) -> None:
    """Files a library wrote private (0600: safetensors does) get the mode any other new file gets."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    for file in files:
        if file.stat().st_mode & 0o777 == 0o600 and _FILE_MODE != 0o600:
            os.chmod(file, _FILE_MODE)


def temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_output_path(path: str | os.PathLike):
    """Yield a temporary file path beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if tmp.exists():
            _default_mode(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_output_dir(path: str | os.PathLike):
    """Yield a temporary folder beside ``path``; on success it takes the place of ``path``.

    An existing folder at ``path`` is moved aside first and deleted only after the new one is in
    place; if the swap fails, it is moved back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        _default_mode(tmp)
        old = None
        if path.exists():
            old = temp_sibling(path)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
