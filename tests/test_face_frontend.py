"""Face front-end: decoding (formats, EXIF, bit depths, bad input), BlazeFace + FaceMesh landmarks
with LiteRT against the original MediaPipe pipeline's output on skimage's astronaut."""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from topos_sdk.errors import InvalidInputError, NoFaceFound

skimage_data = pytest.importorskip("skimage.data")

from topos_server.face import FaceLandmarker, decode_image, load_image  # noqa: E402
from topos_server.face.detection import FULL_RANGE, SHORT_RANGE, ssd_anchor_centers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURE = SHARED / "fixtures" / "astronaut_facemesh468.json"


def _model_dir() -> Path | None:
    """The asset cache's MediaPipe folder when populated (CI runs `topos assets import`), else ../shared."""
    try:
        from topos_server.assets.cache import AssetCache

        return AssetCache.default().facemesh_file("face_landmark.tflite").parent
    except Exception:
        fallback = SHARED / "mediapipe"
        return fallback if (fallback / "face_landmark.tflite").is_file() else None


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    model_dir = _model_dir()
    if model_dir is None:
        pytest.skip("MediaPipe models neither in the asset cache nor in ../shared/mediapipe")
    return FaceLandmarker(model_dir=model_dir)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} missing")
    fixture = json.loads(FIXTURE.read_text())
    assert fixture["size_wh"] == [512, 512]
    return np.asarray(fixture["landmarks"], dtype=np.float32)  # (468, 3)


def _encode(array_or_image, fmt: str, **options) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _mean_xy_distance(points: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(points[:, :2] - reference[:, :2], axis=1).mean())


def _png_header(width: int, height: int) -> bytes:
    """A PNG that is nothing but its signature, an IHDR claiming width×height, and IEND."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ---- MediaPipe reproduction ------------------------------------------------------------------


def test_anchor_layout_matches_mediapipe_options():
    short = ssd_anchor_centers(SHORT_RANGE)
    full = ssd_anchor_centers(FULL_RANGE)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # stride 8: 16×16 cells, 2 anchors each; the three stride-16 layers share 8×8 cells, 6 each
    assert np.allclose(short[0], short[1]) and np.allclose(short[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(short[512:518], [0.5 / 8, 0.5 / 8])
    assert np.allclose(short[-1], [7.5 / 8, 7.5 / 8])
    assert np.allclose(full[1], [1.5 / 48, 0.5 / 48])  # x runs fastest


def test_astronaut_landmarks_match_mediapipe(landmarker, astronaut, reference):
    result = landmarker.detect(astronaut)
    assert result.points.shape == (468, 3) and result.points.dtype == np.float32
    assert result.face_count == 1 and result.detection.detector == "short_range"
    assert result.score > 0.5 and result.presence > 0.5
    error = _mean_xy_distance(result.points, reference)
    assert error <= 1.0, f"mean landmark distance {error:.3f} px to MediaPipe's output"
    # relative depth in MediaPipe's convention (pixels, like x): same values, not just same sign
    assert np.abs(result.points[:, 2] - reference[:, 2]).mean() <= 1.0
    x0, y0, x1, y1 = result.box
    assert x0 < result.points[:, 0].mean() < x1 and y0 < result.points[:, 1].mean() < y1


def test_single_pass_roi_is_what_static_mode_outputs(landmarker, astronaut, reference):
    """The landmarks→ROI second pass is MediaPipe's *tracking* crop; static mode does not use it."""
    two_pass = FaceLandmarker(model_dir=_model_dir(), refine_roi=True).detect(astronaut)
    single = _mean_xy_distance(landmarker.detect(astronaut).points, reference)
    refined = _mean_xy_distance(two_pass.points, reference)
    assert single < refined < 3.0  # both are good landmarks, the single pass is the reproduction


def test_concurrent_detection_gives_identical_results(landmarker, astronaut):
    expected = landmarker.detect(astronaut).points
    results: list[np.ndarray] = []

    def work():
        for _ in range(3):
            results.append(landmarker.detect(astronaut).points)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12
    assert all(np.array_equal(points, expected) for points in results)


