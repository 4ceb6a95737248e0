"""TOPOS-VAE: synthetic data, pose canonicalisation, model, training loop, NICP baseline (real ICT assets)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from topos_server.data.synthetic_heads import (
    HELD_OUT_METHOD,
    TRAINING_METHODS,
    SyntheticHeadOptions,
    SyntheticHeads,
    outer_surface,
)
from topos_server.geometry.canonical_pose import compose, invert
from topos_server.geometry.registration import TriangleSurface, umeyama
from topos_server.geometry.retopology import METHODS, retopologize
from topos_server.geometry.surface_points import face_normals_and_areas, sample_surface
from topos_server.models.vae import ToposVAE
from topos_server.training.vae import TrainingConfig, build_model, reconstruction_losses, reference_triangles, train


@pytest.fixture(scope="module")
def heads(head_model, topology):
    return SyntheticHeads(head_model, topology, seed=3, options=SyntheticHeadOptions(num_points=512, operator_slots=1))


@pytest.fixture(scope="module")
def skin(topology):
    count, triangles = outer_surface(topology)
    return topology.rest_points[:count].astype(np.float64), triangles


@pytest.mark.parametrize("method", METHODS)
def test_retopology_lies_on_the_surface_with_new_connectivity(method, skin):
    points, triangles = skin
    source = TriangleSurface(points, triangles)
    _, source_area = face_normals_and_areas(points, triangles)
    op = retopologize(method, points, triangles, np.random.default_rng(1))
    new_points = op.apply(points)
    assert op.triangles.max() < len(new_points) and op.triangles.min() >= 0
    assert len(new_points) != len(points) or not np.array_equal(np.sort(op.triangles, 1), np.sort(triangles, 1))
    # vertices sit on the source surface (marching cubes: projected onto it); re-triangulation's
    # centroid splits of flipped triangles lie on the flipped chord instead, within a millimetre or so
    tolerance = 0.15 if method == "retriangulation" else 1e-3
    assert source.closest(new_points).distance.max() < tolerance
    # the new surface covers the old one: same area within a few percent, normals mostly agree
    normals, area = face_normals_and_areas(new_points, op.triangles)
    assert abs(area.sum() / source_area.sum() - 1) < 0.05
    samples, sample_normals, _ = sample_surface(new_points, op.triangles, 2000, np.random.default_rng(2))
    hits = source.closest(samples)
    assert np.median(hits.distance) < 0.05  # cm
    assert ((sample_normals * hits.normals).sum(1) > 0.5).mean() > 0.95
    # deterministic by seed
    again = retopologize(method, points, triangles, np.random.default_rng(1))
    assert np.array_equal(again.triangles, op.triangles)


def test_held_out_method_is_not_a_training_method():
    assert HELD_OUT_METHOD in METHODS and HELD_OUT_METHOD not in TRAINING_METHODS
    assert set(TRAINING_METHODS) | {HELD_OUT_METHOD} == set(METHODS)


def test_synthetic_samples_are_deterministic_and_varied(heads):
    a, b, c = heads.sample(5), heads.sample(5), heads.sample(6)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.target, b.target)
    assert a.method in TRAINING_METHODS
    assert not np.allclose(a.target, c.target)
    assert a.target.shape == (heads.topology.num_points, 3) and a.points.shape == (512, 3)
    np.testing.assert_allclose(np.linalg.norm(a.normals, axis=1), 1.0, atol=1e-4)
    # the input is the target's outer surface in the random pose: points lie near the posed target skin
    posed = a.input_from_head.apply(a.target[: heads.surface_vertex_count].astype(np.float64))
    dist = TriangleSurface(posed, heads.surface_triangles).closest(a.points).distance / a.input_from_head.scale
    assert np.median(dist) < 0.1  # cm: noise + re-topology only
    # out-of-span: the head is not reproduced by the identity + expression model exactly
    batch = heads.batch([0, 1])
    assert batch["points"].shape == (2, 512, 3) and batch["target"].shape == (2, heads.topology.num_points, 3)
    assert batch["offsets"].shape == (2, 512, 1) and batch["offsets"].abs().median() < 1.0  # cm from the mean head


def test_canonicalisation_undoes_a_random_similarity(heads):
    for index in (11, 12):
        sample = heads.sample(index)
        found = heads.canonicalize(sample)
        # reference: the similarity taking the true head onto the mean head by vertex correspondence
        oracle = compose(umeyama(sample.target[: heads.surface_vertex_count], heads.mean_head[: heads.surface_vertex_count]),
                         invert(sample.input_from_head))
        angle = np.degrees(np.arccos(np.clip((np.trace(found.rotation @ oracle.rotation.T) - 1) / 2, -1, 1)))
        assert angle < 10.0
        assert abs(np.log(found.scale / oracle.scale)) < 0.05
        mean_head_error = heads.head_frame_error_cm(sample, invert(found).apply(heads.mean_head))
        assert mean_head_error.mean() < 1.5  # cm: the mean head lands on the input head


def test_model_decodes_template_at_init_and_subsets_agree(head_model, topology):
    model = build_model(TrainingConfig(size="tiny"), head_model, topology).eval()
    points, normals = torch.randn(2, 64, 3) * 8, torch.nn.functional.normalize(torch.randn(2, 64, 3), dim=-1)
    offsets = torch.randn(2, 64, 1) * 0.3
    with torch.no_grad():
        full, posterior = model(points, normals, offsets, sample_posterior=False)
        ids = torch.tensor([0, 17, 9000, topology.num_points - 1])
        part = model.decode(posterior.mode(), ids)
    assert full.shape == (2, topology.num_points, 3) and posterior.mean.shape == (2, 16, 8)
    # zero-initialised output layers: the untrained decoder returns the template (mean head)
    torch.testing.assert_close(full[0], head_model.neutral, atol=1e-6, rtol=0)
    torch.testing.assert_close(part, full[:, ids], atol=1e-5, rtol=0)
    assert model.config.topology_id == topology.topology_id


def test_tiny_model_loss_drops_on_real_batches(head_model, topology, heads):
    torch.manual_seed(0)
    model = build_model(TrainingConfig(size="tiny"), head_model, topology).train()
    batch = heads.batch(range(4))
    tris = torch.from_numpy(reference_triangles(topology))[torch.randperm(len(topology.triangles()[0]))[:256]]
    target = batch["target"][:, tris.reshape(-1)].reshape(4, -1, 3, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        posterior = model.encode(batch["points"], batch["normals"], batch["offsets"])
        predicted = model.decode(posterior.mode(), tris.reshape(-1)).reshape(target.shape)
        terms = reconstruction_losses(predicted, target)
        loss = terms["vertex_l1"] + terms["vertex_l2"] + terms["edge"] + 1e-4 * posterior.kl()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:3])


def test_save_load_round_trip_is_exact(head_model, topology, tmp_path):
    torch.manual_seed(1)
    model = build_model(TrainingConfig(size="tiny"), head_model, topology)
    with torch.no_grad():  # make every parameter non-trivial (zero-init layers included)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.eval()
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    loaded = ToposVAE.from_pretrained(tmp_path / "m", low_cpu_mem_usage=False).eval()
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").is_file()
    public = lambda config: {k: v for k, v in dict(config).items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(model.config)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    points, normals = torch.randn(1, 100, 3) * 8, torch.nn.functional.normalize(torch.randn(1, 100, 3), dim=-1)
    offsets = torch.randn(1, 100, 1) * 0.3
    with torch.no_grad():
        before = model(points, normals, offsets, sample_posterior=False)[0]
        after = loaded(points, normals, offsets, sample_posterior=False)[0]
    # weights are bit-identical (above); BLAS may pick alignment-dependent kernels, so outputs agree to float rounding
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_train_checkpoints_and_resumes(head_model, topology, tmp_path):
    config = TrainingConfig(size="tiny", steps=3, batch_size=2, query_triangles=64, eval_every=3, eval_samples=2,
                            checkpoint_every=2, workers=0, warmup_steps=1, num_points=256)
    record = train(config, tmp_path, head_model=head_model, topology=topology, device="cpu")
    assert record["step"] == 3 and "eval_error_mm" in record and np.isfinite(record["loss"])
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "checkpoint" / "training_state.pt").is_file()
    config.steps = 4
    record = train(config, tmp_path, resume=True, head_model=head_model, topology=topology, device="cpu")
    steps = [json.loads(line)["step"] for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_nicp_baseline_beats_the_mean_head(heads):
    from topos_server.geometry.nicp import NicpBaseline

    sample = heads.sample(21)
    canonical = heads.canonicalize(sample)
    target = TriangleSurface(canonical.apply(sample.mesh_points.astype(np.float64)), sample.mesh_triangles)
    nicp = NicpBaseline(heads.mean_head, heads.surface_vertex_count, heads.surface_triangles)
    registered = nicp.register(target)
    n = heads.surface_vertex_count
    nicp_error = heads.head_frame_error_cm(sample, invert(canonical).apply(registered))
    mean_error = heads.head_frame_error_cm(sample, invert(canonical).apply(heads.mean_head))
    assert nicp_error[:n].mean() < 0.85 * mean_error[:n].mean()
    # registered skin lies on the input surface
    assert np.median(target.closest(registered[:n]).distance) < 0.05
