"""TOPOS-Texture: completes a partial photo bake into full UV maps of one skin tile (flow matching).

    condition (B, 18, R, R)                          target x0 (B, 4, R, R), all in ~[−1, 1]
      observed albedo × weight (3)  ─┐                 albedo (3): 2·sqrt(linear) − 1 (de-lit)
      observation weight (1)         │                 roughness (1): 2·r − 1
      the fill (prior, 3)            │ the baker's fill + the seen left/right difference carried over
      head position (3), normal (3)  │ UV-space geometry of the head (position scaled to ~[−1, 1])
      skin island (1)                │
      mirror side × weight (3), (1) ─┘ what each texel's mirror point saw
                  │
    x_σ = (1 − σ) x0 + σ ε   ‖ condition          (B, 22, R, R)
      │  PixelUnshuffle(f)                          (B, 22·f², R/f, R/f)   the UNet runs at R/f: cheap on a CPU
      │  diffusers UNet2DModel, timestep = 1000 σ   (zero-initialised output; self-attention at the bottom)
      │  PixelShuffle(f)                            (B, 4, R, R)
      ▼
    x0 = prior + that residual, prior = (the fill channels, 0): an untrained model returns the baker's fill
    with the face's seen asymmetry carried over (``data/texture_pairs.add_mirror_asymmetry``). The sampler
    gets the rectified-flow velocity ``v = (x_σ − x0) / σ`` (the convention of
    ``FlowMatchEulerDiscreteScheduler``: ``x_σ = (1 − σ) x0 + σ ε``, ``v = ε − x0``).

The model works on the *low frequencies* of the whole tile (``small``: 64², seen at once by a UNet at
32² → 8², so both halves of the face and the forehead-to-chin light gradient are in view): on held-out
bakes most of the fill's error on hidden skin is at scales a 64² map resolves (a perfect 64² correction of the fill
removes two thirds of its L1: the oracle row of ``bench/texture_eval.py``). The caller keeps the bake's
own high frequencies (the photo's where it saw, the mirror side's where it filled) and replaces only
the low ones (``texture/learned.py``).

Sampling (:meth:`ToposTextureModel.sample`) starts from seeded noise and takes a few Euler steps of
the diffusers scheduler; the seed therefore varies what the condition does not pin down (texels
nobody saw). The model only knows the skin tile it was trained on; the caller merges its output with
the observed texels at full resolution (``texture/learned.py``), sampling with the same network in numpy
(``texture_model_numpy.py``: no torch or diffusers import at inference).

Style after facebookresearch/DiT ``models.py`` (one file, shape comments, named sizes, zero-init
output layer) and diffusers (``ModelMixin``/``ConfigMixin``, safetensors, the scheduler apart).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from topos_server.models.texture_model_numpy import (CONDITION_CHANNELS, FILL, TARGET_CHANNELS, TRAIN_TIMESTEPS,
                                                     attention_head_dim)


# Named sizes: resolution R of the maps, pixel-unshuffle factor f, UNet widths per level, resnets per level.
TEXTURE_CONFIGS: dict[str, dict] = {
    "tiny": dict(resolution=64, unshuffle=2, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8),
    "small": dict(resolution=64, unshuffle=2, block_out_channels=(64, 128, 192), layers_per_block=1,
                  norm_num_groups=16),
    "base": dict(resolution=128, unshuffle=2, block_out_channels=(128, 192, 256, 384), layers_per_block=2,
                 norm_num_groups=32),
}


class ToposTextureModel(ModelMixin, ConfigMixin):
    """Rectified flow from noise to the complete maps of a skin tile, given the partial bake (predicts x0)."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, resolution: int = 64, unshuffle: int = 2, block_out_channels: tuple = (64, 128, 192),
                 layers_per_block: int = 1, norm_num_groups: int = 16, tile: int = 1001, topology_id: str = "",
                 size_name: str = ""):
        super().__init__()
        if resolution % (unshuffle * 2 ** (len(block_out_channels) - 1)):
            raise ValueError(f"resolution {resolution} must be divisible by unshuffle × 2^(levels − 1)")
        f2 = unshuffle * unshuffle
        self.to_low_resolution = nn.PixelUnshuffle(unshuffle)
        self.to_full_resolution = nn.PixelShuffle(unshuffle)
        self.unet = UNet2DModel(
            sample_size=resolution // unshuffle, in_channels=(len(TARGET_CHANNELS) + len(CONDITION_CHANNELS)) * f2,
            out_channels=len(TARGET_CHANNELS) * f2, block_out_channels=tuple(block_out_channels),
            down_block_types=("DownBlock2D",) * len(block_out_channels),
            up_block_types=("UpBlock2D",) * len(block_out_channels),
            layers_per_block=layers_per_block, norm_num_groups=norm_num_groups,
            attention_head_dim=attention_head_dim(block_out_channels))
        nn.init.zeros_(self.unet.conv_out.weight)  # start as "velocity 0" (DiT: zero-init output layer)
        nn.init.zeros_(self.unet.conv_out.bias)

    @classmethod
    def from_size(cls, size: str, **overrides) -> "ToposTextureModel":
        if size not in TEXTURE_CONFIGS:
            raise ValueError(f"unknown texture model size {size!r}; sizes: {', '.join(TEXTURE_CONFIGS)}")
        return cls(**{**TEXTURE_CONFIGS[size], "size_name": size, **overrides})

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """noisy (B, 4, R, R), sigma (B,) in [0, 1], condition (B, 18, R, R) → predicted x0 (B, 4, R, R)."""
        x = self.to_low_resolution(torch.cat([noisy, condition], dim=1))  # (B, 22·f², R/f, R/f)
        residual = self.to_full_resolution(self.unet(x, sigma * TRAIN_TIMESTEPS).sample)  # (B, 4, R, R)
        prior = torch.cat([condition[:, FILL], torch.zeros_like(residual[:, 3:])], dim=1)  # (B, 4, R, R)
        return prior + residual

    def velocity(self, noisy: torch.Tensor, sigma: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The flow's velocity ε − x0 = (x_σ − x0) / σ at noisy (B, 4, R, R), sigma (B,) > 0."""
        x0 = self(noisy, sigma, condition)
        return (noisy - x0) / sigma.clamp_min(1e-3)[:, None, None, None]

    @staticmethod
    def scheduler() -> FlowMatchEulerDiscreteScheduler:
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN_TIMESTEPS, shift=1.0)

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, steps: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
        """condition (B, 18, R, R) → x0 (B, 4, R, R) in ~[−1, 1] after ``steps`` Euler steps from seeded noise."""
        scheduler = self.scheduler()
        # evenly spaced σ = 1, 1 − 1/steps, …: the scheduler's default ends its grid at σ ≈ 0, which wastes a step
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1].tolist(), device=condition.device)
        b, _, r, _ = condition.shape
        x = torch.randn((b, len(TARGET_CHANNELS), r, r), generator=generator, dtype=torch.float32).to(condition)
        for t in scheduler.timesteps:
            sigma = (t / TRAIN_TIMESTEPS).expand(b).to(condition)
            velocity = self.velocity(x, sigma, condition)
            x = scheduler.step(velocity, t, x).prev_sample
        return x
