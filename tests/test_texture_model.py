"""TOPOS-Texture: the model, its training pairs from real bakes, training, save/load, seeds, and the merge
that keeps what the photo saw. Real data: the classic engine's bakes of `skimage.data.astronaut()`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topos_server.data.texture_bank import BANK_FORMAT
from topos_server.models.texture_model import CONDITION_CHANNELS, TARGET_CHANNELS, ToposTextureModel

BAKE_SIZE = 128


@pytest.fixture(scope="module")
def engine():
    from topos_server.engines import shared_engine

    return shared_engine("classic")


@pytest.fixture(scope="module")
def astronaut_fit(engine):
    from skimage.data import astronaut

    result, _ = engine.fit_portrait(astronaut())
    return astronaut(), result


@pytest.fixture(scope="module")
def bank_records(engine, astronaut_fit):
    """Three bank-style records (tile 1001 at BAKE_SIZE²) baked from the astronaut, flipped and cropped."""
    from topos_server.data.texture_bank import bake_portrait

    image = astronaut_fit[0]
    views = [image, np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(image[40:, 30:])]
    return [{**bake_portrait(engine, view, BAKE_SIZE), "name": np.array(f"view{k}")} for k, view in enumerate(views)]


@pytest.fixture(scope="module")
def pairs(engine, bank_records):
    from topos_server.data.texture_pairs import TexturePairs, training_item, uv_geometry

    topology = engine.topology
    geometry = uv_geometry(topology, topology.rest_points, ToposTextureModel.from_size("tiny").config.resolution)
    items = [training_item(record, geometry) for record in bank_records]
    return TexturePairs(items, geometry, topology, seed=0, views_per_item=2)


def test_named_sizes_and_shapes():
    model = ToposTextureModel.from_size("tiny")
    r = model.config.resolution
    x0 = model(torch.zeros(2, len(TARGET_CHANNELS), r, r), torch.tensor([1.0, 0.5]),
               torch.zeros(2, len(CONDITION_CHANNELS), r, r))
    assert x0.shape == (2, len(TARGET_CHANNELS), r, r)
    small = ToposTextureModel.from_size("small")
    assert small.config.resolution == 64 and sum(p.numel() for p in small.parameters()) * 2 < 25e6  # fp16 in the repo
    with pytest.raises(ValueError, match="unknown texture model size"):
        ToposTextureModel.from_size("huge")


def test_an_untrained_model_returns_the_bakers_fill(pairs):
    """Zero-initialised output: x0 = the condition's fill, whatever the noise and the number of steps."""
    batch = pairs.batch(range(2))
    model = ToposTextureModel.from_size("tiny")
    x0 = model.sample(batch["condition"], steps=3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x0[:, :3], batch["condition"][:, 4:7], atol=1e-5, rtol=0)


def test_pairs_hide_observed_texels_and_weight_only_the_truth(pairs):
    example = pairs.example(5)
    seen = example["condition"][3]
    hidden, weight = example["hidden"], example["loss_weight"][0]
    assert hidden.max() > 0.5  # something observed was hidden from the input
    assert (weight[hidden > 0.5] > 1.0).all()  # and counts more in the loss
    assert np.all(weight[(seen == 0) & (hidden == 0)] == 0)  # never-observed texels carry no loss
    again = pairs.example(5)
    assert all(np.array_equal(example[k], again[k]) for k in example)  # a pure function of (seed, index)


def test_colour_augmentation_scales_truth_observation_and_fill_by_one_gain_per_channel(pairs):
    from topos_server.data.texture_pairs import TexturePairs, decode_albedo

    tinted = TexturePairs(pairs.items, pairs.geometry, pairs.topology, seed=0, views_per_item=2, colour_probability=1.0)
    tinted._views = pairs._views  # the same hidden views (a pure function of seed and view; made once)
    plain, example = pairs.example(5), tinted.example(5)
    fully_seen = plain["condition"][3] > 0.999  # (R, R) where the observed channels are the encoded colour itself
    gains = []
    for name, channels, where in (("target", slice(0, 3), True), ("observed", slice(0, 3), fully_seen),
                                  ("fill", slice(4, 7), True)):
        key = "target" if name == "target" else "condition"
        a, b = decode_albedo(plain[key][channels]), decode_albedo(example[key][channels])  # (3, R, R) linear
        usable = (a > 0.05) & (a < 0.5) & (b < 0.99) & where  # unclipped either way
        ratio = np.array([np.median(b[c][usable[c]] / a[c][usable[c]]) for c in range(3)])
        spread = max(np.abs(b[c][usable[c]] / a[c][usable[c]] - ratio[c]).max() for c in range(3))
        assert spread < 0.02, (name, spread)  # one gain per channel over the whole map
        gains.append(ratio)
    np.testing.assert_allclose(gains, np.broadcast_to(gains[0], (3, 3)), rtol=0.02)  # the same gain for all three
    assert np.abs(np.log(gains[0])).max() > 0.01  # and it did change the colour
    np.testing.assert_array_equal(plain["hidden"], example["hidden"])  # the hiding is the same
    with pytest.raises(ValueError, match="colour_probability"):
        TexturePairs(pairs.items, pairs.geometry, pairs.topology, colour_probability=1.5)


