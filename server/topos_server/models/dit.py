"""TOPOS-DiT: a rectified-flow transformer that generates a head's TOPOS-VAE latent from one portrait.

    noisy latent x_σ (B, L, C), normalised per element     σ ∈ [0, 1]: x_σ = (1 − σ)·x₀ + σ·ε
      │  Linear → (B, L, W) + learned position per latent token
      │  N × DiT block: adaLN-Zero(σ embedding + pooled condition) → self-attention
      │                 → cross-attention to the condition tokens → MLP
      ▼  adaLN-Zero final layer
    velocity v = ε − x₀ (B, L, C)          (diffusers' FlowMatchEulerDiscreteScheduler convention)

    condition tokens (B, K + T, W):
      landmarks (B, K=478, 3) in the aligned crop's frame (x, y ∈ [−½, ½], relative depth) → Linear
        + a learned embedding per landmark index
      aligned face crop (B, 3, S, S) ∈ [−1, 1] → 4 stride-2 convolutions → T = (S/16)² tokens + positions
      optionally (``identity_condition`` > 0) the classic landmark fit's head-model identity
        coefficients → MLP → one token: the DiT then learns what the linear fit gets wrong
      → (base, large) self-attention blocks; one key/value projection shared by every DiT block;
        a dropped condition (classifier-free guidance) is the learned null token
        in every position

The latent is normalised per token and channel with statistics stored in the checkpoint
(``latent_mean``, ``latent_std``), so the flow runs on unit-scale data whatever the VAE's KL weight
made of it.
``vae_id`` in the config names the VAE whose latents this model generates.

Style after facebookresearch/DiT ``models.py``: one file, shape comments, named sizes, adaLN-Zero
(modulation and output layers zero-initialised, so a fresh model predicts zero velocity).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from topos_server.models.vae import Attention, Block, Mlp

# Named sizes: transformer width, depth, heads; condition-encoder depth; image-encoder base channels.
# ``small`` is sized to train in tens of minutes on a 2-core CPU; ``base``/``large`` are for a GPU.
DIT_CONFIGS: dict[str, dict] = {
    "tiny": dict(width=64, depth=2, num_heads=4, condition_depth=0, image_channels=16),
    "small": dict(width=160, depth=4, num_heads=4, condition_depth=0, image_channels=24),
    "base": dict(width=512, depth=12, num_heads=8, condition_depth=2, image_channels=64),
    "large": dict(width=768, depth=24, num_heads=12, condition_depth=4, image_channels=96),
}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, Q, W) with per-sample shift and scale (B, W)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class SigmaEmbedding(nn.Module):
    """σ (B,) ∈ [0, 1] → (B, W): sinusoidal features of 1000·σ (the scheduler's timestep) → MLP."""

    def __init__(self, width: int, frequencies: int = 128):
        super().__init__()
        self.register_buffer("frequencies", torch.exp(-math.log(10_000.0) * torch.arange(frequencies) / frequencies),
                             persistent=False)
        self.mlp = Mlp(2 * frequencies, width, width)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        angles = 1000.0 * sigma[:, None].float() * self.frequencies  # (B, F)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class ImageEncoder(nn.Sequential):
    """Aligned face crop (B, 3, S, S) → (B, (S/16)², W) tokens: four stride-2 convolutions, trained with the DiT."""

    def __init__(self, width: int, channels: int):
        layers, c_in = [], 3
        for c_out in (channels, 2 * channels, 4 * channels):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.GELU()]
            c_in = c_out
        layers += [nn.Conv2d(c_in, width, 3, stride=2, padding=1)]
        super().__init__(*layers)

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        return super().forward(crop).flatten(2).transpose(1, 2)  # (B, T, W)


