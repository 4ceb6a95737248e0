"""``topos assets``: importing into a temporary cache, idempotency, verification, clear errors, CLI."""

import lzma
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from topos_server.assets.cache import AssetCache, AssetsMissing
from topos_server.assets import importing as asset_import
from topos_server.assets.importing import (
    _shape_points,
    _split_vertex_block,
    fetch_assets,
    ict_source_files,
    import_assets,
    import_facemesh,
    import_ict,
)

import topos_sdk.cli as cli
from topos_sdk.errors import ToposError
from topos_sdk.obj_reader import read_obj

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ICT_SOURCE = SHARED / "ict-facekit"
FACEMESH_SOURCE = SHARED / "mediapipe"


def run_cli(monkeypatch, *argv) -> int:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["topos_sdk.cli.assets_cmd"])
    return cli.main(list(argv))


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def fake_ict_folder(tmp_path: Path, leave_out: str | None = None) -> Path:
    """A copy of the ICT checkout made of symlinks, optionally without one file."""
    root = tmp_path / "ict-facekit"
    (root / "FaceXModel").mkdir(parents=True)
    for path in [ICT_SOURCE / "LICENSE", ICT_SOURCE / "README.md", *(ICT_SOURCE / "FaceXModel").iterdir()]:
        rel = path.relative_to(ICT_SOURCE)
        if str(rel) != leave_out:
            (root / rel).symlink_to(path)
    return root


# ---- MediaPipe -----------------------------------------------------------------------------------
def test_facemesh_import_copies_verifies_and_is_idempotent(tmp_path):
    cache = AssetCache(tmp_path / "home")
    first = import_facemesh(FACEMESH_SOURCE, cache)
    assert first.action == "imported"
    for name in ("face_landmark.tflite", "face_detection_short_range.tflite", "canonical_face_model.obj", "LICENSE"):
        assert cache.facemesh_file(name).read_bytes() == (FACEMESH_SOURCE / name).read_bytes()
    assert "Apache License" in cache.facemesh_file("LICENSE").read_text()
    manifest = cache.manifest("facemesh")
    assert manifest["outputs"]["face_landmark.tflite"]["size"] == (FACEMESH_SOURCE / "face_landmark.tflite").stat().st_size
    assert cache.verify("facemesh").ok
    mtime = cache.manifest_path("facemesh").stat().st_mtime_ns
    second = import_facemesh(FACEMESH_SOURCE, cache)
    assert second.action == "up to date"
    assert cache.manifest_path("facemesh").stat().st_mtime_ns == mtime
    assert not leftovers(tmp_path)


