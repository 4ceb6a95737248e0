"""Test-only stand-ins for the DCC modules (``maya.cmds``, ``maya.mel``, ``maya.utils``, ``hou``).

They record every call so tests can assert the commands, flags and parameters the shims use. Install with
:func:`install_fake_maya` / :func:`install_fake_hou` (monkeypatch-based: undone after each test).
"""

from __future__ import annotations

import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent
REPO = FAKES.parents[1]
MAYA_SCRIPTS = REPO / "integrations" / "maya" / "scripts"
HOUDINI_LIBS = REPO / "integrations" / "houdini" / "python"


def _forget(prefixes: tuple[str, ...], monkeypatch) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in prefixes:
            monkeypatch.delitem(sys.modules, name)


def install_fake_maya(monkeypatch):
    """Fake ``maya`` package on sys.modules and ``topos_maya`` importable; returns the fresh recorder."""
    from .maya import cmds, mel, standalone, utils  # noqa: F401 - registers the submodules
    from . import maya as fake_maya
    from .maya.session import MayaSession

    session = MayaSession()
    fake_maya.session.current = session
    _forget(("maya", "topos_maya", "userSetup"), monkeypatch)
    monkeypatch.setitem(sys.modules, "maya", fake_maya)
    monkeypatch.setitem(sys.modules, "maya.cmds", fake_maya.cmds)
    monkeypatch.setitem(sys.modules, "maya.mel", fake_maya.mel)
    monkeypatch.setitem(sys.modules, "maya.utils", fake_maya.utils)
    monkeypatch.setitem(sys.modules, "maya.standalone", fake_maya.standalone)
    monkeypatch.syspath_prepend(str(MAYA_SCRIPTS))
    return session


def install_fake_hou(monkeypatch):
    """Fake ``hou`` on sys.modules and ``topos_houdini`` importable; returns the fake module."""
    from . import hou as fake_hou

    fake_hou.reset()
    _forget(("hou", "topos_houdini"), monkeypatch)
    monkeypatch.setitem(sys.modules, "hou", fake_hou)
    monkeypatch.syspath_prepend(str(HOUDINI_LIBS))
    return fake_hou