class CrossAttention(nn.Module):
    """Queries x (B, Q, W) over keys and values (B, H, K, W/H) projected once per condition for every block."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_q = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, q, w = x.shape
        query = self.to_q(x).view(b, q, self.num_heads, w // self.num_heads).transpose(1, 2)  # (B, H, Q, W/H)
        out = F.scaled_dot_product_attention(query, key, value)  # (B, H, Q, W/H)
        return self.out(out.transpose(1, 2).reshape(b, q, w))


class DiTBlock(nn.Module):
    """adaLN-Zero block: self-attention over the latent tokens, cross-attention to the condition, MLP."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_self = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.self_attention = Attention(width, num_heads)
        self.norm_cross = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.cross_attention = CrossAttention(width, num_heads)
        self.norm_mlp = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 9 * width))

    def forward(self, x: torch.Tensor, key: torch.Tensor, value: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, L, W), the condition's keys and values (B, H, K, W/H), c (B, W) σ + pooled condition."""
        (shift_s, scale_s, gate_s, shift_c, scale_c, gate_c,
         shift_m, scale_m, gate_m) = self.modulation(c).chunk(9, dim=-1)  # (B, W) each
        x = x + gate_s[:, None] * self.self_attention(modulate(self.norm_self(x), shift_s, scale_s))
        x = x + gate_c[:, None] * self.cross_attention(modulate(self.norm_cross(x), shift_c, scale_c), key, value)
        return x + gate_m[:, None] * self.mlp(modulate(self.norm_mlp(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class ToposDiT(ModelMixin, ConfigMixin):
    """Velocity of the rectified flow over a (normalised) TOPOS-VAE latent, given a portrait's condition."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, latent_tokens: int = 32, latent_channels: int = 16, width: int = 256, depth: int = 6,
                 num_heads: int = 8, condition_depth: int = 2, image_channels: int = 32, num_landmarks: int = 478,
                 crop_size: int = 96, mlp_ratio: float = 4.0, condition_dropout: float = 0.1, vae_id: str = "",
                 size_name: str = "", identity_condition: int = 0):
        super().__init__()
        if crop_size % 16:
            raise ValueError(f"crop size must be a multiple of 16, got {crop_size}")
        self.latent_in = nn.Linear(latent_channels, width)
        self.latent_positions = nn.Parameter(torch.randn(latent_tokens, width) * 0.02)  # (L, W)
        self.sigma_embedding = SigmaEmbedding(width)

        self.landmark_in = nn.Linear(3, width)
        self.landmark_index = nn.Parameter(torch.randn(num_landmarks, width) * 0.02)  # (K, W)
        self.image_encoder = ImageEncoder(width, image_channels)
        self.image_positions = nn.Parameter(torch.randn((crop_size // 16) ** 2, width) * 0.02)  # (T, W)
        self.null_condition = nn.Parameter(torch.randn(width) * 0.02)  # (W,) every token of a dropped condition
        if identity_condition:  # the classic fit's head-model identity coefficients as one more token
            self.identity_in = Mlp(identity_condition, width, width)
        self.condition_blocks = nn.ModuleList(Block(width, num_heads) for _ in range(condition_depth))
        self.condition_norm = nn.LayerNorm(width)
        self.condition_pool = Mlp(width, width, width)
        # one key/value projection of the condition serves every block: the 478 + T condition tokens
        # outnumber the L latent tokens ~16 to 1, and per-block projections of them dominated a CPU step
        self.condition_kv = nn.Linear(width, 2 * width)

        self.blocks = nn.ModuleList(DiTBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(width, latent_channels)
        # per token and channel: the VAE's refinement tokens (linear-mode coefficients) have their own scales
        self.register_buffer("latent_mean", torch.zeros(latent_tokens, latent_channels))  # (L, C)
        self.register_buffer("latent_std", torch.ones(latent_tokens, latent_channels))  # (L, C)
        self.initialize_weights()

    @classmethod
    def from_size(cls, size: str, **overrides) -> "ToposDiT":
        try:
            config = dict(DIT_CONFIGS[size])
        except KeyError:
            raise ValueError(f"unknown DiT size {size!r}; choose from {', '.join(DIT_CONFIGS)}") from None
        config.update(overrides)
        return cls(size_name=size, **config)

    def initialize_weights(self) -> None:
        def basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(basic_init)
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        nn.init.zeros_(self.final.modulation[-1].weight)
        nn.init.zeros_(self.final.modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    # ---- latent normalisation ----------------------------------------------------------------------
    def set_latent_statistics(self, latents: torch.Tensor) -> None:
        """Mean and std per token and channel of training latents (B, L, C); padding (constant) stays unscaled."""
        latents = latents.float()
        self.latent_mean.copy_(latents.mean(0))
        std = latents.std(0)
        self.latent_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def normalise(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.latent_mean) / self.latent_std

    def denormalise(self, normalised: torch.Tensor) -> torch.Tensor:
        return normalised * self.latent_std + self.latent_mean

    # ---- the network ---------------------------------------------------------------------------------
    def encode_condition(self, landmarks: torch.Tensor, crop: torch.Tensor, keep: torch.Tensor | None = None,
                         identity: torch.Tensor | None = None) -> torch.Tensor:
        """landmarks (B, K, 3), crop (B, 3, S, S), keep (B,) bool (False: the null condition), and with
        ``identity_condition`` the classic fit's identity coefficients (B, I) → (B, K + T [+ 1], W)."""
        parts = [self.landmark_in(landmarks) + self.landmark_index,  # (B, K, W)
                 self.image_encoder(crop) + self.image_positions]  # (B, T, W)
        if self.config.identity_condition:
            if identity is None:
                raise ValueError("this DiT is conditioned on the classic fit's identity coefficients: pass identity")
            parts.append(self.identity_in(identity[:, : self.config.identity_condition])[:, None])  # (B, 1, W)
        tokens = torch.cat(parts, dim=1)  # (B, K + T [+ 1], W)
        if keep is not None:
            tokens = torch.where(keep[:, None, None], tokens, self.null_condition.to(tokens.dtype))
        for block in self.condition_blocks:
            tokens = block(tokens)
        return self.condition_norm(tokens)

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """noisy (B, L, C) normalised latent at noise level sigma (B,), condition (B, K + T, W) from
        :meth:`encode_condition` → velocity (B, L, C)."""
        b, k, w = condition.shape
        h = self.config.num_heads
        key, value = self.condition_kv(condition).view(b, k, 2, h, w // h).permute(2, 0, 3, 1, 4)  # (B, H, K, W/H)
        x = self.latent_in(noisy) + self.latent_positions  # (B, L, W)
        c = self.sigma_embedding(sigma) + self.condition_pool(condition.mean(1))  # (B, W)
        for block in self.blocks:
            x = block(x, key, value, c)
        return self.final(x, c)
