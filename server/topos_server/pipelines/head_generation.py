"""Portrait condition → TOPOS-DiT samples → heads in the reference topology.

    image (H, W, 3) + detected landmarks (478, 3) px
      │  aligned face crop (face/aligned_crop.py) and the landmarks carried into its frame
      ▼
    condition: landmarks (478, 3) ∈ [−½, ½]² × relative depth, crop (3, S, S) ∈ [−1, 1]
      │  FlowMatchEulerDiscreteScheduler from pure noise (σ = 1) to σ = 0, classifier-free guidance;
      │  each head's noise comes from its own seed, so a head does not depend on its batch-mates
      ▼
    latent (L, C) → TOPOS-VAE decoder → head (N, 3) cm, neutral expression, reference frame
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from topos_server.face.aligned_crop import aligned_face_crop, face_crop_affine
from topos_server.models.dit import ToposDiT

CROP_SIZE = 96


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = 16
    guidance: float = 2.0  # classifier-free guidance scale (1: the conditional model alone)
    shift: float = 1.0  # the scheduler's timestep shift (> 1 spends more steps at high noise)
    temperature: float = 1.0  # scale of the starting noise: < 1 trades seed diversity for the likelier heads

    def __post_init__(self):
        if not (isinstance(self.steps, (int, np.integer)) and 1 <= self.steps <= 200):
            raise ValueError(f"sampling steps must be an integer in [1, 200], got {self.steps!r}")
        if not (np.isfinite(self.guidance) and 0.0 <= self.guidance <= 20.0):
            raise ValueError(f"guidance scale must be a finite number in [0, 20], got {self.guidance!r}")
        if not (np.isfinite(self.shift) and 0.1 <= self.shift <= 20.0):
            raise ValueError(f"scheduler shift must be a finite number in [0.1, 20], got {self.shift!r}")
        if not (np.isfinite(self.temperature) and 0.0 <= self.temperature <= 2.0):
            raise ValueError(f"sampling temperature must be a finite number in [0, 2], got {self.temperature!r}")


def condition_inputs(crop: np.ndarray, landmarks_px: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An aligned crop (S, S, 3) uint8, the (478, 3) landmarks in image pixels (x, y, MediaPipe depth in
    x's pixel scale) and the (2, 3) image→crop affine → the DiT's (478, 3) landmarks and (3, S, S) crop, float32."""
    size = crop.shape[0]
    landmarks_px = np.asarray(landmarks_px, np.float64)
    xy = landmarks_px[:, :2] @ affine[:, :2].T + affine[:, 2]  # (K, 2) crop pixels
    scale = np.sqrt(abs(np.linalg.det(affine[:, :2])))
    depth = landmarks_px[:, 2] * scale
    landmarks = np.concatenate([xy / size - 0.5, (depth - depth.mean())[:, None] / size], axis=1)
    pixels = crop.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return landmarks.astype(np.float32), pixels


def portrait_condition(image: np.ndarray, landmarks_px: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image + its (478, 3) landmarks → the DiT's (478, 3) landmarks and (3, S, S) crop."""
    crop, affine = aligned_face_crop(image, landmarks_px, size)
    return condition_inputs(crop, landmarks_px, affine)


def stored_condition(crop: np.ndarray, landmarks_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same from a crop saved earlier by :func:`aligned_face_crop` (its affine follows from the landmarks)."""
    return condition_inputs(crop, landmarks_px, face_crop_affine(np.asarray(landmarks_px, np.float64)[:, :2], crop.shape[0]))


def seeded_noise(seeds, shape: tuple[int, int]) -> torch.Tensor:
    """(B, L, C) standard normal noise; row b from ``seeds[b]`` alone."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def sample_latents(model: ToposDiT, landmarks: torch.Tensor, crops: torch.Tensor, seeds,
                   options: SamplingOptions = SamplingOptions(), identity: torch.Tensor | None = None) -> torch.Tensor:
    """landmarks (B, K, 3), crops (B, 3, S, S), one seed per row (and the classic fit's identity
    coefficients (B, I) for a model conditioned on them) → (B, L, C) latents (denormalised)."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    b = landmarks.shape[0]
    latent_shape = (model.config.latent_tokens, model.config.latent_channels)
    x = options.temperature * seeded_noise(seeds, latent_shape).to(device)  # (B, L, C) float32 whatever the model's dtype
    landmarks, crops = landmarks.to(device, dtype), crops.to(device, dtype)
    identity = None if identity is None else identity.to(device, dtype)
    guided = options.guidance != 1.0
    if guided:  # conditional and unconditional halves in one batch
        keep = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)]).to(device)
        condition = model.encode_condition(landmarks.repeat(2, 1, 1), crops.repeat(2, 1, 1, 1), keep,
                                           None if identity is None else identity.repeat(2, 1))  # (2B, K+T, W)
    else:
        condition = model.encode_condition(landmarks, crops, identity=identity)  # (B, K+T, W)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=options.shift)
    scheduler.set_timesteps(options.steps, device=device)
    for t in scheduler.timesteps:
        sigma = (t / scheduler.config.num_train_timesteps).expand(condition.shape[0]).to(dtype)
        model_in = (x.repeat(2, 1, 1) if guided else x).to(dtype)
        velocity = model(model_in, sigma, condition).float()  # (B or 2B, L, C)
        if guided:
            conditional, unconditional = velocity.chunk(2)
            velocity = unconditional + options.guidance * (conditional - unconditional)
        x = scheduler.step(velocity, t, x).prev_sample
    return model.denormalise(x)
