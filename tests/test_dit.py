"""TOPOS-DiT: a tiny model trains (loss drops), samples deterministically per seed, saves and loads exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def latents():
    from topos_server.pipelines.head_latents import HeadLatents

    return HeadLatents.load()


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory, head_model, topology):
    """One shard of 24 pairs: ICT identity heads, their MediaPipe landmarks seen from the front through a
    pinhole (x, y px + depth), and a crop whose colour follows the head's width (a learnable signal)."""
    rng = np.random.default_rng(7)
    count = 24
    identity = rng.normal(0, 1, (count, head_model.identity_basis.shape[0])).astype(np.float32)
    heads = (head_model.neutral.numpy() + np.einsum("bi,inx->bnx", identity, head_model.identity_basis.numpy()))
    landmark_points = np.stack([topology.landmarks["mediapipe"].evaluate(h) for h in heads])  # (B, 478, 3) cm
    focal, distance = 800.0, 60.0
    depth = distance - landmark_points[..., 2]
    pixels = np.stack([128 + focal * landmark_points[..., 0] / depth, 128 - focal * landmark_points[..., 1] / depth,
                       -focal * landmark_points[..., 2] / distance], axis=-1).astype(np.float32)
    width = np.ptp(heads[:, :, 0], axis=1)
    shade = np.clip((width - width.min()) / np.ptp(width) * 255, 0, 255).astype(np.uint8)
    crops = np.broadcast_to(shade[:, None, None, None], (count, 96, 96, 3)).copy()
    folder = tmp_path_factory.mktemp("pairs")
    classic_identity = identity + rng.normal(0, 0.3, identity.shape).astype(np.float32)  # a fit's estimate
    np.savez(folder / "shard_00000.npz", crop=crops, landmarks=pixels, neutral=heads.astype(np.float16),
             classic_identity=classic_identity)
    return folder


