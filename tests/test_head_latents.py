"""HeadLatents: reference-topology heads ↔ TOPOS-VAE latents with the committed weights (what TOPOS-DiT trains on)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from topos_server.pipelines.head_latents import HeadLatents


@pytest.fixture(scope="module")
def latents(topology):
    return HeadLatents.load()


@pytest.fixture(scope="module")
def identity_heads(head_model):
    """The mean head and three neutral identity heads, identity ~ N(0, 1): (4, N, 3) cm."""
    identity = torch.randn(3, head_model.num_identity, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        heads = head_model.vertices(identity, torch.zeros(3, len(head_model.arkit_expression_names))).numpy()
    return np.concatenate([head_model.neutral.numpy()[None], heads])


def skin_error_mm(a, b, count: int) -> np.ndarray:
    return 10.0 * np.linalg.norm(np.asarray(a)[:, :count] - np.asarray(b)[:, :count], axis=-1).mean(1)


def test_round_trip_of_the_mean_head_and_identity_heads(latents, identity_heads):
    z = latents.encode(identity_heads)
    assert z.shape == (4, *latents.latent_shape) and z.dtype == torch.float32
    decoded = latents.decode(z)
    assert decoded.shape == identity_heads.shape
    count = latents.skin_vertex_count
    error = skin_error_mm(decoded.numpy(), identity_heads, count)  # (4,)
    unfitted = skin_error_mm(identity_heads[:1].repeat(4, 0), identity_heads, count)  # the mean head as the answer
    assert error[0] < 0.5  # the mean head comes back within half a millimetre
    assert error[1:].mean() < 0.5 < 0.1 * unfitted[1:].mean()  # the DiT's floor: ≤ 0.5 mm on identity heads


def test_encoding_is_deterministic_per_seed(latents, identity_heads):
    first = latents.encode(identity_heads[:2], seed=3)
    assert torch.equal(first, latents.encode(torch.as_tensor(identity_heads[:2]), seed=3))
    other = latents.encode(identity_heads[:2], seed=4)
    assert not torch.equal(first, other)  # other surface samples
    assert (first - other).abs().max() < 0.5 * first.abs().max()  # ... of the same heads


def test_bad_shapes_are_value_errors(latents, identity_heads):
    with pytest.raises(ValueError, match=r"heads must be \(B, \d+, 3\)"):
        latents.encode(identity_heads[0])
    with pytest.raises(ValueError, match="heads must be"):
        latents.encode(identity_heads[:, :100])
    bad = identity_heads[:1].copy()
    bad[0, 5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        latents.encode(bad)
    with pytest.raises(ValueError, match="latents must be"):
        latents.decode(torch.zeros(1, latents.latent_shape[0] + 1, latents.latent_shape[1]))
    with pytest.raises(ValueError, match="latents must be"):
        latents.decode(torch.zeros(latents.latent_shape))
