"""``topos train dit``: TOPOS-DiT on (portrait, head) pairs — rectified flow on TOPOS-VAE latents.

Data: folders of pair shards (``data/synthetic_portraits.py`` writes them from synthetic renders;
``data/studio_pairs.py`` from a studio's real portraits and scans): per sample the aligned face crop,
the detected landmarks and the neutral head in the reference topology. The trainer encodes every
head once with the TOPOS-VAE it is given (cached next to the shards, keyed by that VAE's
fingerprint, so a new VAE never reuses stale latents), sets the latent statistics per token and channel and
trains the velocity ε − x₀ at σ drawn logit-normally, the condition dropped 10 % of the time for
classifier-free guidance. An exponential moving average of the weights is what gets evaluated and
saved. Evaluation samples held-out pairs and measures the decoded heads' skin error in mm.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from topos_server.models.dit import ToposDiT
from topos_server.pipelines.head_generation import SamplingOptions, sample_latents, stored_condition
from topos_server.pipelines.head_latents import HeadLatents, vae_fingerprint

CHECKPOINT_DIR = "checkpoint"
MODEL_DIR = "model"
STATE_FILE = "training_state.pt"
LOG_FILE = "training_log.jsonl"
LATENT_CACHE = "latents"


@dataclass
class DiTTrainingConfig:
    size: str = "small"
    pairs: list[str] = field(default_factory=list)  # folders of training shards
    eval_pairs: str | None = None  # a folder of held-out shards
    steps: int = 20_000
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    ema_decay: float = 0.999
    condition_dropout: float = 0.1
    time_limit_s: float | None = None
    eval_every: int = 500
    eval_samples: int = 64
    eval_sampling: SamplingOptions = field(default_factory=lambda: SamplingOptions(steps=10, guidance=1.0))
    seed: int = 0
    vae_weights: str | None = None  # None: the bundled TOPOS-VAE
    identity_condition: int = 0  # > 0: condition on the classic fit's first so many identity coefficients too
    mirror: bool = True  # train on each pair's mirror image too (not with identity_condition: no mirrored fit)


def shard_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(folder.glob("shard_*.npz"))
    if not files:
        raise ValueError(f"{folder}: no pair shards (shard_*.npz) there")
    return files


class HeadMirror:
    """Left-right mirroring of a training pair: the head through the topology's vertex symmetry, the
    landmarks through the MediaPipe points' own (x → −x in the crop frame, left and right indices
    swapped), the crop flipped. A mirrored pair is another plausible person photographed the same way:
    twice the pairs for the price of one more encoding per head."""

    def __init__(self, topology):
        from scipy.spatial import cKDTree

        if topology.symmetry is None:
            raise ValueError("the reference topology has no vertex symmetry: cannot mirror heads")
        self.vertex_partner = np.asarray(topology.symmetry, np.int64)  # (N,)
        landmarks = topology.landmarks["mediapipe"].evaluate(topology.rest_points.astype(np.float64))  # (478, 3)
        distance, partner = cKDTree(landmarks).query(landmarks * np.array([-1.0, 1.0, 1.0]))
        if distance.max() > 0.1 or (partner[partner] != np.arange(len(partner))).any():
            raise ValueError("the MediaPipe landmarks on the reference head are not left/right symmetric")
        self.landmark_partner = torch.from_numpy(partner.astype(np.int64))  # (478,)
        self.flip_x = torch.tensor([-1.0, 1.0, 1.0])

    def heads(self, heads: np.ndarray) -> np.ndarray:
        """(B, N, 3) → the mirrored heads (B, N, 3)."""
        return heads[:, self.vertex_partner] * np.array([-1.0, 1.0, 1.0], heads.dtype)

    def condition(self, landmarks: torch.Tensor, crop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """landmarks (B, 478, 3) in the crop frame, crops (B, 3, S, S) → the mirrored pair's."""
        return landmarks[:, self.landmark_partner] * self.flip_x, crop.flip(-1)


