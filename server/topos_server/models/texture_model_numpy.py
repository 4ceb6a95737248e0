"""TOPOS-Texture's sampler in numpy: what ``--texture learned`` runs, without importing torch or diffusers.

``topos generate --texture learned`` completes one bake per portrait with one small UNet pass at 32²; importing
torch, diffusers (which imports ``torch._dynamo``) and the diffusers scheduler (which imports ``scipy.stats``)
took 4–6 s of every such run on the 2-core box, twenty times the pass itself. This module reads the same
weights (``config.json`` + ``diffusion_pytorch_model.safetensors`` via ``safetensors.numpy``) and runs the same
network as :class:`~topos_server.models.texture_model.ToposTextureModel`, whose ``UNet2DModel`` it mirrors layer
by layer (conv_in → down blocks → mid block with self-attention → up blocks with skips → conv_out, with the
sinusoidal timestep embedding); tests/test_texture_model.py holds the two equal within 1e-4 on the committed
weights and on a random model, and the Euler sampler equal to ``FlowMatchEulerDiscreteScheduler``'s. Training,
validation and the benchmarks' torch path stay with the torch model.

The model's interface (channels of the condition and the target, the σ → timestep scale) lives here, torch-free;
``texture_model.py`` and the training pairs import it from here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONDITION_CHANNELS = ("observed_r", "observed_g", "observed_b", "observed_weight", "fill_r", "fill_g", "fill_b",
                      "position_x", "position_y", "position_z", "normal_x", "normal_y", "normal_z", "island",
                      "mirror_r", "mirror_g", "mirror_b", "mirror_weight")
FILL = slice(4, 7)  # the condition's channels holding the baker's fill
TARGET_CHANNELS = ("albedo_r", "albedo_g", "albedo_b", "roughness")
TRAIN_TIMESTEPS = 1000
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
NORM_EPS = 1e-5


def attention_head_dim(block_out_channels) -> int:
    """Channels per head of the UNet's self-attention at its deepest level (both implementations build it so)."""
    return max(8, int(block_out_channels[-1]) // 4)


@dataclass(frozen=True)
class TextureModelConfig:
    """The fields of ``config.json`` the network's shape depends on (``ToposTextureModel``'s registered config)."""

    resolution: int
    unshuffle: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    norm_num_groups: int
    tile: int
    topology_id: str
    size_name: str

    @classmethod
    def of(cls, config) -> "TextureModelConfig":
        get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
        return cls(int(get("resolution")), int(get("unshuffle")), tuple(int(c) for c in get("block_out_channels")),
                   int(get("layers_per_block")), int(get("norm_num_groups")), int(get("tile")),
                   str(get("topology_id")), str(get("size_name")))

    @property
    def attention_head_dim(self) -> int:
        return attention_head_dim(self.block_out_channels)


class NumpyTextureModel:
    """The trained network as numpy arrays (float32); :meth:`sample` as ``ToposTextureModel.sample``."""

    def __init__(self, config: TextureModelConfig, weights: dict[str, np.ndarray]):
        self.config = config
        self.weights = {key: np.ascontiguousarray(value, np.float32) for key, value in weights.items()}
        missing = [key for key in self._expected_keys() if key not in self.weights]
        if missing:
            raise ValueError(f"TOPOS-Texture weights lack {len(missing)} tensors (first: {missing[0]})")

    @classmethod
    def load(cls, folder: str | Path) -> "NumpyTextureModel":
        from safetensors.numpy import load_file

        folder = Path(folder)
        config = TextureModelConfig.of(json.loads((folder / "config.json").read_text()))
        return cls(config, load_file(str(folder / WEIGHTS_FILE)))

    @classmethod
    def of(cls, model) -> "NumpyTextureModel":
        """The same network as a torch ``ToposTextureModel`` (its current weights)."""
        return cls(TextureModelConfig.of(model.config),
                   {key: value.detach().float().cpu().numpy() for key, value in model.state_dict().items()})

    def _expected_keys(self) -> list[str]:
        keys = ["unet.conv_in.weight", "unet.time_embedding.linear_1.weight", "unet.time_embedding.linear_2.weight",
                "unet.mid_block.attentions.0.to_q.weight", "unet.conv_norm_out.weight", "unet.conv_out.weight"]
        levels = len(self.config.block_out_channels)
        keys += [f"unet.down_blocks.{i}.resnets.{j}.conv1.weight" for i in range(levels)
                 for j in range(self.config.layers_per_block)]
        keys += [f"unet.up_blocks.{i}.resnets.{j}.conv1.weight" for i in range(levels)
                 for j in range(self.config.layers_per_block + 1)]
        return keys

    # ---- the network -------------------------------------------------------------------------------------
    def __call__(self, noisy: np.ndarray, sigma: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """noisy (B, 4, R, R), sigma (B,) in [0, 1], condition (B, 18, R, R) → predicted x0 (B, 4, R, R)."""
        f = self.config.unshuffle
        x = pixel_unshuffle(np.concatenate([noisy, condition], axis=1).astype(np.float32), f)  # (B, 22·f², R/f, R/f)
        residual = pixel_shuffle(self._unet(x, np.asarray(sigma, np.float32) * TRAIN_TIMESTEPS), f)  # (B, 4, R, R)
        prior = np.concatenate([condition[:, FILL], np.zeros_like(residual[:, 3:])], axis=1)
        return prior + residual

    def velocity(self, noisy: np.ndarray, sigma: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """The flow's velocity ε − x0 = (x_σ − x0) / σ (the convention of ``FlowMatchEulerDiscreteScheduler``)."""
        x0 = self(noisy, sigma, condition)
        return (noisy - x0) / np.maximum(sigma, 1e-3)[:, None, None, None]

    def sample(self, condition: np.ndarray, steps: int, seed: int) -> np.ndarray:
        """condition (B, 18, R, R) → x0 (B, 4, R, R) in ~[−1, 1]: ``steps`` Euler steps from noise seeded by ``seed``."""
        b, _, r, _ = condition.shape
        noise = np.random.default_rng(int(seed)).standard_normal((b, len(TARGET_CHANNELS), r, r), dtype=np.float32)
        return self.denoise(noise, condition, steps)

    def denoise(self, noise: np.ndarray, condition: np.ndarray, steps: int) -> np.ndarray:
        """Euler steps on σ = 1, 1 − 1/steps, …, 0 from ``noise`` (B, 4, R, R): x ← x + (σ_next − σ) · v, the step
        ``FlowMatchEulerDiscreteScheduler`` takes on that grid (``ToposTextureModel.sample``)."""
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        condition = np.asarray(condition, np.float32)
        sigmas = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)
        x = np.asarray(noise, np.float32)
        for sigma, following in zip(sigmas[:-1], sigmas[1:]):
            velocity = self.velocity(x, np.full(len(x), sigma, np.float32), condition)
            x = x + (following - sigma) * velocity
        return x

    def _unet(self, x: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
        """diffusers ``UNet2DModel.forward`` for this model's configuration: x (B, C, h, h), timesteps (B,)."""
        w, groups = self.weights, self.config.norm_num_groups
        embedding = timestep_embedding(timesteps, self.config.block_out_channels[0])  # (B, C0)
        embedding = linear(silu(linear(embedding, w, "unet.time_embedding.linear_1")), w,
                           "unet.time_embedding.linear_2")  # (B, 4·C0)
        x = conv2d(x, w, "unet.conv_in")
        skips = [x]
        levels = len(self.config.block_out_channels)
        for i in range(levels):
            for j in range(self.config.layers_per_block):
                x = self._resnet(x, embedding, f"unet.down_blocks.{i}.resnets.{j}")
                skips.append(x)
            if i < levels - 1:
                x = conv2d(x, w, f"unet.down_blocks.{i}.downsamplers.0.conv", stride=2)
                skips.append(x)
        x = self._resnet(x, embedding, "unet.mid_block.resnets.0")
        x = self._attention(x, "unet.mid_block.attentions.0")
        x = self._resnet(x, embedding, "unet.mid_block.resnets.1")
        for i in range(levels):
            for j in range(self.config.layers_per_block + 1):
                x = self._resnet(np.concatenate([x, skips.pop()], axis=1), embedding, f"unet.up_blocks.{i}.resnets.{j}")
            if i < levels - 1:
                x = conv2d(x.repeat(2, axis=2).repeat(2, axis=3), w, f"unet.up_blocks.{i}.upsamplers.0.conv")
        x = silu(group_norm(x, groups, w, "unet.conv_norm_out"))
        return conv2d(x, w, "unet.conv_out")

    def _resnet(self, x: np.ndarray, embedding: np.ndarray, name: str) -> np.ndarray:
        """``ResnetBlock2D`` (time embedding added after the first convolution, default scale/shift)."""
        w, groups = self.weights, self.config.norm_num_groups
        h = conv2d(silu(group_norm(x, groups, w, f"{name}.norm1")), w, f"{name}.conv1")
        h = h + linear(silu(embedding), w, f"{name}.time_emb_proj")[:, :, None, None]
        h = conv2d(silu(group_norm(h, groups, w, f"{name}.norm2")), w, f"{name}.conv2")
        if f"{name}.conv_shortcut.weight" in w:
            x = conv2d(x, w, f"{name}.conv_shortcut")
        return x + h

    def _attention(self, x: np.ndarray, name: str) -> np.ndarray:
        """The mid block's ``Attention`` (group norm, one residual connection)."""
        w = self.weights
        b, c, height, width = x.shape
        heads = c // self.config.attention_head_dim
        d = c // heads
        tokens = group_norm(x, self.config.norm_num_groups, w, f"{name}.group_norm").reshape(b, c, -1).transpose(0, 2, 1)

        def projected(key: str) -> np.ndarray:  # (B, T, C) → (B, heads, T, d)
            return linear(tokens, w, f"{name}.{key}").reshape(b, -1, heads, d).transpose(0, 2, 1, 3)

        q, k, v = projected("to_q"), projected("to_k"), projected("to_v")
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)  # (B, heads, T, T)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attended = (scores / scores.sum(axis=-1, keepdims=True)) @ v  # (B, heads, T, d)
        out = linear(attended.transpose(0, 2, 1, 3).reshape(b, -1, c), w, f"{name}.to_out.0")  # (B, T, C)
        return out.transpose(0, 2, 1).reshape(b, c, height, width) + x


def timestep_embedding(timesteps: np.ndarray, dim: int, max_period: float = 10000.0) -> np.ndarray:
    """(B,) → (B, dim): diffusers' sinusoidal embedding with ``flip_sin_to_cos=True``, no frequency shift."""
    half = dim // 2
    frequencies = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float32) / half)  # (half,)
    angles = np.asarray(timesteps, np.float32)[:, None] * frequencies[None]  # (B, half)
    return np.concatenate([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def linear(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    """(…, in) → (…, out) with ``name.weight`` (out, in) and ``name.bias`` (out,)."""
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def group_norm(x: np.ndarray, groups: int, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    """(B, C, H, W) normalised per sample over each group of C / groups channels, then ``name``'s scale and shift."""
    b, c = x.shape[:2]
    grouped = x.reshape(b, groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    variance = grouped.var(axis=2, keepdims=True)
    normalised = ((grouped - mean) / np.sqrt(variance + NORM_EPS)).reshape(x.shape)
    return normalised * weights[f"{name}.weight"][None, :, None, None] + weights[f"{name}.bias"][None, :, None, None]


def conv2d(x: np.ndarray, weights: dict[str, np.ndarray], name: str, stride: int = 1) -> np.ndarray:
    """(B, C, H, W) → (B, O, H', W'): ``name.weight`` (O, C, k, k), zero padding k // 2 (diffusers' 3×3 and 1×1)."""
    kernel, bias = weights[f"{name}.weight"], weights[f"{name}.bias"]
    out_channels, channels, k, _ = kernel.shape
    b = x.shape[0]
    if k == 1 and stride == 1:
        return np.einsum("oc,bchw->bohw", kernel[:, :, 0, 0], x, optimize=True) + bias[None, :, None, None]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    height, width = windows.shape[2:4]  # windows: (B, C, H', W', k, k)
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(b * height * width, channels * k * k)
    out = columns @ kernel.reshape(out_channels, -1).T + bias  # (B·H'·W', O)
    return np.ascontiguousarray(out.reshape(b, height, width, out_channels).transpose(0, 3, 1, 2))


def pixel_unshuffle(x: np.ndarray, f: int) -> np.ndarray:
    """torch's ``PixelUnshuffle(f)``: (B, C, H, W) → (B, C·f², H/f, W/f), channel c·f² + i·f + j from offset (i, j)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // f, f, w // f, f).transpose(0, 1, 3, 5, 2, 4).reshape(b, c * f * f, h // f, w // f)


def pixel_shuffle(x: np.ndarray, f: int) -> np.ndarray:
    """torch's ``PixelShuffle(f)``, the inverse of :func:`pixel_unshuffle`."""
    b, c, h, w = x.shape
    out = c // (f * f)
    return x.reshape(b, out, f, f, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, out, h * f, w * f)
