"""Group photos (which face, ``--face INDEX|all``, ``--list-faces``) and finite float options, through
the face front-end, the CLI and a real gRPC server on 127.0.0.1 running the classic engine.

The composite is made at test time from skimage's astronaut and two public-domain congress portraits
(``/work/shared/portraits``; never committed)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image

from topos_sdk import InvalidInputError
from topos_sdk._proto.v1 import topos_pb2 as pb
from topos_sdk._proto.v1 import topos_pb2_grpc as pb_grpc
from topos_sdk.cli import main

skimage_data = pytest.importorskip("skimage.data")
PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "portraits" / "us-congress-pd"
needs_portraits = pytest.mark.skipif(not PORTRAITS.is_dir(), reason="the shared congress portraits are not here")


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def portrait(bioguide_id: str, scale: float) -> np.ndarray:
    pixels = np.asarray(Image.open(PORTRAITS / f"{bioguide_id}.jpg").convert("RGB"))
    return cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def paste(canvas: np.ndarray, picture: np.ndarray, x: int, y: int) -> None:
    canvas[y:y + picture.shape[0], x:x + picture.shape[1]] = picture


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    """(560, 1000, 3): a small portrait, the astronaut's face large in the middle, a smaller portrait."""
    canvas = np.full((560, 1000, 3), 110, np.uint8)
    paste(canvas, portrait("A000055", 0.8), 20, 60)
    astronaut = cv2.resize(skimage_data.astronaut()[0:300, 100:400], None, fx=1.6, fy=1.6)  # face ≈ 180 px
    paste(canvas, astronaut[:480], 330, 40)
    paste(canvas, portrait("A000014", 0.65), 830, 300)
    return canvas


@pytest.fixture(scope="module")
def landmarker():
    from topos_server.face import FaceLandmarker

    return FaceLandmarker()


@needs_portraits
def test_every_face_is_listed_left_to_right_and_the_largest_frontal_one_is_chosen(landmarker, group):
    faces = landmarker.list_faces(group)
    assert len(faces.faces) == 3
    centres = [(f.box[0] + f.box[2]) / 2 for f in faces.faces]
    assert centres == sorted(centres)
    assert faces.chosen_index == 1 and 330 < centres[1] < 810  # the astronaut
    assert all(f.visible_fraction == 1.0 and abs(f.yaw_deg) < 30 for f in faces.faces)
    chosen = landmarker.detect(group)
    assert chosen.face_index == 1 and chosen.face_count == 3
    assert 330 < chosen.points[:, 0].mean() < 810
    right = landmarker.detect(group, face_index=2)
    assert right.points[:, 0].min() > 800
    with pytest.raises(InvalidInputError, match="face 3 asked for, but the image has 3 face"):
        landmarker.detect(group, face_index=3)


@needs_portraits
def test_a_face_cut_by_the_border_loses_to_a_whole_face_of_about_its_size(landmarker):
    canvas = np.full((358, 700, 3), 110, np.uint8)
    big = portrait("A000109", 1.3)  # (358, 292): its face ≈ 190 px, a quarter of it outside the image on the left
    canvas[:, :big.shape[1] - 100] = big[:, 100:]
    paste(canvas, portrait("A000357", 1.5)[:358], 340, 0)
    faces = landmarker.list_faces(canvas)
    assert len(faces.faces) == 2
    cut, whole = faces.faces
    assert cut.visible_fraction < 0.85 and whole.visible_fraction == 1.0
    assert faces.chosen_index == 1


def test_yaw_estimate_turns_sign_with_a_mirrored_photo(landmarker):
    from topos_server.face.face_choice import estimate_yaw_deg

    pixels = skimage_data.astronaut()
    yaw = estimate_yaw_deg(landmarker.detect(pixels).points)
    mirrored = estimate_yaw_deg(landmarker.detect(np.ascontiguousarray(pixels[:, ::-1])).points)
    assert abs(yaw + mirrored) < 3.0


# ---- CLI -----------------------------------------------------------------------------------------