def encoded_shard(latents: HeadLatents, heads: np.ndarray, cache: Path) -> np.ndarray:
    """(B, L, C) latents of (B, N, 3) heads, cached in ``cache`` (.npy, written atomically)."""
    if cache.exists():
        return np.load(cache)
    code = torch.cat([latents.encode_with_vertices(heads[i:i + 32].astype(np.float32), seed=i)
                      for i in range(0, len(heads), 32)]).numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, code)
    tmp.replace(cache)
    return code


class PairLatents(torch.utils.data.Dataset):
    """Every sample of some shard folders as DiT inputs: landmarks (478, 3), crop (3, S, S), latent (L, C);
    with ``mirror`` also each pair's mirror image (``batch(..., mirrored=...)``)."""

    def __init__(self, folders, latents: HeadLatents, limit: int | None = None, progress=None,
                 mirror: HeadMirror | None = None):
        fingerprint = vae_fingerprint(latents)
        self.mirror = mirror
        crops, landmarks, codes, mirrored_codes, heads, identities = [], [], [], [], [], []
        for folder in folders:
            for shard in shard_files(folder):
                with np.load(shard) as data:
                    cache = shard.parent / LATENT_CACHE / f"{fingerprint}-vertices"  # encode_with_vertices
                    neutral = data["neutral"]
                    code = encoded_shard(latents, neutral, cache / (shard.stem + ".npy"))
                    if mirror is not None:
                        mirrored_codes.append(encoded_shard(latents, mirror.heads(neutral),
                                                            cache / (shard.stem + "_mirrored.npy")))
                    crops.append(data["crop"])
                    landmarks.append(data["landmarks"])
                    identities.append(data["classic_identity"] if "classic_identity" in data.files
                                      else np.full((len(code), 0), np.nan, np.float32))
                    codes.append(code)
                    if limit is not None:
                        heads.append(data["neutral"][:, : latents.skin_vertex_count])
                if progress:
                    progress(f"latents of {shard}")
                if limit is not None and sum(len(c) for c in codes) >= limit:
                    break
        stop = limit if limit is not None else None
        self.crops = np.concatenate(crops)[:stop]  # (B, S, S, 3) uint8
        self.landmarks_px = np.concatenate(landmarks)[:stop]  # (B, 478, 3)
        self.latents = torch.from_numpy(np.concatenate(codes)[:stop]).float()  # (B, L, C)
        self.mirrored_latents = (torch.from_numpy(np.concatenate(mirrored_codes)[:stop]).float()
                                 if mirror is not None else None)  # (B, L, C)
        self.skin = np.concatenate(heads)[:stop].astype(np.float32) if heads else None  # (B, S_v, 3) eval truth
        widths = {i.shape[1] for i in identities}
        # (B, I) the classic fit's identity coefficients, where every shard has them
        self.classic_identity = (torch.from_numpy(np.concatenate(identities)[:stop]).float()
                                 if len(widths) == 1 and 0 not in widths else None)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.latents)

    def condition(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return stored_condition(self.crops[index], self.landmarks_px[index])

    def batch(self, indices, mirrored: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Pairs ``indices``; where ``mirrored`` (B,) bool is set, their mirror images (needs ``mirror``)."""
        indices = list(indices)
        conditions = [self.condition(i) for i in indices]
        batch = {"landmarks": torch.from_numpy(np.stack([c[0] for c in conditions])),  # (B, 478, 3)
                 "crop": torch.from_numpy(np.stack([c[1] for c in conditions])),  # (B, 3, S, S)
                 "latent": self.latents[indices]}  # (B, L, C)
        if self.classic_identity is not None:
            batch["identity"] = self.classic_identity[indices]  # (B, I)
        if mirrored is not None and mirrored.any():
            if self.mirror is None:
                raise ValueError("these pairs were loaded without mirroring")
            landmarks, crop = self.mirror.condition(batch["landmarks"], batch["crop"])
            batch["landmarks"] = torch.where(mirrored[:, None, None], landmarks, batch["landmarks"])
            batch["crop"] = torch.where(mirrored[:, None, None, None], crop, batch["crop"])
            batch["latent"] = torch.where(mirrored[:, None, None], self.mirrored_latents[indices], batch["latent"])
        return batch


def logit_normal_sigmas(count: int, generator: torch.Generator) -> torch.Tensor:
    """(count,) σ = sigmoid(n), n ~ N(0, 1): most training at mid noise, where the velocity is hardest."""
    return torch.sigmoid(torch.randn(count, generator=generator))


def flow_matching_loss(model: ToposDiT, batch: dict[str, torch.Tensor], generator: torch.Generator,
                       condition_dropout: float) -> torch.Tensor:
    x0 = model.normalise(batch["latent"])  # (B, L, C)
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    sigma = logit_normal_sigmas(b, generator).to(x0.device)  # (B,)
    noisy = (1.0 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    keep = (torch.rand(b, generator=generator) >= condition_dropout).to(x0.device)
    condition = model.encode_condition(batch["landmarks"], batch["crop"], keep, batch.get("identity"))
    velocity = model(noisy, sigma, condition)  # (B, L, C)
    return (velocity.float() - (noise - x0)).pow(2).mean()


def learning_rate(config: DiTTrainingConfig, step: int, time_fraction: float) -> float:
    warm = min(1.0, (step + 1) / config.warmup_steps)
    progress = max(step / config.steps, time_fraction)
    return config.learning_rate * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def skin_error_mm(model: ToposDiT, pairs: PairLatents, latents: HeadLatents, sampling: SamplingOptions,
                  seed: int = 0, batch_size: int = 32) -> dict[str, float]:
    """Mean neutral-skin vertex error (mm) of sampled heads (seed ``seed`` per pair) vs the truth, and of
    the truth's own latent decoded (the VAE's floor), over the first ``eval_samples`` held-out pairs."""
    model.eval()
    errors, floors = [], []
    skin = latents.skin_vertex_count
    for start in range(0, len(pairs), batch_size):
        ids = range(start, min(len(pairs), start + batch_size))
        batch = pairs.batch(ids)
        sampled = sample_latents(model, batch["landmarks"], batch["crop"], [seed] * len(ids), sampling,
                                 batch.get("identity"))
        truth = torch.from_numpy(pairs.skin[list(ids)])  # (B, S_v, 3)
        heads = latents.decode(sampled)[:, :skin].cpu()
        floor = latents.decode(batch["latent"])[:, :skin].cpu()
        errors.append(10.0 * (heads - truth).norm(dim=-1).mean(1))
        floors.append(10.0 * (floor - truth).norm(dim=-1).mean(1))
    return {"eval_skin_error_mm": float(torch.cat(errors).mean()), "eval_vae_floor_mm": float(torch.cat(floors).mean())}


def save_checkpoint(out_dir: Path, model: ToposDiT, ema: ToposDiT, optimizer, step: int,
                    config: DiTTrainingConfig) -> None:
    from topos_sdk.atomic_files import atomic_output_dir

    with atomic_output_dir(out_dir / CHECKPOINT_DIR) as tmp:
        model.save_pretrained(tmp / "online", safe_serialization=True)
        ema.save_pretrained(tmp / "ema", safe_serialization=True)
        config_dict = asdict(config)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "config": config_dict}, tmp / STATE_FILE)


def train(config: DiTTrainingConfig, out_dir, resume: bool = False, latents: HeadLatents | None = None,
          progress=None, device: str | None = None) -> dict:
    """Train (or resume) into ``out_dir``; returns the last log record; ``progress(record | str)`` sees every log line."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not config.pairs:
        raise ValueError("no training pairs: give at least one folder of pair shards")
    latents = latents or HeadLatents.load(config.vae_weights)
    if config.mirror and config.identity_condition:
        raise ValueError("mirroring the pairs needs no identity condition (the classic fit of a mirrored photo "
                         "is not stored): turn one of them off")
    mirror = HeadMirror(latents.topology) if config.mirror else None
    pairs = PairLatents(config.pairs, latents, progress=progress, mirror=mirror)
    eval_pairs = (PairLatents([config.eval_pairs], latents, limit=config.eval_samples)
                  if config.eval_pairs else None)

    start_step, state = 0, None
    if resume and (out_dir / CHECKPOINT_DIR / STATE_FILE).exists():
        model = ToposDiT.from_pretrained(out_dir / CHECKPOINT_DIR / "online", low_cpu_mem_usage=False)
        ema = ToposDiT.from_pretrained(out_dir / CHECKPOINT_DIR / "ema", low_cpu_mem_usage=False)
        state = torch.load(out_dir / CHECKPOINT_DIR / STATE_FILE, map_location="cpu", weights_only=False)
        start_step = int(state["step"])
        if model.config.vae_id != pairs.fingerprint:
            raise ValueError(f"the checkpoint's DiT generates latents of VAE {model.config.vae_id}, "
                             f"these pairs were encoded with {pairs.fingerprint}")
    elif resume:
        raise FileNotFoundError(f"--resume: no checkpoint in {out_dir / CHECKPOINT_DIR}")
    else:
        length, channels = latents.latent_shape
        if config.identity_condition and (pairs.classic_identity is None
                                          or pairs.classic_identity.shape[1] < config.identity_condition):
            raise ValueError("identity conditioning needs the classic fit's identity in every training shard")
        model = ToposDiT.from_size(config.size, latent_tokens=length, latent_channels=channels,
                                   crop_size=pairs.crops.shape[1], condition_dropout=config.condition_dropout,
                                   vae_id=pairs.fingerprint, identity_condition=config.identity_condition)
        model.set_latent_statistics(pairs.latents)
        ema = ToposDiT.from_config(model.config)
        ema.load_state_dict(model.state_dict())
    model.to(device).train()
    ema.to(device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.99))
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    started = time.monotonic()
    record: dict = {}
    with open(out_dir / LOG_FILE, "a") as log:
        for step in range(start_step, config.steps):
            elapsed = time.monotonic() - started
            lr = learning_rate(config, step, elapsed / config.time_limit_s if config.time_limit_s else 0.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            ids = torch.randint(len(pairs), (config.batch_size,), generator=step_generator).tolist()
            mirrored = (torch.rand(config.batch_size, generator=step_generator) < 0.5) if config.mirror else None
            batch = {k: v.to(device) for k, v in pairs.batch(ids, mirrored).items()}
            with autocast:
                loss = flow_matching_loss(model, batch, step_generator, config.condition_dropout)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                decay = min(config.ema_decay, (1 + step) / (10 + step))
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1.0 - decay)

            done = step + 1
            record = {"step": done, "loss": float(loss.detach()), "lr": lr, "elapsed_s": round(time.monotonic() - started, 1)}
            out_of_time = config.time_limit_s is not None and time.monotonic() - started > config.time_limit_s
            last = done == config.steps or out_of_time
            if eval_pairs is not None and (done % config.eval_every == 0 or last):
                record.update(skin_error_mm(ema, eval_pairs, latents, config.eval_sampling))
            log.write(json.dumps(record) + "\n")
            log.flush()
            if progress is not None:
                progress(record)
            if done % config.eval_every == 0 or last:
                save_checkpoint(out_dir, model, ema, optimizer, done, config)
            if out_of_time:
                break
    ema.to("cpu").eval()
    ema.save_pretrained(out_dir / MODEL_DIR, safe_serialization=True)
    return record
