"""TOPOS-VAE's skin modes: the head model's whole identity span in the linear path, added to a trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from topos_server.data.synthetic_heads import SyntheticHeadOptions, SyntheticHeads, outer_surface
from topos_server.geometry.surface_points import farthest_point_indices
from topos_server.models.vae import ToposVAE
from topos_server.training.control_vertices import ControlUpsampling, attach_control_decoding
from topos_server.training.vae import TrainingConfig, build_model, deformation_basis, extend_model, skin_identity_modes

SKIN_MODES = 96


@pytest.fixture(scope="module")
def trained_like(head_model, topology):
    """A tiny model at 300 controls (each vertex takes its nearest: no fitting) with non-trivial weights everywhere."""
    torch.manual_seed(3)
    rest = topology.rest_points
    controls = farthest_point_indices(rest, 300)
    _, nearest = cKDTree(rest[controls]).query(rest)
    upsampling = ControlUpsampling(controls, nearest[:, None], np.ones((len(rest), 1), np.float32))
    model = attach_control_decoding(build_model(TrainingConfig(size="tiny"), head_model, topology), upsampling)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.fixture(scope="module")
def extended(trained_like, head_model, topology):
    return extend_model(trained_like, head_model, topology,
                        dict(skin_modes=SKIN_MODES, latent_coefficients=True, basis_precision="float16")).eval()


def test_skin_modes_complete_the_identity_span_on_the_skin(head_model, topology):
    count, _ = outer_surface(topology)
    basis = deformation_basis(head_model, 47, count)  # (N, 47, 3)
    modes = skin_identity_modes(head_model, basis, count, SKIN_MODES)  # (N, S, 3)
    both = torch.cat([basis, modes], dim=1)[:count].double().permute(1, 0, 2).reshape(47 + SKIN_MODES, -1)
    identity = torch.randn(4, head_model.num_identity, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        heads = head_model.vertices(identity, torch.zeros(4, len(head_model.arkit_expression_names)))
    offsets = (heads - head_model.neutral)[:, :count].double().reshape(4, -1)  # (4, V·3) cm
    fit = torch.linalg.lstsq(both.T, offsets.T).solution
    residual_mm = 10 * (offsets - (both.T @ fit).T).reshape(4, count, 3).norm(dim=-1)
    unfitted_mm = 10 * offsets.reshape(4, count, 3).norm(dim=-1)
    assert residual_mm.mean() < 0.05 < 3.0 < unfitted_mm.mean()  # 40 mixed modes alone leave ~1.7 mm
    old_only = torch.linalg.lstsq(both[:47].T, offsets.T).solution
    assert 10 * (offsets - (both[:47].T @ old_only).T).reshape(4, count, 3).norm(dim=-1).mean() > 0.5


def test_extended_model_decodes_as_before_and_round_trips(trained_like, extended, tmp_path):
    assert extended.deformation_basis.dtype == torch.float16 and extended.skin_basis.dtype == torch.float16
    assert extended.skin_basis.shape == (extended.config.skin_vertices, SKIN_MODES, 3)
    z = torch.randn(2, *trained_like.latent_queries.shape[:1], trained_like.config.latent_channels)
    with torch.no_grad():
        before, after = trained_like.decode(z), extended.decode(z)
    assert 10 * (after - before).norm(dim=-1).max() < 0.05  # mm: only the half-precision basis differs
    extended.save_pretrained(tmp_path / "m", safe_serialization=True)
    loaded = ToposVAE.from_pretrained(tmp_path / "m", low_cpu_mem_usage=False).eval()
    assert loaded.skin_basis.dtype == torch.float16
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z), after, atol=1e-5, rtol=0)


def test_skin_mode_coefficients_move_skin_and_inside_and_subsets_agree(extended, topology):
    count = extended.config.skin_vertices
    z = torch.zeros(1, extended.config.num_latents, extended.config.latent_channels)
    with torch.no_grad():
        base = extended.decode(z)
        extended.skin_coefficients[-1].bias[5] = 1.0
        moved = extended.decode(z)
        extended.train()
        subset = torch.tensor([0, count - 1, count, topology.num_points - 1])
        torch.testing.assert_close(extended.decode(z, subset), moved[:, subset], atol=1e-5, rtol=0)
        extended.eval()
        extended.skin_coefficients[-1].bias[5] = 0.0
    mode = extended.skin_basis[:, 5].float()  # (V, 3)
    torch.testing.assert_close(moved[0, :count] - base[0, :count], mode, atol=1e-5, rtol=0)
    inside = (moved[0, count:] - base[0, count:]).norm(dim=-1)
    assert inside.max() > 0.01  # the eyes and teeth follow the mode (upsampled from the controls)


def test_old_configs_mean_no_skin_modes_and_bad_ones_are_value_errors(topology):
    model = ToposVAE(num_vertices=topology.num_points, width=32, num_heads=2, num_latents=4, latent_channels=4,
                     encoder_depth=0, decoder_depth=0, num_points=64)
    assert model.config.skin_modes == 0 and not hasattr(model, "skin_basis")
    assert model.deformation_basis.dtype == torch.float32
    with pytest.raises(ValueError, match="skin_modes need control vertices"):
        ToposVAE(num_vertices=topology.num_points, skin_modes=4, skin_vertices=10)
    with pytest.raises(ValueError, match="basis_precision"):
        ToposVAE(num_vertices=topology.num_points, basis_precision="int8")


def test_head_frame_examples_keep_the_head_model_frame(head_model, topology):
    heads = SyntheticHeads(head_model, topology, seed=4, options=SyntheticHeadOptions(num_points=256,
                                                                                     head_frame_probability=1.0))
    example = heads.training_example(0)
    np.testing.assert_array_equal(example["target"], heads.sample(0, random_pose=False).target)
    canonical = SyntheticHeads(head_model, topology, seed=4, options=SyntheticHeadOptions(num_points=256))
    assert not np.array_equal(canonical.training_example(0)["target"], example["target"])