@needs_portraits
def test_cli_list_faces_reports_all_and_writes_an_overlay(group, tmp_path, capsys):
    (tmp_path / "group.png").write_bytes(png(group))
    assert main(["generate", str(tmp_path / "group.png"), "-o", str(tmp_path / "out"), "--list-faces", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["images"][0]
    assert [f["index"] for f in listing["faces"]] == [0, 1, 2] and listing["chosen_index"] == 1
    overlay = np.asarray(Image.open(listing["overlay"]))
    assert overlay.shape == group.shape and not np.array_equal(overlay, group)
    assert not (tmp_path / "out" / "group").exists()  # listing writes no asset


@needs_portraits
def test_cli_face_all_writes_one_valid_asset_per_face(group, tmp_path, capsys):
    from topos_sdk.usd import read_head_asset, validate_asset

    (tmp_path / "group.png").write_bytes(png(group))
    out = tmp_path / "out"
    assert main(["generate", str(tmp_path / "group.png"), "-o", str(out), "--face", "all", "--name", "crew",
                 "--texture-size", "512"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and "face 1 of 3" in printed[1]
    heads = []
    for index in range(3):
        usda = out / f"crew_face{index}" / f"crew_face{index}.usda"
        assert validate_asset(usda) == []
        head = read_head_asset(usda)
        assert head.provenance.extra["face"]["index"] == index
        heads.append(head.points)
    assert not np.allclose(heads[0], heads[1], atol=1e-3)  # three different people


@pytest.mark.parametrize("argv, words", [
    (["--focal-length", "inf"], "--focal-length must be a finite number, got inf"),
    (["--focal-length", "nan"], "--focal-length must be a finite number, got nan"),
    (["--focal-length", "-5"], "focal length must be a finite number of pixels in [1, 1e+06], got -5.0"),
    (["--focal-length", "1e300"], "focal length must be a finite number of pixels"),
    (["--face", "-1"], "face index must be 0 or more"),
    (["--face", "left"], "expected a face index (0, 1, …) or `all`"),
    (["--same-person"], "--same-person makes one asset from all the photos: name it with --name NAME"),
], ids=["inf", "nan", "negative", "huge", "negative-face", "face-word", "same-person-unnamed"])
def test_cli_bad_options_give_one_line(tmp_path, capsys, argv, words):
    image = tmp_path / "a.png"
    image.write_bytes(png(skimage_data.astronaut()))
    try:
        code = main(["generate", str(image), "-o", str(tmp_path / "out"), *argv])
    except SystemExit as exit_:  # argparse rejects a malformed value itself
        code = exit_.code
    assert code != 0
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_every_float_option_of_every_command_refuses_non_finite_values(capsys):
    from topos_sdk.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # name → sub-parser
    float_options = [(name, action.option_strings[0]) for name, sub in commands.items() for action in sub._actions
                     if action.type is float]
    assert len(float_options) >= 4
    required = {"generate": ["IMG", "-o", "OUT"], "train": ["vae", "--out", "OUT"], "convert": ["IN", "-o", "OUT"]}
    for command, option in float_options:
        for value in ("inf", "-inf", "nan"):
            assert main([command, *required.get(command, []), f"{option}={value}"]) == 2, (command, option)
            assert f"{option} must be a finite number" in capsys.readouterr().err


# ---- gRPC ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    from topos_server.serving.server import ServerConfig, start_in_thread

    with start_in_thread(ServerConfig(host="127.0.0.1", port=0, device="cpu", engines=["classic"])) as srv:
        yield srv


@pytest.mark.parametrize("focal", [math.inf, -math.inf, math.nan, -3.0, 0.25, 1e300])
def test_grpc_non_finite_or_out_of_range_focal_length_is_invalid_argument(server, focal):
    request = pb.GenerateRequest(encoded_image=png(skimage_data.astronaut()), focal_length_px=focal, texture_size=512)
    with grpc.insecure_channel(server.address) as channel:  # a raw stub: the SDK client would refuse first
        with pytest.raises(grpc.RpcError) as caught:
            list(pb_grpc.HeadGeneratorStub(channel).Generate(request, timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "focal length must be a finite number of pixels in [1, 1e+06]" in caught.value.details()


def test_sdk_client_refuses_non_finite_focal_length_before_sending(server):
    from topos_sdk.client import Client

    with Client(server.address, retries=0) as client:
        with pytest.raises(InvalidInputError, match="focal length must be a finite number"):
            client.generate(png(skimage_data.astronaut()), focal_length_px=math.inf)


@needs_portraits
def test_grpc_list_faces_and_face_index(server, group):
    from topos_sdk.client import Client

    with Client(server.address, retries=0, timeout=300) as client:
        faces = client.list_faces(group)
        assert len(faces.faces) == 3 and faces.chosen_index == 1 and faces.image_size == (1000, 560)
        default = client.generate(png(group), texture_size=512)
        assert default.provenance.extra["face"]["index"] == 1
        assert default.provenance.extra["face"]["chosen_by"].startswith("largest, most frontal")
        right = client.generate(png(group), texture_size=512, face_index=2)
        assert right.provenance.extra["face"]["index"] == 2
        with pytest.raises(InvalidInputError, match="face 5 asked for, but the image has 3") as caught:
            client.generate(png(group), texture_size=512, face_index=5)
        assert caught.value.code == "INVALID_ARGUMENT"
        with pytest.raises(InvalidInputError, match="the image is empty"):
            client.list_faces(b"")
