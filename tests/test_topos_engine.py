"""The ``topos`` engine on a real portrait, in-process and through a real gRPC server on 127.0.0.1.

Uses the committed TOPOS-DiT when there is one, else an untrained tiny DiT for the installed VAE
(these tests are about the engine's plumbing, not the model's quality: bench/dit_eval.py measures that).
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from topos_sdk import InvalidInputError, NoFaceFound


@pytest.fixture(scope="module")
def dit_weights(tmp_path_factory):
    import torch

    from topos_server.engines.topos import DEFAULT_DIT_WEIGHTS
    from topos_server.models.dit import ToposDiT
    from topos_server.pipelines.head_latents import HeadLatents
    from topos_server.pipelines.head_latents import vae_fingerprint

    latents = HeadLatents.load()
    if (DEFAULT_DIT_WEIGHTS / "config.json").is_file():
        if ToposDiT.load_config(DEFAULT_DIT_WEIGHTS)["vae_id"] == vae_fingerprint(latents):
            return DEFAULT_DIT_WEIGHTS
    torch.manual_seed(0)
    length, channels = latents.latent_shape
    model = ToposDiT.from_size("tiny", vae_id=vae_fingerprint(latents), latent_tokens=length, latent_channels=channels)
    for p in model.parameters():  # a fresh adaLN-Zero model predicts zero velocity: give the seeds something to do
        p.data.add_(0.05 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("dit") / "tiny"
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def engine(dit_weights):
    from topos_server.engines.topos import ToposEngine

    return ToposEngine(weights=dit_weights)


@pytest.fixture(scope="module")
def portrait() -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return png.tobytes()


@pytest.fixture(scope="module")
def server(engine):
    from topos_server.serving.server import ServerConfig, start_in_thread

    config = ServerConfig(host="127.0.0.1", port=0, device="cpu", engines=["topos"], max_batch=4, max_batch_wait_s=0.5)
    with start_in_thread(config, engines={"topos": engine}) as srv:
        yield srv


def test_variants_share_what_the_photo_shows_and_differ_elsewhere(engine, portrait):
    from topos_server.engines.base import GenerateOptions

    heads = engine.generate_variants(portrait, GenerateOptions(seed=4, texture_size=512), 3)
    assert [h.provenance.seed for h in heads] == [4, 5, 6]
    assert all(h.provenance.engine == "topos" and h.provenance.extra["sampling_steps"] > 0 for h in heads)
    assert all(h.points.shape == (engine.topology.num_points, 3) and np.isfinite(h.points).all() for h in heads)
    assert np.abs(heads[0].points - heads[1].points).max() > 1e-4  # seeds differ
    assert heads[0].camera is not None and heads[0].textures and heads[0].expression_weights
    # one head of the batch equals the same seed generated alone
    alone = engine.generate([portrait], GenerateOptions(seed=5, texture_size=512))[0]
    np.testing.assert_allclose(alone.points, heads[1].points, rtol=0, atol=1e-5)
    # the fitted camera puts the posed head's landmarks on the photo
    assert heads[0].provenance.extra["fit_rms_px"] < 15.0


def test_bad_variant_counts_are_clear_errors(engine, portrait):
    from topos_server.engines.base import GenerateOptions

    for count in (0, 17, 2.5, True):
        with pytest.raises(InvalidInputError, match="variants must be an integer"):
            engine.generate_variants(portrait, GenerateOptions(), count)


def test_grpc_equals_in_process_and_lists_the_engine(server, engine, portrait):
    from topos_server.engines.base import GenerateOptions

    from topos_sdk.client import Client

    with Client(server.address, retries=0, timeout=300) as client:
        info = client.server_info()
        remote = client.generate(portrait, seed=11, engine="topos", texture_size=512)
    assert [e["name"] for e in info["engines"]] == ["topos"] and info["engines"][0]["max_batch_size"] == 4
    local = engine.generate([portrait], GenerateOptions(seed=11, texture_size=512))[0]
    np.testing.assert_allclose(remote.points, local.points, rtol=0, atol=1e-5)
    assert remote.provenance.engine == "topos" and remote.provenance.seed == 11
    assert remote.differences(local, atol=1e-5) == []


def test_requests_with_different_seeds_are_batched_and_stay_per_seed(server, engine, portrait):
    from concurrent.futures import ThreadPoolExecutor

    from topos_server.engines.base import GenerateOptions

    from topos_sdk.client import Client

    registry = server.server.metrics.registry

    def calls_and_images():
        return (registry.get_sample_value("topos_batch_size_count") or 0, registry.get_sample_value("topos_batch_size_sum") or 0)

    calls_before, images_before = calls_and_images()
    with Client(server.address, retries=0, timeout=300) as client, ThreadPoolExecutor(3) as pool:
        heads = list(pool.map(lambda s: client.generate(portrait, seed=s, engine="topos", texture_size=512), (1, 2, 3)))
    for seed, head in zip((1, 2, 3), heads):
        local = engine.generate([portrait], GenerateOptions(seed=seed, texture_size=512))[0]
        np.testing.assert_allclose(head.points, local.points, rtol=0, atol=1e-5)
    calls, images = calls_and_images()
    assert images - images_before == 3 and calls - calls_before < 3  # at least two of the three shared a DiT call


@pytest.mark.parametrize("image, error, words", [
    (b"", InvalidInputError, "empty"),
    (np.random.default_rng(0).bytes(5000), InvalidInputError, "not a readable"),
    ("flat", NoFaceFound, "no face"),
], ids=["empty", "random-bytes", "no-face"])
def test_bad_images_get_the_classic_engine_statuses(server, image, error, words):
    import cv2

    from topos_sdk.client import Client

    if image == "flat":
        image = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    with Client(server.address, retries=0, timeout=120) as client:
        with pytest.raises(error, match=words) as caught:
            client.generate(image, seed=1, engine="topos", texture_size=512)
    assert caught.value.code == "INVALID_ARGUMENT" and type(caught.value) is error


def test_cli_variants_write_one_asset_per_seed(tmp_path, dit_weights, monkeypatch, portrait):
    from topos_sdk.cli import main
    from topos_sdk.usd import read_head_asset, validate_asset

    monkeypatch.setenv("TOPOS_DIT_WEIGHTS", str(dit_weights))
    (tmp_path / "astronaut.png").write_bytes(portrait)
    args = ["generate", str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "out"), "--engine", "topos",
            "--texture-size", "512", "--seed", "7", "--variants", "2"]
    assert main(args) == 0
    assets = sorted(a for a in (tmp_path / "out").glob("*/*.usda") if a.stem == a.parent.name)
    assert [a.parent.name for a in assets] == ["astronaut_seed7", "astronaut_seed8"]
    for asset in assets:
        assert validate_asset(asset) == []
    a, b = (read_head_asset(asset) for asset in assets)
    assert a.provenance.seed == 7 and b.provenance.seed == 8 and np.abs(a.points - b.points).max() > 1e-4
    assert main(args) == 1  # taken: nothing overwritten without --overwrite
    assert main([*args[:-2], "--variants", "40"]) == 1
