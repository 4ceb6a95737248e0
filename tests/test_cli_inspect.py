"""`topos inspect` and `topos validate` on real written assets (run through the CLI entry point)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pxr")
from pxr import Sdf  # noqa: E402

from test_usd_asset import make_head  # noqa: E402
from topos_sdk.cli import main  # noqa: E402
from topos_sdk.usd import write_head_asset  # noqa: E402


def test_inspect_summarises_the_asset(tmp_path, quad_topology, capsys):
    root_file = write_head_asset(make_head(quad_topology), tmp_path, name="bob", thumbnail=False)
    assert main(["inspect", str(root_file.parent)]) == 0
    out = capsys.readouterr().out
    assert quad_topology.topology_id in out
    assert f"{quad_topology.num_points} points, {quad_topology.num_faces} faces, 1 meshes" in out
    assert "mesh skin" in out and "left, right" in out and "M_Left, M_Right" in out
    assert "blendshapes  3: jawOpen, eyeBlink_L, never moves" in out
    assert "validation   clean" in out


def test_validate_exit_codes(tmp_path, quad_topology, capsys):
    root_file = write_head_asset(make_head(quad_topology), tmp_path, thumbnail=False, usdz=True)
    assert main(["validate", str(root_file)]) == 0
    assert main(["validate", str(root_file.parent / "head.usdz")]) == 0
    capsys.readouterr()
    (root_file.parent / "textures" / "albedo.png").unlink()
    layer = Sdf.Layer.FindOrOpen(str(root_file))
    info = dict(layer.GetPrimAtPath("/head").assetInfo)
    topos = dict(info.pop("topos"))
    del topos["topologyId"]
    layer.GetPrimAtPath("/head").SetInfo("assetInfo", dict(info, topos=topos))
    layer.Save()
    del layer
    assert main(["validate", str(root_file)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert any("albedo.png" in line for line in lines)
    assert any("topos:topologyId" in line for line in lines)
    assert len(lines) >= 2


def test_validate_missing_path_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "topos_sdk", "validate", str(tmp_path / "nothing")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "no such asset" in proc.stderr