def test_tiny_dit_trains_and_its_loss_drops(pair_folder, latents, tmp_path):
    from topos_server.training.dit import DiTTrainingConfig, train

    config = DiTTrainingConfig(size="tiny", pairs=[str(pair_folder)], eval_pairs=str(pair_folder), steps=120,
                               batch_size=16, learning_rate=2e-3, warmup_steps=5, eval_every=120, eval_samples=8)
    record = train(config, tmp_path / "run", latents=latents, device="cpu")
    log = [json.loads(line) for line in (tmp_path / "run" / "training_log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in log[:10]]), np.mean([r["loss"] for r in log[-10:]])
    assert last < 0.85 * first, (first, last)
    assert record["step"] == 120
    assert np.isfinite(record["eval_skin_error_mm"]) and record["eval_vae_floor_mm"] < record["eval_skin_error_mm"] + 50
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    # the latents were cached under the VAE's fingerprint and are reused
    cached = list((pair_folder / "latents").rglob("shard_00000.npy"))
    assert len(cached) == 1 and cached[0].parent.name == record_fingerprint(latents) + "-vertices"

    # resume continues from the checkpoint's step
    config.steps = 125
    resumed = train(config, tmp_path / "run", resume=True, latents=latents, device="cpu")
    assert resumed["step"] == 125


def test_identity_conditioned_dit_trains_and_needs_the_identity(pair_folder, latents, tmp_path):
    from topos_server.models.dit import ToposDiT
    from topos_server.pipelines.head_generation import SamplingOptions, sample_latents
    from topos_server.training.dit import DiTTrainingConfig, PairLatents, train

    config = DiTTrainingConfig(size="tiny", pairs=[str(pair_folder)], steps=30, batch_size=8, learning_rate=2e-3,
                               warmup_steps=5, eval_every=30, identity_condition=100, mirror=False)
    train(config, tmp_path / "run", latents=latents, device="cpu")
    model = ToposDiT.from_pretrained(tmp_path / "run" / "model", low_cpu_mem_usage=False)
    assert model.config.identity_condition == 100
    batch = PairLatents([pair_folder], latents).batch([0, 1])
    out = sample_latents(model, batch["landmarks"], batch["crop"], [0, 1], SamplingOptions(steps=2), batch["identity"])
    assert out.shape == (2, *latents.latent_shape) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="pass identity"):
        sample_latents(model, batch["landmarks"], batch["crop"], [0, 1], SamplingOptions(steps=2))


def test_a_mirrored_pair_is_the_mirror_image_of_head_and_condition(pair_folder, latents, topology):
    from topos_server.training.dit import HeadMirror, PairLatents

    mirror = HeadMirror(topology)
    pairs = PairLatents([pair_folder], latents, mirror=mirror)
    plain = pairs.batch([0, 1])
    flipped = pairs.batch([0, 1], torch.tensor([True, False]))
    # the second pair is untouched; the first one's crop is flipped and its landmarks mirrored + relabelled
    for key in ("landmarks", "crop", "latent"):
        torch.testing.assert_close(flipped[key][1], plain[key][1], rtol=0, atol=0)
    torch.testing.assert_close(flipped["crop"][0], plain["crop"][0].flip(-1), rtol=0, atol=0)
    left_eye, right_eye = 33, 263  # outer corners of the subject's right / left eye
    assert torch.allclose(flipped["landmarks"][0, left_eye, 0], -plain["landmarks"][0, right_eye, 0])
    # mirroring twice is the identity; the mirrored latent decodes to the mirrored head
    head = latents.topology.rest_points[None].astype(np.float32)
    np.testing.assert_allclose(mirror.heads(mirror.heads(head)), head, atol=1e-6)
    decoded = latents.decode(flipped["latent"][:1]).numpy()
    truth = mirror.heads(latents.decode(plain["latent"][:1]).numpy())
    skin = latents.skin_vertex_count
    assert 10 * np.linalg.norm(decoded[0, :skin] - truth[0, :skin], axis=1).mean() < 3.0  # mm: the VAE's floor


def record_fingerprint(latents) -> str:
    from topos_server.pipelines.head_latents import vae_fingerprint

    return vae_fingerprint(latents)


def test_sampling_is_deterministic_per_seed_and_independent_of_batch_mates(pair_folder, latents):
    from topos_server.models.dit import ToposDiT
    from topos_server.pipelines.head_generation import SamplingOptions, sample_latents
    from topos_server.training.dit import PairLatents

    torch.manual_seed(0)
    model = ToposDiT.from_size("tiny")
    for p in model.parameters():  # a fresh model predicts zero velocity (adaLN-Zero): give it some
        p.data.add_(0.05 * torch.randn_like(p))
    pairs = PairLatents([pair_folder], latents)
    batch = pairs.batch([0, 1, 2])
    options = SamplingOptions(steps=4, guidance=2.0)
    a = sample_latents(model, batch["landmarks"], batch["crop"], [5, 6, 7], options)
    b = sample_latents(model, batch["landmarks"], batch["crop"], [5, 6, 7], options)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    alone = sample_latents(model, batch["landmarks"][1:2], batch["crop"][1:2], [6], options)
    torch.testing.assert_close(alone[0], a[1], rtol=1e-5, atol=1e-5)
    other_seed = sample_latents(model, batch["landmarks"][1:2], batch["crop"][1:2], [99], options)
    assert (other_seed[0] - a[1]).abs().max() > 1e-2


def test_save_and_load_are_exact(tmp_path, pair_folder, latents):
    from topos_server.models.dit import ToposDiT
    from topos_server.training.dit import PairLatents

    torch.manual_seed(1)
    length, channels = latents.latent_shape
    model = ToposDiT.from_size("tiny", vae_id="abc", latent_tokens=length, latent_channels=channels)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    pairs = PairLatents([pair_folder], latents)
    model.set_latent_statistics(pairs.latents)
    model.save_pretrained(tmp_path / "dit", safe_serialization=True)
    loaded = ToposDiT.from_pretrained(tmp_path / "dit", low_cpu_mem_usage=False)
    assert loaded.config.vae_id == "abc" and loaded.config.size_name == "tiny"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    batch = pairs.batch([0, 1])
    sigma = torch.tensor([0.3, 0.8])
    noisy = torch.randn(2, *latents.latent_shape)
    with torch.no_grad():
        expected = model(noisy, sigma, model.encode_condition(batch["landmarks"], batch["crop"]))
        got = loaded(noisy, sigma, loaded.encode_condition(batch["landmarks"], batch["crop"]))
    assert torch.equal(expected, got)


def test_bad_sizes_and_options_are_clear_errors():
    from topos_server.models.dit import ToposDiT
    from topos_server.pipelines.head_generation import SamplingOptions

    with pytest.raises(ValueError, match="unknown DiT size"):
        ToposDiT.from_size("huge")
    with pytest.raises(ValueError, match="multiple of 16"):
        ToposDiT.from_size("tiny", crop_size=90)
    with pytest.raises(ValueError, match="steps"):
        SamplingOptions(steps=0)
    with pytest.raises(ValueError, match="guidance"):
        SamplingOptions(guidance=float("nan"))


def test_train_dit_cli_reports_a_missing_pairs_folder(tmp_path, capsys):
    from topos_sdk.cli import main

    assert main(["train", "dit", "--pairs", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder" in err[0]


def test_studio_pairs_become_a_shard_the_trainer_reads(tmp_path, remeshed_head, latents):
    """A studio folder: a real portrait with a head mesh of another topology (a remeshed ICT head in mm),
    and a portrait with no face in it (skipped, said so); the shard holds the converted head."""
    import cv2
    import skimage.data
    from conftest import write_obj

    from topos_server.data.studio_pairs import studio_pair_shards
    from topos_server.training.dit import PairLatents

    folder = tmp_path / "studio"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    points, triangles, _ = remeshed_head
    write_obj(folder / "astronaut.obj", points, triangles)
    cv2.imwrite(str(folder / "wall.png"), np.full((64, 64, 3), 128, np.uint8))
    write_obj(folder / "wall.obj", points, triangles)
    (folder / "notes.txt").write_text("not a pair")

    lines = []
    shards = studio_pair_shards(folder, shards_root=tmp_path / "shards", progress=lines.append)
    assert any("skipped wall.png" in line for line in lines) and any("paired astronaut.png" in line for line in lines)
    with np.load(shards / "shard_00000.npz") as shard:
        assert shard["neutral"].shape == (1, latents.vae.config.num_vertices, 3)
        assert shard["crop"].shape == (1, 96, 96, 3) and shard["landmarks"].shape == (1, 478, 3)
        assert shard["classic_identity"].shape == (1, 100)
        # the converted head is the ICT rest head (in cm, reference frame) to within a few mm
        skin = latents.skin_vertex_count
        error_cm = np.linalg.norm(shard["neutral"][0, :skin].astype(np.float64)
                                  - latents.topology.rest_points[:skin], axis=1)
        assert np.median(error_cm) < 0.3
    assert len(PairLatents([shards], latents)) == 1
    # cached: a second call converts nothing
    again = []
    assert studio_pair_shards(folder, shards_root=tmp_path / "shards", progress=again.append) == shards
    assert again == []


def test_a_folder_without_pairs_is_a_clear_error(tmp_path):
    from topos_server.data.studio_pairs import studio_pairs

    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no pair shards and no"):
        studio_pairs(tmp_path)