def test_corrupt_file_is_reported_and_repaired(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    cache = AssetCache(home)
    import_facemesh(FACEMESH_SOURCE, cache)
    target = cache.facemesh_dir / "face_landmark.tflite"
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    status = cache.verify("facemesh")
    assert not status.ok and "face_landmark.tflite" in status.problems[0] and "sha256" in status.problems[0]
    assert run_cli(monkeypatch, "assets", "--home", str(home), "status") == 1
    out = capsys.readouterr().out
    assert "facemesh  corrupt" in out and "ict       missing" in out
    assert import_facemesh(FACEMESH_SOURCE, cache).action == "imported"
    assert cache.verify("facemesh").ok


def test_facemesh_errors_name_what_is_wrong(tmp_path):
    cache = AssetCache(tmp_path / "home")
    with pytest.raises(ToposError, match="not a MediaPipe FaceMesh folder"):
        import_facemesh(ICT_SOURCE, cache)
    partial = tmp_path / "mp"
    partial.mkdir()
    for path in FACEMESH_SOURCE.iterdir():
        if path.name != "face_landmark.tflite":
            (partial / path.name).symlink_to(path)
    with pytest.raises(ToposError, match=r"mp: missing face_landmark\.tflite$"):
        import_facemesh(partial, cache)
    with pytest.raises(ToposError, match="no such folder"):
        import_facemesh(tmp_path / "nowhere", cache)
    assert not (tmp_path / "home").exists()


def test_failed_import_leaves_the_previous_cache_intact(tmp_path, monkeypatch):
    cache = AssetCache(tmp_path / "home")
    import_facemesh(FACEMESH_SOURCE, cache)
    before = {p.name: p.read_bytes() for p in cache.facemesh_dir.iterdir()}
    copies = []
    real_copyfile = shutil.copyfile

    def failing_copy(src, dst, **kwargs):
        copies.append(src)
        if len(copies) == 3:
            raise OSError("disk full")
        return real_copyfile(src, dst, **kwargs)

    monkeypatch.setattr(asset_import.shutil, "copyfile", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        import_facemesh(FACEMESH_SOURCE, cache, force=True)
    assert {p.name: p.read_bytes() for p in cache.facemesh_dir.iterdir()} == before
    assert not leftovers(tmp_path)


# ---- ICT-FaceKit ---------------------------------------------------------------------------------
def test_ict_wrong_or_partial_folder(tmp_path):
    cache = AssetCache(tmp_path / "home")
    with pytest.raises(ToposError, match=r"mediapipe: not an ICT-FaceKit folder \(no FaceXModel/generic_neutral_mesh"):
        import_ict(FACEMESH_SOURCE, cache)
    partial = fake_ict_folder(tmp_path, leave_out="FaceXModel/identity042.obj.xz")
    with pytest.raises(ToposError, match=r"ict-facekit: missing FaceXModel/identity042\.obj\(\.xz\)$"):
        import_ict(partial, cache)
    (partial / "FaceXModel" / "jawOpen.obj.xz").unlink()
    (partial / "LICENSE").unlink()
    with pytest.raises(ToposError, match=r"missing LICENSE, FaceXModel/identity042\.obj\(\.xz\), FaceXModel/jawOpen"):
        import_assets(cache, ict=partial, facemesh=FACEMESH_SOURCE)
    assert not (tmp_path / "home").exists()  # validated before anything was written


def test_ict_source_accepts_plain_obj_and_the_facexmodel_folder(tmp_path):
    root = fake_ict_folder(tmp_path, leave_out="FaceXModel/generic_neutral_mesh.obj.xz")
    plain = root / "FaceXModel" / "generic_neutral_mesh.obj"
    plain.write_bytes(lzma.open(ICT_SOURCE / "FaceXModel" / "generic_neutral_mesh.obj.xz").read())
    found_root, files, arkit, extras = ict_source_files(root / "FaceXModel")
    assert found_root == root
    assert files["FaceXModel/generic_neutral_mesh.obj"] == plain
    assert len([k for k in files if "/identity" in k]) == 100 and len(arkit) == 53
    assert set(extras) == {"PupilDilate_L", "PupilDilate_R", "cheekRaiser_L", "cheekRaiser_R"}


def test_shape_reader_fast_path_and_fallbacks(tmp_path):
    neutral_xz = ICT_SOURCE / "FaceXModel" / "generic_neutral_mesh.obj.xz"
    neutral = read_obj(neutral_xz)
    import hashlib

    raw = lzma.open(neutral_xz).read()
    points, tail = _split_vertex_block(raw)
    np.testing.assert_array_equal(points.astype(np.float32), neutral.points)
    digest = hashlib.sha256(tail).digest()

    shape_raw = lzma.open(ICT_SOURCE / "FaceXModel" / "identity007.obj.xz").read()
    expected = read_obj(ICT_SOURCE / "FaceXModel" / "identity007.obj.xz").points
    plain = tmp_path / "identity007.obj"
    plain.write_bytes(shape_raw)
    np.testing.assert_array_equal(_shape_points(plain, digest, neutral).astype(np.float32), expected)

    # different layout (CRLF line ends): parsed fully, same points
    crlf = tmp_path / "crlf.obj"
    crlf.write_bytes(shape_raw.replace(b"\n", b"\r\n"))
    np.testing.assert_array_equal(_shape_points(crlf, digest, neutral).astype(np.float32), expected)

    # different connectivity: a clear error naming the file
    first_face = shape_raw.index(b"\nf ") + 1
    line_end = shape_raw.index(b"\n", first_face)
    broken = tmp_path / "broken.obj"
    broken.write_bytes(shape_raw[:first_face] + b"f 1/1 2/2 3/3 4/4" + shape_raw[line_end:])
    with pytest.raises(ToposError, match="broken.obj: its vertices or faces differ"):
        _shape_points(broken, digest, neutral)


def test_ict_import_is_idempotent(tmp_path):
    """A second import of the same source is "up to date" (the first one: the CI cache, or done here)."""
    cache = AssetCache(tmp_path / "home")
    default = AssetCache.default()
    manifest = default.manifest("ict")
    if manifest and Path(manifest["source"]) == ICT_SOURCE.resolve() and default.verify("ict").ok:
        shutil.copytree(default.ict_dir, cache.ict_dir)  # what `topos assets import` wrote in .ci/setup
    else:
        t0 = time.perf_counter()
        assert import_ict(ICT_SOURCE, cache).action == "imported"
        print(f"full ICT import: {time.perf_counter() - t0:.1f} s")
    assert cache.verify("ict").ok
    t0 = time.perf_counter()
    again = import_ict(ICT_SOURCE, cache)
    assert again.action == "up to date"
    assert time.perf_counter() - t0 < 5.0
    topology = cache.ict_topology()
    assert topology.num_points == 26719 and cache.head_model_file().stat().st_size > 40e6
    assert "MIT License" in (cache.ict_dir / "LICENSE").read_text()


# ---- cache lookups, CLI, fetch -------------------------------------------------------------------
def test_missing_assets_say_how_to_import(tmp_path, monkeypatch):
    monkeypatch.setenv("TOPOS_HOME", str(tmp_path / "env_home"))
    cache = AssetCache.default()
    assert cache.root == tmp_path / "env_home"
    for lookup in (cache.ict_topology, cache.head_model_file, lambda: cache.facemesh_file("face_landmark.tflite")):
        with pytest.raises(AssetsMissing, match="topos assets import"):
            lookup()
    with pytest.raises(ValueError):
        cache.facemesh_file("../ict/topology.npz")


def test_cli_exit_codes_and_messages(tmp_path, monkeypatch, capsys):
    home = str(tmp_path / "home")
    assert run_cli(monkeypatch, "assets", "--home", home, "import") == 2
    assert "give --ict PATH and/or --facemesh PATH" in capsys.readouterr().err
    assert run_cli(monkeypatch, "assets", "--home", home, "import", "--ict", str(tmp_path / "nowhere")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such folder" in err[0] and err[0].startswith("topos assets: error:")
    assert run_cli(monkeypatch, "assets", "--home", home, "status") == 1
    assert run_cli(monkeypatch, "assets", "--home", home, "import", "--facemesh", str(FACEMESH_SOURCE)) == 0
    assert "facemesh: imported" in capsys.readouterr().out
    assert run_cli(monkeypatch, "assets", "--home", home, "import", "--facemesh", str(FACEMESH_SOURCE)) == 0
    assert "facemesh: up to date" in capsys.readouterr().out
    assert run_cli(monkeypatch, "assets", "--home", home, "status", "--json") == 1  # ICT still missing
    out = capsys.readouterr().out
    assert '"ok": true' in out and '"ok": false' in out


def test_fetch_offline_fails_with_one_clear_line(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ToposError, match="no internet connection"):
        fetch_assets(AssetCache(tmp_path / "home"))
    assert run_cli(monkeypatch, "assets", "--home", str(tmp_path / "home"), "fetch") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "topos assets import" in err[0]
    assert not (tmp_path / "home").exists()
