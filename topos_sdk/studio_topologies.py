"""Names of the studio topologies registered in an asset cache (``topos topology add``), without the server
package: what the Maya and Houdini topology menus list."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

TOPOLOGIES_DIR = "topologies"
MANIFEST_FILE = "manifest.json"
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def topologies_root(home: str | os.PathLike | None = None) -> Path:
    """``$TOPOS_HOME/topologies`` (default ``~/.cache/topos/topologies``)."""
    root = home or os.environ.get("TOPOS_HOME") or Path.home() / ".cache" / "topos"
    return Path(root).expanduser() / TOPOLOGIES_DIR


def registered_topology_names(home: str | os.PathLike | None = None) -> list[str]:
    """Sorted names of the studio topologies whose manifest is in place (a half-written one is skipped)."""
    root = topologies_root(home)
    if not root.is_dir():
        return []
    names = []
    for folder in root.iterdir():
        manifest = folder / MANIFEST_FILE
        if folder.is_dir() and NAME_PATTERN.fullmatch(folder.name) and manifest.is_file():
            try:
                if json.loads(manifest.read_text()).get("name") == folder.name:
                    names.append(folder.name)
            except (OSError, ValueError):
                continue
    return sorted(names)
