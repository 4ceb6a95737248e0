"""``topos generate`` end to end: the README's main job, its outputs, and every bad input."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from topos_sdk.cli import main

skimage_data = pytest.importorskip("skimage.data")
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("heads")
    code = main(["generate", str(EXAMPLE), "-o", str(out), "--texture-size", "512", "--debug", "--usdz"])
    assert code == 0
    return out / "astronaut"


def test_asset_is_written_valid_and_textured(generated):
    from topos_sdk.usd import read_head_asset, validate_asset

    assert (generated / "astronaut.usda").is_file()
    assert (generated / "astronaut.usdz").is_file()
    assert validate_asset(generated / "astronaut.usda") == []
    head = read_head_asset(generated / "astronaut.usda")
    assert head.points.shape == (26719, 3)
    assert head.provenance.engine == "classic"
    for name in ("albedo", "normal", "roughness"):
        tiles = head.textures[name].tiles
        assert set(tiles) == {1001, 1002}
        assert all(img.shape[:2] == (512, 512) for img in tiles.values())
    assert (generated / "thumbnail.png").is_file()


def test_debug_overlay_and_landmarks(generated):
    overlay = np.asarray(Image.open(generated / "debug" / "overlay.png"))
    assert overlay.shape == (512, 512, 3)
    marks = json.loads((generated / "debug" / "landmarks.json").read_text())
    detected, fitted = np.array(marks["detected"]), np.array(marks["fitted"])
    assert detected.shape[0] == fitted.shape[0] >= 468
    assert np.linalg.norm(detected[:, :2] - fitted, axis=1).mean() < 5.0


def test_preview_renders_the_generated_asset(generated, tmp_path):
    out = tmp_path / "preview.png"
    assert main(["preview", str(generated / "astronaut.usda"), "-o", str(out), "--size", "128"]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape[0] == 128 and img.shape[1] == 3 * 128
    assert img.std() > 5


def test_existing_asset_is_not_overwritten_without_flag(generated, capsys):
    before = (generated / "geo.usdc").stat().st_mtime_ns
    code = main(["generate", str(EXAMPLE), "-o", str(generated.parent), "--texture-size", "512"])
    assert code == 1
    assert "already exists" in capsys.readouterr().err
    assert (generated / "geo.usdc").stat().st_mtime_ns == before


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _bad_inputs(folder: Path) -> dict[str, Path]:
    files = {
        "empty": b"",
        "random": np.random.default_rng(0).bytes(4096),
        "text": b"this is not an image\n",
        "bomb": _png_header_only(40000, 40000),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.png"
        paths[name].write_bytes(data)
    jpeg = folder / "full.jpg"
    Image.fromarray(skimage_data.astronaut()).save(jpeg, quality=90)
    paths["truncated"] = folder / "truncated.jpg"
    paths["truncated"].write_bytes(jpeg.read_bytes()[:3000])
    paths["tiny"] = folder / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(paths["tiny"])
    paths["noface"] = folder / "noface.png"
    Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(paths["noface"])
    paths["directory"] = folder / "a_folder"
    paths["directory"].mkdir()
    paths["missing"] = folder / "does_not_exist.jpg"
    return paths


def test_each_bad_input_gives_one_line_and_nonzero_exit(tmp_path, capsys):
    inputs = _bad_inputs(tmp_path)
    out = tmp_path / "out"
    for name, path in inputs.items():
        code = main(["generate", str(path), "-o", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0, name
        problem = [line for line in err if str(path) in line]
        assert len(problem) == 1, (name, err)
        assert "Traceback" not in "\n".join(err)
    assert [p.name for p in out.iterdir()] == []


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["generate", str(EXAMPLE), "-o", str(blocker / "heads")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "output folder" in err[0]


def test_batch_keeps_going_past_a_bad_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = tmp_path / "out"
    code = main(["generate", str(bad), str(EXAMPLE), "-o", str(out), "--texture-size", "512", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    summary = json.loads(captured.out)
    assert summary["written"] == 1 and summary["failed"] == 1
    assert (out / "astronaut" / "astronaut.usda").is_file()


def test_cli_process_prints_no_traceback(tmp_path):
    bad = tmp_path / "random.jpg"
    bad.write_bytes(os.urandom(1000))
    proc = subprocess.run([sys.executable, "-m", "topos_sdk", "generate", str(bad), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr
