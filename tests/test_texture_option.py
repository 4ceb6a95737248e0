"""``--texture bake|learned`` end to end: options, the classic engine, the CLI's asset, and the gRPC path
(a real server on 127.0.0.1) against the in-process one. Portrait: `skimage.data.astronaut()`."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from topos_sdk import InvalidInputError
from topos_sdk._proto.v1 import topos_pb2 as pb
from topos_sdk._proto.v1 import topos_pb2_grpc as pb_grpc
from topos_sdk.client import Client

SIZE = 512


@pytest.fixture(scope="module")
def portrait() -> bytes:
    from test_grpc_server import PORTRAIT

    return PORTRAIT


@pytest.fixture(scope="module")
def local_learned(portrait):
    from topos_server.engines import GenerateOptions, shared_engine

    return shared_engine("classic").generate([portrait], GenerateOptions(seed=3, texture_size=SIZE,
                                                                         texture="learned"))[0]


@pytest.fixture(scope="module")
def server():
    from topos_server.serving.server import ServerConfig, start_in_thread

    with start_in_thread(ServerConfig(host="127.0.0.1", port=0, device="cpu", engines=["classic"])) as srv:
        yield srv


def test_options_default_to_the_bake_and_reject_unknown_modes():
    from topos_server.engines import GenerateOptions

    assert GenerateOptions().texture == "bake"
    with pytest.raises(InvalidInputError, match=r"texture must be one of \('bake', 'learned'\), got 'painted'"):
        GenerateOptions(texture="painted")


def test_same_person_views_are_completed_like_one_portrait(portrait):
    """Two photos of one person (the portrait and its mirror image): the merged bake, completed on the face tile;
    the geometry and the other tile as with the bake; what the photos saw well kept; deterministic per seed."""
    import cv2
    from topos_server.engines import GenerateOptions, shared_engine

    mirror = cv2.imencode(".png", cv2.flip(cv2.imdecode(np.frombuffer(portrait, np.uint8), cv2.IMREAD_COLOR), 1))[1]
    views = (portrait, mirror.tobytes())
    engine = shared_engine("classic")
    baked, learned, again = (engine.generate([views], GenerateOptions(seed=3, texture_size=SIZE, texture=texture))[0]
                             for texture in ("bake", "learned", "learned"))
    assert baked.provenance.extra["texture"] == "bake" and learned.provenance.extra["texture"] == "learned"
    assert "texture_learned" in learned.provenance.timings_s and learned.provenance.extra["same_person_views"] == 2
    np.testing.assert_array_equal(baked.points, learned.points)
    for name in ("albedo", "normal", "roughness"):
        assert not np.array_equal(baked.textures[name].tiles[1001], learned.textures[name].tiles[1001]), name
        np.testing.assert_array_equal(baked.textures[name].tiles[1002], learned.textures[name].tiles[1002])
        assert again.textures[name] == learned.textures[name], name
    # the front of the face, which both photos see squarely: the photos' colours stay (sRGB 0–255)
    albedo_bake = baked.textures["albedo"].tiles[1001].astype(np.float32)
    albedo_learned = learned.textures["albedo"].tiles[1001].astype(np.float32)
    centre = (slice(SIZE * 3 // 8, SIZE * 5 // 8), slice(SIZE * 3 // 8, SIZE * 5 // 8))
    assert np.median(np.abs(albedo_learned[centre] - albedo_bake[centre])) <= 2.0


def test_learned_differs_from_the_bake_on_the_face_tile_only(portrait, local_learned):
    from topos_server.engines import GenerateOptions, shared_engine

    baked = shared_engine("classic").generate([portrait], GenerateOptions(seed=3, texture_size=SIZE))[0]
    assert baked.provenance.extra["texture"] == "bake" and local_learned.provenance.extra["texture"] == "learned"
    assert "texture_learned" in local_learned.provenance.timings_s
    np.testing.assert_array_equal(baked.points, local_learned.points)  # the geometry does not depend on it
    for name in ("albedo", "normal", "roughness"):
        assert not np.array_equal(baked.textures[name].tiles[1001], local_learned.textures[name].tiles[1001]), name
        np.testing.assert_array_equal(baked.textures[name].tiles[1002], local_learned.textures[name].tiles[1002])


def test_grpc_learned_equals_in_process(server, portrait, local_learned):
    with Client(server.address, retries=0, timeout=300) as client:
        remote = client.generate(portrait, seed=3, engine="classic", texture_size=SIZE, texture="learned")
        with pytest.raises(InvalidInputError, match="texture must be one of"):  # the SDK checks before sending
            client.generate(portrait, texture="painted")
    assert remote.provenance.extra["texture"] == "learned"
    for name, texture in local_learned.textures.items():
        assert remote.textures[name] == texture, name  # every tile, bit for bit
    assert remote.differences(local_learned, atol=1e-5) == []

    with grpc.insecure_channel(server.address) as channel:  # a client that skips the SDK's check
        call = pb_grpc.HeadGeneratorStub(channel).Generate(
            pb.GenerateRequest(encoded_image=portrait, texture="painted"), timeout=60)
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "texture must be one of" in caught.value.details()


def test_cli_writes_a_valid_asset_that_round_trips(portrait, local_learned, tmp_path):
    from topos_sdk.cli import main
    from topos_sdk.usd import read_head_asset, validate_asset

    (tmp_path / "astronaut.png").write_bytes(portrait)
    assert main(["generate", str(tmp_path / "astronaut.png"), "-o", str(tmp_path), "--seed", "3",
                 "--texture-size", str(SIZE), "--texture", "learned"]) == 0
    usda = tmp_path / "astronaut" / "astronaut.usda"
    assert validate_asset(usda) == []
    back = read_head_asset(usda)
    for name, texture in local_learned.textures.items():
        assert back.textures[name] == texture, name
    assert back.provenance.extra["texture"] == "learned"


def test_learned_completes_a_bake_made_below_the_texture_size():
    """A 256² portrait fills less than 1024² texels: both modes bake at 512² and deliver 1024² maps; the learned
    completion works on the smaller bake and leaves the back of the head as the bake has it."""
    import cv2
    from skimage.data import astronaut
    from topos_server.engines import GenerateOptions, shared_engine

    small = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    engine = shared_engine("classic")
    baked, learned = (engine.generate([small], GenerateOptions(seed=3, texture_size=1024, texture=mode))[0]
                      for mode in ("bake", "learned"))
    for result in (baked, learned):
        assert result.provenance.extra["texture_bake_size"] == 512
        for name in ("albedo", "normal", "roughness"):
            assert all(tile.shape[:2] == (1024, 1024) for tile in result.textures[name].tiles.values()), name
    face = (baked.textures["albedo"].tiles[1001].astype(int), learned.textures["albedo"].tiles[1001].astype(int))
    assert 0 < np.abs(face[0] - face[1]).mean() < 10  # completed, not replaced
    np.testing.assert_array_equal(baked.textures["albedo"].tiles[1002], learned.textures["albedo"].tiles[1002])
