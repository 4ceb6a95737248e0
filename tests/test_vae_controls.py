"""TOPOS-VAE speed-ups: control-vertex decoding, the batched pose search, stratified surface sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from topos_server.data.synthetic_heads import SyntheticHeads, outer_surface, random_rotation
from topos_server.geometry.canonical_pose import NearestSampleGrid, PoseCanonicalizer, compose, invert
from topos_server.geometry.surface_points import face_normals_and_areas, sample_surface
from topos_server.models.vae import ToposVAE
from topos_server.training.control_vertices import attach_control_decoding, fit_control_upsampling
from topos_server.training.vae import TrainingConfig, build_model

CONTROLS = 1000


@pytest.fixture(scope="module")
def upsampling(head_model, topology):
    return fit_control_upsampling(head_model, topology, CONTROLS, k=8, examples=80)


def test_control_upsampling_covers_every_part_and_interpolates_held_out_heads(upsampling, head_model, topology):
    n = topology.num_points
    assert upsampling.control_ids.shape == (CONTROLS,) and len(np.unique(upsampling.control_ids)) == CONTROLS
    assert upsampling.neighbours.shape == (n, 8) and upsampling.neighbours.max() < CONTROLS
    np.testing.assert_allclose(upsampling.weights.sum(1), 1.0, atol=1e-5)  # translations carry over exactly
    # each control reproduces itself
    rows = upsampling.control_ids
    picked = upsampling.control_ids[upsampling.neighbours[rows, 0]]
    assert np.array_equal(picked, rows) and np.allclose(upsampling.weights[rows, 0], 1.0)
    # every separate part (eyeballs, teeth, lashes …; the skin parts share vertices) has controls of its own
    for part in (p for p in topology.submeshes if p.mesh is None):
        inside = (upsampling.control_ids >= part.vertex_start) & (upsampling.control_ids < part.vertex_stop)
        assert inside.sum() >= 1, part.name
    # heads the weights never saw: offsets from the mean head upsampled from the controls alone
    heads = SyntheticHeads(head_model, topology, seed=123)
    truth = np.stack([heads.head(np.random.default_rng([9, i])) - heads.mean_head for i in range(10)])  # (S, N, 3)
    predicted = upsampling.upsample(truth[:, upsampling.control_ids])
    error_mm = 10.0 * np.linalg.norm(predicted - truth, axis=-1)
    magnitude_mm = 10.0 * np.linalg.norm(truth, axis=-1)
    assert error_mm.mean() < 0.15 * magnitude_mm.mean()
    assert error_mm[:, : heads.surface_vertex_count].mean() < 1.5


def test_attached_control_decoding_keeps_the_network_and_round_trips(upsampling, head_model, topology, tmp_path):
    torch.manual_seed(2)
    full = build_model(TrainingConfig(size="tiny"), head_model, topology)
    with torch.no_grad():  # non-trivial attention branch (its output layer starts at zero)
        for p in full.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    full.eval()
    controlled = attach_control_decoding(full, upsampling)
    assert controlled.config.control_vertices == CONTROLS and full.config.control_vertices == 0
    points, normals = torch.randn(2, 128, 3) * 8, torch.nn.functional.normalize(torch.randn(2, 128, 3), dim=-1)
    offsets = torch.randn(2, 128, 1) * 0.3
    ids = torch.as_tensor(upsampling.control_ids)
    with torch.no_grad():
        z = full.encode(points, normals, offsets).mode()
        torch.testing.assert_close(controlled.encode(points, normals, offsets).mode(), z)
        everything = controlled.decode(z)  # (B, N, 3): sparse matmul path
        # at the controls the two models agree exactly (same weights, same queries)
        torch.testing.assert_close(everything[:, ids], full.decode(z, ids), atol=1e-5, rtol=0)
        # elsewhere: upsampled — equal to the explicit gather used in training
        subset = torch.tensor([0, 5, 12000, topology.num_points - 1])
        controlled.train()
        torch.testing.assert_close(controlled.decode(z, subset), everything[:, subset], atol=1e-5, rtol=0)
        controlled.eval()
    controlled.save_pretrained(tmp_path / "m", safe_serialization=True)
    loaded = ToposVAE.from_pretrained(tmp_path / "m", low_cpu_mem_usage=False).eval()
    for name, value in controlled.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z), everything, atol=1e-5, rtol=0)


def test_a_new_model_with_controls_gets_its_upsampling(head_model, topology):
    model = build_model(TrainingConfig(size="tiny", control_vertices=300), head_model, topology)
    assert model.config.control_vertices == 300
    assert model.upsample_weights.abs().sum() > 0 and len(torch.unique(model.control_ids)) == 300
    with pytest.raises(ValueError, match="decodes every vertex"):
        build_model(TrainingConfig(size="tiny"), head_model, topology).set_control_upsampling(None)


def test_nearest_sample_grid_is_within_half_a_cell(topology):
    count, triangles = outer_surface(topology)
    samples, _, _ = sample_surface(topology.rest_points[:count], triangles, 3000, np.random.default_rng(0))
    grid = NearestSampleGrid(samples, resolution=32)
    queries = samples.mean(0) + np.random.default_rng(1).normal(size=(2000, 3)) * 10.0
    approx = np.linalg.norm(queries - samples[grid.lookup(queries)], axis=1)
    exact, _ = cKDTree(samples).query(queries)
    inside = np.all((queries > grid.origin) & (queries < grid.origin + grid.cell * grid.shape), axis=1)
    assert inside.mean() > 0.9
    assert np.all(approx[inside] <= exact[inside] + np.sqrt(3) * grid.cell + 1e-9)
    assert np.median(approx[inside] - exact[inside]) < 0.25 * grid.cell


def test_batched_pose_search_finds_arbitrary_poses(topology):
    count, triangles = outer_surface(topology)
    rest = topology.rest_points[:count].astype(np.float64)
    canonicalizer = PoseCanonicalizer(rest, triangles)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        rotation, scale, shift = random_rotation(rng), float(np.exp(rng.uniform(-2, 2))), rng.uniform(-50, 50, 3)
        posed = scale * rest @ rotation.T + shift
        samples, _, _ = sample_surface(posed, triangles, 4096, rng)
        found = canonicalizer.align(samples, seed=seed)
        residual = compose(found, type(found)(scale, rotation, shift))  # should be the identity
        angle = np.degrees(np.arccos(np.clip((np.trace(residual.rotation) - 1) / 2, -1, 1)))
        assert angle < 1.0 and abs(np.log(residual.scale)) < 0.01
        assert np.linalg.norm(invert(found).apply(rest) - posed, axis=1).mean() < 0.02 * scale


def test_stratified_sampling_is_uniform_by_area_and_evener_than_independent_draws(topology):
    count, triangles = outer_surface(topology)
    rest = topology.rest_points[:count].astype(np.float64)
    _, areas = face_normals_and_areas(rest, triangles)
    region = rest[triangles].mean(1)[:, 1] > np.median(rest[:, 1])  # upper half of the head, by triangle
    expected = areas[region].sum() / areas.sum()
    fractions = {True: [], False: []}
    for stratified in (True, False):
        for seed in range(20):
            _, _, tri = sample_surface(rest, triangles, 2048, np.random.default_rng(seed), stratified=stratified)
            fractions[stratified].append(region[tri].mean())
    assert abs(np.mean(fractions[True]) - expected) < 0.01 and abs(np.mean(fractions[False]) - expected) < 0.01
    assert np.std(fractions[True]) < 0.5 * np.std(fractions[False])
    points, normals, tri = sample_surface(rest, triangles, 500, np.random.default_rng(3))
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-9)
    corners = rest[triangles[tri]]
    bary = np.linalg.lstsq(np.c_[corners[0, 1] - corners[0, 0], corners[0, 2] - corners[0, 0]],
                           points[0] - corners[0, 0], rcond=None)[0]
    assert bary.min() >= -1e-9 and bary.sum() <= 1 + 1e-9
