"""HeadModel from the asset cache, checked against the ICT-FaceKit OBJs it was derived from."""

import json

import numpy as np
import pytest
import torch
from conftest import ICT_SOURCE
from topos_server.assets.head_model import HeadModel

from topos_sdk.obj_reader import read_obj

MODEL = ICT_SOURCE / "FaceXModel"


@pytest.fixture(scope="module")
def model(ict_cache) -> HeadModel:
    return HeadModel.load(ict_cache)


@pytest.fixture(scope="module")
def skin_stop(ict_cache) -> int:
    return ict_cache.ict_topology().submesh("eye_socket_right").vertex_stop


def test_shapes_names_and_dtype(model, ict_cache):
    n = 26719
    assert model.neutral.shape == (n, 3) and model.neutral.dtype == torch.float32
    assert model.identity_basis.shape == (100, n, 3)
    expected = json.loads((MODEL / "vertex_indices.json").read_text())["expressions"]
    assert model.arkit_expression_names == expected and len(expected) == 53
    extras = model.expression_names[53:]
    assert set(extras) == {"PupilDilate_L", "PupilDilate_R", "cheekRaiser_L", "cheekRaiser_R"}
    assert model.expression_basis.shape == (len(model.expression_names), n, 3)
    assert model.info["topology_id"] == ict_cache.ict_topology().topology_id
    assert "MIT" in model.info["license"]
    assert (ict_cache.ict_dir / "LICENSE").read_text().startswith("MIT License")


def test_neutral_and_modes_reproduce_the_obj_files(model, ict_cache):
    np.testing.assert_allclose(model.neutral.numpy(), ict_cache.ict_topology().rest_points, atol=1e-6)
    e = torch.zeros(1, 100)
    e[0, 42] = 1.0
    identity042 = read_obj(MODEL / "identity042.obj.xz").points
    np.testing.assert_allclose(model.vertices(e)[0].numpy(), identity042, atol=2e-5)
    x = torch.zeros(1, model.num_expressions)
    x[0, model.expression_index("jawOpen")] = 1.0
    jaw_open = read_obj(MODEL / "jawOpen.obj.xz").points
    np.testing.assert_allclose(model.vertices(expression=x)[0].numpy(), jaw_open, atol=2e-5)


def test_zero_coefficients_give_the_neutral(model):
    np.testing.assert_array_equal(model.vertices()[0], model.neutral)
    out = model.vertices(torch.zeros(3, 100), torch.zeros(3, model.num_expressions))
    assert out.shape == (3, model.num_vertices, 3)
    torch.testing.assert_close(out, model.neutral.expand(3, -1, -1), rtol=0, atol=0)


def test_batches_match_single_evaluations(model):
    g = torch.Generator().manual_seed(7)
    identity = model.sample_identity(g, 4)
    expression = torch.rand(4, model.num_expressions, generator=g) * 0.5
    batch = model.vertices(identity, expression)
    for i in range(4):
        torch.testing.assert_close(batch[i], model.vertices(identity[i:i + 1], expression[i:i + 1])[0],
                                   rtol=1e-5, atol=1e-5)
    # fewer coefficients use the leading modes
    torch.testing.assert_close(model.vertices(identity[:, :10]),
                               model.vertices(torch.cat([identity[:, :10], torch.zeros(4, 90)], 1)))
    with pytest.raises(ValueError):
        model.vertices(torch.zeros(2, 101))
    with pytest.raises(ValueError):
        model.vertices(torch.zeros(2, 100), torch.zeros(3, 5))


def test_sampled_heads_differ_and_stay_plausible(model, skin_stop):
    heads = model.sample(torch.Generator().manual_seed(0), 5)  # (5, N, 3)
    again = model.sample(torch.Generator().manual_seed(0), 5)
    torch.testing.assert_close(heads, again, rtol=0, atol=0)
    skin = heads[:, :skin_stop]
    neutral = model.neutral[:skin_stop]
    for i in range(5):
        for j in range(i):
            assert (skin[i] - skin[j]).norm(dim=-1).mean() > 0.1  # cm
    extent = skin.amax(1) - skin.amin(1)  # (5, 3)
    ratio = extent / (neutral.amax(0) - neutral.amin(0))
    assert ((ratio > 0.7) & (ratio < 1.3)).all(), ratio
    shift = (skin - neutral).norm(dim=-1).mean(1)  # (5,) mean displacement, cm
    assert ((shift > 0.1) & (shift < 3.0)).all(), shift


def test_identity_modes_look_like_scaled_principal_components(model, skin_stop):
    rms = np.array(model.info["identity_mode_rms_cm"])  # recorded by the importer, recomputed here
    recomputed = model.identity_basis[:, :skin_stop].norm(dim=-1).pow(2).mean(1).sqrt().numpy()
    np.testing.assert_allclose(rms, recomputed, rtol=1e-3, atol=1e-5)
    assert rms[0] > 10 * rms[-1]
    decades = rms.reshape(10, 10).mean(1)
    assert (np.diff(decades) < 0).all(), decades  # variance falls with the mode index
    assert model.info["identity_scale"] == 1.0


def test_save_and_load_are_exact(model, tmp_path):
    path = model.save(tmp_path / "head.safetensors")
    back = HeadModel.load(path)
    for name in ("neutral", "identity_basis", "expression_basis"):
        assert torch.equal(getattr(back, name), getattr(model, name))
    assert back.expression_names == model.expression_names
    assert back.info["topology_id"] == model.info["topology_id"]
    assert not list(tmp_path.glob(".*tmp*"))