def test_bake_fill_keeps_seen_texels_and_uses_the_mirror_side(engine, bank_records):
    from topos_server.data.texture_pairs import bake_fill
    from topos_server.texture.bake import mirror_texel_map

    record = bank_records[0]
    observed = record["observed_albedo"].astype(np.float32).transpose(2, 0, 1)
    weight = record["observed_weight"].astype(np.float32)
    half = weight.copy()
    half[:, : BAKE_SIZE // 2] = 0.0  # the subject's right half of the tile hidden
    filled, coverage = bake_fill(observed * (half > 0), half, engine.topology)
    full = (half > 0.99)
    np.testing.assert_allclose(filled[:, full], observed[:, full], atol=1e-4)
    map_x, _ = mirror_texel_map(engine.topology, BAKE_SIZE, 1001)
    assert (map_x[:, : BAKE_SIZE // 2] > BAKE_SIZE // 2).mean() > 0.5  # left texels read the right side
    assert coverage[:, : BAKE_SIZE // 2].max() > 0.9  # the mirror side covers part of the hidden half


def test_tiny_model_trains_and_loss_drops(engine, bank_records, tmp_path):
    from topos_server.training.texture import TextureTrainingConfig, flow_matching_loss, train

    config = TextureTrainingConfig(size="tiny", steps=30, batch_size=4, crop=None, learning_rate=3e-3, warmup_steps=3,
                                   eval_every=30, checkpoint_every=30, validation_items=2, eval_examples=2,
                                   views_per_item=1)
    records = bank_records * 2  # 6 bakes: 4 train, 2 validation
    record = train(config, tmp_path, records, topology=engine.topology, device="cpu")
    assert record["step"] == 30 and "eval_l1_learned_1step" in record and "eval_l1_fill" in record
    model = ToposTextureModel.from_pretrained(tmp_path / "model")
    fresh = ToposTextureModel.from_size("tiny", topology_id=engine.topology.topology_id)
    from topos_server.data.texture_pairs import TexturePairs, training_item, uv_geometry

    geometry = uv_geometry(engine.topology, engine.topology.rest_points, model.config.resolution)
    # the first batches the run saw (items and views as train() makes them), at a fixed σ and noise
    pairs = TexturePairs([training_item(r, geometry) for r in records[:4]], geometry, engine.topology, seed=0,
                         views_per_item=1)
    batch = pairs.batch(range(8))
    gen = torch.Generator().manual_seed(0)
    sigma, noise = torch.full((8,), 0.75), torch.randn(batch["target"].shape, generator=gen)
    with torch.no_grad():
        before = float(flow_matching_loss(fresh, batch, sigma, noise, 0.1)["loss"])
        after = float(flow_matching_loss(model, batch, sigma, noise, 0.1)["loss"])
    assert after < 0.8 * before

    # resume continues from the checkpoint's step
    config.steps = 32
    assert train(config, tmp_path, records, resume=True, topology=engine.topology, device="cpu")["step"] == 32


def test_save_load_is_exact_and_sampling_is_deterministic_per_seed(pairs, tmp_path):
    model = ToposTextureModel.from_size("tiny", topology_id="t")
    with torch.no_grad():  # a non-trivial network: the zero-initialised output would hide differences
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    model.save_pretrained(tmp_path)
    loaded = ToposTextureModel.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    condition = pairs.batch(range(2))["condition"]
    first = model.sample(condition, 2, torch.Generator().manual_seed(3))
    assert torch.equal(first, loaded.sample(condition, 2, torch.Generator().manual_seed(3)))
    other = model.sample(condition, 2, torch.Generator().manual_seed(4))
    assert not torch.equal(first, other)


def test_complete_textures_keeps_the_observed_texels(engine, astronaut_fit):
    """The committed model on a real bake: where the photo saw the skin face-on, the learned albedo stays
    within a few percent of the bake (the model's de-lighting only moves low frequencies)."""
    from topos_server.texture.bake import bake_textures
    from topos_server.texture.learned import complete_textures
    from topos_server.texture.skin_lighting import srgb8_to_linear

    image, result = astronaut_fit
    diagnostics: dict = {}
    maps = bake_textures(image, result.posed_points(), result.camera, engine.topology, size=512,
                         diagnostics=diagnostics)
    assert complete_textures(maps, diagnostics, result.points, engine.topology, 512, seed=0, mode="bake") is maps
    learned = complete_textures(maps, diagnostics, result.points, engine.topology, 512, seed=0)
    again = complete_textures(maps, diagnostics, result.points, engine.topology, 512, seed=0)
    other_seed = complete_textures(maps, diagnostics, result.points, engine.topology, 512, seed=1)
    assert all(learned[k] == again[k] for k in learned)  # deterministic per seed
    assert learned.keys() == maps.keys() and learned["albedo"].tiles.keys() == maps["albedo"].tiles.keys()
    assert learned["albedo"].tiles[1002] is maps["albedo"].tiles[1002]  # the model completes the face tile only
    seen = diagnostics["coverage"][1001] > 0.99
    bake = srgb8_to_linear(maps["albedo"].tiles[1001])[seen]
    ours = srgb8_to_linear(learned["albedo"].tiles[1001])[seen]
    assert np.abs(ours - bake).mean() < 0.03
    assert np.corrcoef(np.diff(ours[:, 1]), np.diff(bake[:, 1]))[0, 1] > 0.9  # the photo's detail is kept
    unseen = diagnostics["coverage"][1001] < 0.01
    assert not np.array_equal(learned["albedo"].tiles[1001][unseen], other_seed["albedo"].tiles[1001][unseen])


def test_an_untrained_model_leaves_what_the_photo_saw_as_it_was(engine, astronaut_fit, monkeypatch):
    """The merge replaces only the bake's low frequencies by the model's: a zero-initialised model (whose
    output is its prior: the fill, moved only where it copied the mirror side) returns the bake wherever the
    photo saw, once no texel is taken out as teeth/hair/collar."""
    import cv2

    from topos_server.data import texture_pairs
    from topos_server.texture.bake import bake_textures
    from topos_server.texture.learned import complete_textures

    monkeypatch.setattr(texture_pairs, "skin_trust", lambda albedo, weight, geometry: np.ones_like(weight))
    image, result = astronaut_fit
    diagnostics: dict = {}
    maps = bake_textures(image, result.posed_points(), result.camera, engine.topology, size=256,
                         diagnostics=diagnostics)
    untrained = ToposTextureModel.from_size("tiny", topology_id=engine.topology.topology_id)
    learned = complete_textures(maps, diagnostics, result.points, engine.topology, 256, seed=0, model=untrained)
    difference = np.abs(learned["albedo"].tiles[1001].astype(int) - maps["albedo"].tiles[1001].astype(int)).max(axis=2)
    r = untrained.config.resolution
    seen = cv2.erode((diagnostics["coverage"][1001] > 0.999).astype(np.uint8), np.ones((2 * 256 // r + 1,) * 2))
    assert seen.mean() > 0.1  # a fifth of the tile: the face's front
    assert difference[seen > 0].max() <= 2  # 8-bit rounding, and texels seen at 99.9 % take 0.1 % of the prior's shift
    assert learned["albedo"].tiles[1001].shape == maps["albedo"].tiles[1001].shape


def test_the_prior_carries_the_seen_asymmetry_over_once(engine, astronaut_fit, monkeypatch):
    """The model's prior is the fill with the seen left/right difference carried over to the mirror side: added at
    R² to a default bake, taken as it is from a bake that did it (``mirror_asymmetry=True``). An untrained model
    (output = its prior) then returns the latter bake everywhere, and moves the default bake where it took the
    mirror side."""
    from topos_server.data import texture_pairs
    from topos_server.texture.bake import bake_textures
    from topos_server.texture.learned import complete_textures

    monkeypatch.setattr(texture_pairs, "skin_trust", lambda albedo, weight, geometry: np.ones_like(weight))
    image, result = astronaut_fit
    untrained = ToposTextureModel.from_size("tiny", topology_id=engine.topology.topology_id)
    moved = {}
    for asymmetry in (True, False):
        diagnostics: dict = {}
        maps = bake_textures(image, result.posed_points(), result.camera, engine.topology, size=256,
                             mirror_asymmetry=asymmetry, diagnostics=diagnostics)
        learned = complete_textures(maps, diagnostics, result.points, engine.topology, 256, seed=0, model=untrained)
        difference = np.abs(learned["albedo"].tiles[1001].astype(int) - maps["albedo"].tiles[1001].astype(int))
        from_mirror = diagnostics["coverage"][1001] - diagnostics["direct_weight"][1001] > 0.5  # (S, S)
        assert from_mirror.sum() > 1000
        moved[asymmetry] = float(difference.max(axis=2)[from_mirror].mean())
    assert moved[True] < 0.05 and moved[False] > 0.2, moved  # (8-bit levels, mean over the mirror side)


def test_bad_mode_and_missing_diagnostics_are_clear_errors(engine):
    from topos_sdk import InvalidInputError
    from topos_server.texture.learned import complete_textures

    with pytest.raises(InvalidInputError, match="texture must be one of"):
        complete_textures({}, {}, engine.topology.rest_points, engine.topology, 512, seed=0, mode="painted")
    with pytest.raises(InvalidInputError, match="diagnostics"):
        complete_textures({}, {}, engine.topology.rest_points, engine.topology, 512, seed=0,
                          model=ToposTextureModel.from_size("tiny"))


def test_view_pool_made_in_worker_processes_equals_the_lazy_one(pairs, engine):
    from topos_server.data.texture_pairs import TexturePairs

    parallel = TexturePairs(pairs.items, pairs.geometry, engine.topology, seed=0, views_per_item=2)
    parallel.prepare_views(workers=2)
    assert len(parallel._views) == parallel.pool_size == 6
    for view in range(parallel.pool_size):
        visible, fill = parallel.hidden_view(view)
        lazy_visible, lazy_fill = pairs.hidden_view(view)
        assert np.array_equal(visible, lazy_visible) and np.array_equal(fill, lazy_fill)


def test_a_mirrored_item_is_the_face_seen_from_the_other_side(pairs, engine):
    from topos_server.data.texture_pairs import mirrored_item
    from topos_server.texture.bake import mirror_texel_map

    item = pairs.items[0]
    flipped = mirrored_item(item, engine.topology)
    assert flipped.name == f"{item.name}~mirrored" and flipped.albedo.shape == item.albedo.shape
    r = item.weight.shape[0]
    map_x, map_y = mirror_texel_map(engine.topology, r, 1001)
    # a texel well inside what was seen takes its mirror point's colour (bilinear: compare with the nearest texel)
    rows, cols = np.nonzero(flipped.weight.astype(np.float32) > 0.99)
    source = (np.clip(np.rint(map_y[rows, cols]), 0, r - 1).astype(int), np.clip(np.rint(map_x[rows, cols]), 0, r - 1).astype(int))
    sure = item.weight.astype(np.float32)[source] > 0.99
    assert sure.sum() > 50
    difference = np.abs(flipped.albedo[:, rows[sure], cols[sure]].astype(np.float32)
                        - item.albedo[:, source[0][sure], source[1][sure]].astype(np.float32))
    assert np.median(difference) < 0.02
    # the subject's left side of the tile now holds what the right side saw, and the other way round
    half = r // 2
    seen, seen_flipped = item.weight.astype(np.float32), flipped.weight.astype(np.float32)
    assert abs(seen_flipped[:, :half].sum() - seen[:, half:].sum()) < 0.1 * seen.sum()


def test_batches_made_by_workers_are_the_same_batches(engine, bank_records, tmp_path):
    from topos_server.training.texture import TextureTrainingConfig, train

    config = TextureTrainingConfig(size="tiny", steps=3, batch_size=2, learning_rate=3e-3, warmup_steps=1,
                                   eval_every=3, checkpoint_every=3, validation_items=2, eval_examples=2,
                                   views_per_item=1, mirror_items=True)
    records = bank_records * 2
    serial = train(config, tmp_path / "serial", records, topology=engine.topology, device="cpu")
    config.workers = 2
    parallel = train(config, tmp_path / "parallel", records, topology=engine.topology, device="cpu")
    assert serial["step"] == parallel["step"] == 3
    assert serial["loss"] == parallel["loss"] and serial["eval_l1_learned_1step"] == parallel["eval_l1_learned_1step"]
    a = ToposTextureModel.from_pretrained(tmp_path / "serial" / "model")
    b = ToposTextureModel.from_pretrained(tmp_path / "parallel" / "model")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_numpy_network_is_the_torch_network(pairs):
    """--texture learned runs the weights through texture_model_numpy (no torch at inference): same x0 as the
    diffusers UNet on the committed weights and on a random model, and the same Euler steps as the scheduler."""
    from topos_server.models.texture_model_numpy import NumpyTextureModel
    from topos_server.texture.learned import WEIGHTS_DIR

    committed = ToposTextureModel.from_pretrained(WEIGHTS_DIR, low_cpu_mem_usage=False).float().eval()
    tiny = ToposTextureModel.from_size("tiny").eval()
    with torch.no_grad():  # non-trivial weights everywhere (the output layer starts at zero)
        for p in tiny.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    for model, numpy_model in ((committed, NumpyTextureModel.load(WEIGHTS_DIR)), (tiny, NumpyTextureModel.of(tiny))):
        r = model.config.resolution
        rng = np.random.default_rng(r)
        noisy = rng.standard_normal((2, len(TARGET_CHANNELS), r, r)).astype(np.float32)
        condition = rng.standard_normal((2, len(CONDITION_CHANNELS), r, r)).astype(np.float32)
        sigma = np.array([1.0, 0.3], np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(noisy), torch.from_numpy(sigma), torch.from_numpy(condition)).numpy()
        got = numpy_model(noisy, sigma, condition)
        assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
        assert np.abs(expected - condition[:, 4:7].mean()).max() > 0.1  # a network that does something

        scheduler = ToposTextureModel.scheduler()
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, 4)[:-1].tolist())
        x = torch.from_numpy(noisy)
        with torch.no_grad():
            for t in scheduler.timesteps:
                velocity = model.velocity(x, (t / 1000.0).expand(2).float(), torch.from_numpy(condition))
                x = scheduler.step(velocity, t, x).prev_sample
        np.testing.assert_allclose(numpy_model.denoise(noisy, condition, 3), x.numpy(), atol=1e-4, rtol=0)


def test_learned_textures_import_no_torch(tmp_path):
    """The CLI's --texture learned path (classic engine, real portrait) runs without importing torch or diffusers."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from skimage.data import astronaut\n"
              "from topos_server.engines import GenerateOptions, shared_engine\n"
              "result = shared_engine('classic').generate([astronaut()], GenerateOptions(texture_size=512, "
              "texture='learned'))[0]\n"
              "assert result.provenance.extra['texture'] == 'learned'\n"
              "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_train_texture_cli_on_a_bank_folder(bank_records, tmp_path, capsys):
    """``topos train texture`` end to end on a bank folder (six astronaut bakes), and one line for bad options."""
    from topos_sdk.cli import main

    folder = tmp_path / "bank" / "train"
    folder.mkdir(parents=True)
    for k, record in enumerate(bank_records * 2):
        np.savez(folder / f"p{k}.npz", **{**record, "name": np.array(f"p{k}.png"), "format": np.array(BANK_FORMAT)})
    common = ["train", "texture", "--config", "tiny", "--bank", str(tmp_path / "bank"), "--out", str(tmp_path / "run"),
              "--steps", "2", "--batch-size", "2", "--eval-every", "2", "--views-per-item", "1"]
    assert main([*common, "--validation-items", "2", "--eval-examples", "2", "--mirror", "--colour-augment", "0.5"]) == 0
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert "eval hidden-texel L1" in capsys.readouterr().err
    assert main([*common, "--validation-items", "0"]) != 0
    assert "--validation-items must be positive" in capsys.readouterr().err
    assert main([*common, "--colour-augment", "2"]) != 0
    assert "--colour-augment must be a share in [0, 1], got 2" in capsys.readouterr().err
    np.savez(folder / "p0.npz", **{**bank_records[0], "name": np.array("p0.png")})  # an older baker's entry
    assert main(common) != 0
    assert "1 of 6 entries were baked by an older baker" in capsys.readouterr().err


def test_weights_that_do_not_load_say_so(tmp_path):
    """No weights, a truncated weights file, or one missing a layer: one AssetError naming the folder."""
    from safetensors.numpy import load_file, save_file

    from topos_sdk.errors import AssetError
    from topos_server.texture.learned import WEIGHTS_DIR, load_texture_model

    with pytest.raises(AssetError, match="needs TOPOS-Texture weights; none in"):
        load_texture_model(str(tmp_path / "empty"))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((WEIGHTS_DIR / "config.json").read_text())
    (truncated / "diffusion_pytorch_model.safetensors").write_bytes(
        (WEIGHTS_DIR / "diffusion_pytorch_model.safetensors").read_bytes()[:1000])
    with pytest.raises(AssetError, match=f"weights in {truncated} do not load"):
        load_texture_model(str(truncated))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((WEIGHTS_DIR / "config.json").read_text())
    tensors = load_file(str(WEIGHTS_DIR / "diffusion_pytorch_model.safetensors"))
    save_file({k: v for k, v in tensors.items() if k != "unet.conv_out.weight"},
              str(partial / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(AssetError, match="lack 1 tensors"):
        load_texture_model(str(partial))