# ---- inputs that still hold the face ----------------------------------------------------------


def test_exif_rotated_jpeg_is_turned_upright(landmarker, astronaut, reference):
    upright = landmarker.detect(_encode(astronaut, "JPEG", quality=95)).points
    # pixels stored turned 90° anticlockwise; Orientation 6 tells viewers to turn them clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = _encode(np.ascontiguousarray(np.rot90(astronaut)), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(stored)
    assert decoded.pixels.shape == (512, 512, 3) and decoded.original_size == (512, 512)
    rotated = landmarker.detect(stored)
    assert rotated.face_count == 1
    assert _mean_xy_distance(rotated.points, upright) <= 1.0
    assert _mean_xy_distance(rotated.points, reference) <= 1.5
    # the file really stores the sideways pixels; only the tag makes them upright
    stored_pixels = np.asarray(Image.open(io.BytesIO(stored))).astype(int)
    assert np.abs(stored_pixels - np.rot90(astronaut)).mean() < 3
    assert np.abs(decoded.pixels.astype(int) - astronaut).mean() < 3


@pytest.mark.parametrize(
    "variant",
    ["gray8_jpeg", "gray16_png", "rgb16_png", "rgba_png", "palette_png", "cmyk_jpeg", "webp", "tiff", "gray16_array"],
)
def test_format_and_depth_variants_still_find_the_face(landmarker, astronaut, reference, variant):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    if variant == "gray8_jpeg":
        source = _encode(gray, "JPEG", quality=95)
    elif variant == "gray16_png":
        source = _encode(Image.fromarray(gray.astype(np.uint16) * 257), "PNG")
        assert Image.open(io.BytesIO(source)).mode.startswith("I")
    elif variant == "rgb16_png":
        ok, encoded = cv2.imencode(".png", astronaut[:, :, ::-1].astype(np.uint16) * 257)
        source = encoded.tobytes()
    elif variant == "rgba_png":
        alpha = np.full(astronaut.shape[:2], 255, np.uint8)
        alpha[:, :40] = 0  # a transparent strip composites to white
        source = _encode(np.dstack([astronaut, alpha]), "PNG")
    elif variant == "palette_png":
        source = _encode(Image.fromarray(astronaut).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    elif variant == "cmyk_jpeg":
        source = _encode(Image.fromarray(astronaut).convert("CMYK"), "JPEG", quality=95)
    elif variant == "webp":
        source = _encode(astronaut, "WEBP", quality=95)
    elif variant == "tiff":
        source = _encode(astronaut, "TIFF")
    else:
        source = gray.astype(np.uint16) * 257  # (H, W) uint16 array
    pixels = load_image(source)
    assert pixels.shape == (512, 512, 3) and pixels.dtype == np.uint8
    if variant == "rgba_png":
        assert (pixels[:, :40] == 255).all()
    if variant.startswith("gray"):
        assert np.abs(pixels[..., 0].astype(int) - gray).mean() <= 2  # JPEG noise at most
    result = landmarker.detect(source)
    assert result.face_count == 1
    # colour/precision losses move landmarks a little, never off the face
    assert _mean_xy_distance(result.points, reference) <= 3.0


def test_two_faces_pick_the_largest_and_count_both(landmarker, astronaut):
    head = astronaut[20:260, 110:350]  # (240, 240, 3)
    small = cv2.resize(head, None, fx=0.65, fy=0.65, interpolation=cv2.INTER_AREA)
    canvas = np.full((240, 40 + small.shape[1] + 40 + 240, 3), 90, np.uint8)
    canvas[40 : 40 + small.shape[0], 40 : 40 + small.shape[1]] = small  # small face on the left
    canvas[:, -240:] = head  # large face on the right
    result = landmarker.detect(canvas)
    assert result.face_count == 2
    assert result.points[:, 0].min() > canvas.shape[1] - 240  # all landmarks on the large face
    alone = landmarker.detect(np.ascontiguousarray(canvas[:, -240:])).points
    # same face, detected in a differently letterboxed image: a slightly different crop
    assert _mean_xy_distance(result.points - [canvas.shape[1] - 240, 0, 0], alone) < 1.5


def test_small_face_falls_back_to_the_full_range_detector(landmarker, astronaut, reference):
    canvas = np.full((1280, 1280, 3), 120, np.uint8)  # the astronaut's face is 1/13 of the width
    canvas[100:612, 200:712] = astronaut
    assert landmarker.short_range.detect(canvas) == []
    result = landmarker.detect(canvas)
    assert result.detection.detector == "full_range" and result.face_count == 1
    # a different (larger) detector box gives a slightly different crop, same face
    assert _mean_xy_distance(result.points - [200, 100, 0], reference) <= 3.0


def test_large_image_is_downscaled_and_keeps_its_scale(landmarker, astronaut, reference):
    big = cv2.resize(astronaut, (5120, 5120), interpolation=cv2.INTER_LINEAR)
    decoded = decode_image(_encode(big, "JPEG", quality=90), max_side=1024)
    assert decoded.pixels.shape == (1024, 1024, 3) and decoded.original_size == (5120, 5120)
    assert decoded.scale == pytest.approx(5.0)
    points = landmarker.detect(decoded.pixels).points
    in_file_pixels = decoded.to_original_pixels(points[:, :2])
    in_astronaut_pixels = (in_file_pixels + 0.5) / 10.0 - 0.5  # 5120 px = 10 × 512
    assert _mean_xy_distance(in_astronaut_pixels, reference) <= 1.5


# ---- no face, bad input --------------------------------------------------------------------


@pytest.mark.parametrize("scene", ["coffee", "flat"])
def test_no_face_raises_no_face_found(landmarker, scene):
    image = skimage_data.coffee() if scene == "coffee" else np.full((300, 400, 3), 128, np.uint8)
    with pytest.raises(NoFaceFound, match="no face"):
        landmarker.detect(image)


def _bad_inputs(tmp_path: Path, astronaut: np.ndarray) -> dict[str, object]:
    jpeg = _encode(astronaut, "JPEG", quality=90)
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("this is a text file, not a photo\n")
    return {
        "empty bytes": (b"", "empty"),
        "random bytes": (np.random.default_rng(7).bytes(4096), "not a readable image"),
        "truncated jpeg": (jpeg[: len(jpeg) // 3], "truncated or corrupt"),
        "text file": (text_file, "not a readable image"),
        "1x1 png": (_encode(np.zeros((1, 1, 3), np.uint8), "PNG"), "too small"),
        "tiny array": (np.zeros((8, 8, 3), np.uint8), "too small"),
        "directory": (tmp_path, "directory"),
        "missing path": (tmp_path / "nope.png", "no such file"),
        "eps (would run Ghostscript)": (_encode(astronaut[:64, :64], "EPS"), "not a readable image"),
        "wrong type": (12345, "unsupported image source"),
        "bad array shape": (np.zeros((64, 64, 5), np.uint8), "shape"),
        "nan array": (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
    }


def test_each_bad_input_is_one_clear_invalid_input_error(tmp_path, astronaut):
    for label, (source, fragment) in _bad_inputs(tmp_path, astronaut).items():
        with pytest.raises(InvalidInputError) as caught:
            load_image(source)
        message = str(caught.value)
        assert fragment in message, f"{label}: {message!r}"
        assert "\n" not in message and len(message) < 200, label


def test_bad_input_through_the_landmarker_is_invalid_input_not_no_face(landmarker):
    with pytest.raises(InvalidInputError) as caught:
        landmarker.detect(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    assert not isinstance(caught.value, NoFaceFound)


def test_decompression_bomb_header_fails_fast_without_decoding():
    bomb = _png_header(40000, 40000)
    assert len(bomb) < 64
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="1600 megapixels.*limit.*refused before decoding"):
        load_image(bomb)
    assert time.perf_counter() - start < 0.5
    # a header under Pillow's own guard but over a stricter per-call limit is refused by ours
    with pytest.raises(InvalidInputError, match="over the 1 megapixel limit"):
        load_image(_png_header(2000, 2000), max_pixels=1_000_000)
