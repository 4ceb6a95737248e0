"""Training TOPOS-Texture on real portraits' bakes: the loop behind ``topos train texture``.

Rectified flow (the ``FlowMatchEulerDiscreteScheduler`` convention): ``x_σ = (1 − σ) x0 + σ ε``;
the model predicts x0 (its sampler turns that into the velocity ``ε − x0``); the loss is the squared
x0 error (the velocity error × σ²) weighted per texel by
:class:`~topos_server.data.texture_pairs.TexturePairs` (observed truth only, hidden texels weighted
up; roughness over the whole island). σ is drawn from the few-step sampling grids most of the time
(``SAMPLER_SIGMAS``), uniformly otherwise: the model is trained where it is sampled.

Batches are a pure function of ``(seed, step)``, so resuming from a checkpoint continues the same
sequence. Checkpoints hold the model (diffusers ``save_pretrained``: ``config.json`` + safetensors),
the exponential moving average of the weights (``ema/``: what is evaluated and delivered), the optimiser
state and the step; the final ``model/`` (the moving average) is stored as float16. Evaluation restores hidden-but-observed texels of validation
bakes (training-split portraits kept out of the batches, never the held-out split) with the sampler
and reports the mean L1 in linear RGB beside the baker's fill of the same input.
CUDA + bf16 autocast when available.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from topos_server.data.texture_pairs import (RELIGHT_PROBABILITY, TexturePairs, decode_albedo, mirrored_item,
                                             training_item, uv_geometry)
from topos_server.models.texture_model import FILL, ToposTextureModel

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "training_state.pt"
LOG_FILE = "training_log.jsonl"
SAMPLER_SIGMAS = (1.0, 0.75, 0.5, 0.25)  # the σ grids of the 2- and 4-step samplers
SAMPLER_SIGMA_PROBABILITY = 0.7
SAMPLE_STEPS = 2


@dataclass
class TextureTrainingConfig:
    size: str = "small"
    steps: int = 2000
    batch_size: int = 12
    crop: int | None = None  # random crops of the maps (the UV position channels say where a crop lies); None: whole
    learning_rate: float = 1e-3
    ema_decay: float = 0.995  # the evaluated and delivered weights are this moving average of the trained ones
    warmup_steps: int = 50
    weight_decay: float = 0.0
    roughness_weight: float = 0.1
    eval_every: int = 100
    validation_items: int = 8  # bakes kept out of the batches for evaluation
    relight_probability: float = RELIGHT_PROBABILITY  # share of examples re-lit, then de-lit by the baker's SH
    colour_probability: float = 0.0  # share of training examples given a random exposure and tint (texture_pairs)
    views_per_item: int = 4  # hidden views (and their baker's fill) kept per bake
    mirror_items: bool = False  # also train on each training bake's face mirrored left↔right (twice the faces)
    workers: int = 0  # processes making the view pool and the batches (0: all in the training process)
    eval_examples: int = 16
    checkpoint_every: int = 100
    seed: int = 0
    time_limit_s: float | None = None  # stop (with a checkpoint) after this much wall time


def flow_matching_loss(model: ToposTextureModel, batch: dict[str, torch.Tensor], sigma: torch.Tensor,
                       noise: torch.Tensor, roughness_weight: float) -> dict[str, torch.Tensor]:
    """Weighted x0 error (= the velocity error × σ²) on x_σ = (1 − σ) x0 + σ ε.

    batch: condition (B, 18, c, c), target x0 (B, 4, c, c), loss_weight (B, 2, c, c)."""
    x0 = batch["target"]
    s = sigma[:, None, None, None]
    predicted = model((1.0 - s) * x0 + s * noise, sigma, batch["condition"]).float()  # (B, 4, c, c)
    error = (predicted - x0) ** 2  # (B, 4, c, c)
    texel_weight, island = batch["loss_weight"][:, 0:1], batch["loss_weight"][:, 1:2]  # (B, 1, c, c)
    albedo = (error[:, :3] * texel_weight).sum() / (3.0 * texel_weight.sum()).clamp_min(1e-6)
    roughness = (error[:, 3:4] * island).sum() / island.sum().clamp_min(1e-6)
    return {"loss": albedo + roughness_weight * roughness, "albedo": albedo, "roughness": roughness}


def draw_sigmas(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    grid = torch.tensor(SAMPLER_SIGMAS)[torch.randint(len(SAMPLER_SIGMAS), (batch_size,), generator=generator)]
    uniform = torch.rand(batch_size, generator=generator)
    on_grid = torch.rand(batch_size, generator=generator) < SAMPLER_SIGMA_PROBABILITY
    return torch.where(on_grid, grid, uniform)


@torch.no_grad()
def evaluate(model: ToposTextureModel, batch: dict[str, torch.Tensor], device, seed: int = 0) -> dict[str, float]:
    """Mean L1 (linear RGB) on the hidden-but-observed texels: the sampled model (1 and SAMPLE_STEPS Euler
    steps) vs the baker's fill."""
    was_training = model.training
    model.eval()
    sampled = {steps: model.sample(batch["condition"].to(device), steps,
                                   torch.Generator().manual_seed(seed)).float().cpu()  # (B, 4, R, R)
               for steps in sorted({1, SAMPLE_STEPS})}
    model.train(was_training)
    hidden = batch["hidden"][:, None]  # (B, 1, R, R)
    truth = decode_albedo(batch["target"][:, :3])
    total = (3.0 * hidden.sum()).clamp_min(1e-6)

    def l1(albedo: torch.Tensor) -> float:
        return float(((albedo - truth).abs() * hidden).sum() / total)

    return {**{f"eval_l1_learned_{steps}step": l1(decode_albedo(x0[:, :3])) for steps, x0 in sampled.items()},
            "eval_l1_fill": l1(decode_albedo(batch["condition"][:, FILL]))}


def learning_rate(config: TextureTrainingConfig, step: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5 % over the steps or the time limit, whichever runs out first."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = max((step - config.warmup_steps) / max(1, config.steps - config.warmup_steps), time_fraction)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class _StepBatches(torch.utils.data.Dataset):
    """Batch ``k`` is the training batch of step ``first_step + k``: the same batches as without workers."""

    def __init__(self, pairs: TexturePairs, batch_size: int, first_step: int, steps: int):
        self.pairs, self.batch_size, self.first_step, self.steps = pairs, batch_size, first_step, steps

    def __len__(self) -> int:
        return max(0, self.steps - self.first_step)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        step = self.first_step + k
        return self.pairs.batch(range(step * self.batch_size, (step + 1) * self.batch_size))


def save_checkpoint(out_dir: Path, model: ToposTextureModel, ema: ToposTextureModel, optimizer, step: int,
                    config: TextureTrainingConfig) -> None:
    from topos_sdk.atomic_files import atomic_output_dir

    with atomic_output_dir(out_dir / CHECKPOINT_DIR) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        ema.save_pretrained(tmp / "ema", safe_serialization=True)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "config": asdict(config)}, tmp / STATE_FILE)


def train(config: TextureTrainingConfig, out_dir, records, resume: bool = False, topology=None, progress=None,
          device: str | None = None) -> dict:
    """Train (or resume) into ``out_dir`` on bank ``records`` (training split only); returns the last log record.

    ``progress(record)`` gets every log line."""
    from topos_server.assets.cache import AssetCache

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    topology = topology or AssetCache.default().ict_topology()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)

    start_step = 0
    if resume and (out_dir / CHECKPOINT_DIR / STATE_FILE).exists():
        model = ToposTextureModel.from_pretrained(out_dir / CHECKPOINT_DIR, low_cpu_mem_usage=False)
        ema = ToposTextureModel.from_pretrained(out_dir / CHECKPOINT_DIR / "ema", low_cpu_mem_usage=False)
        state = torch.load(out_dir / CHECKPOINT_DIR / STATE_FILE, map_location="cpu", weights_only=False)
        start_step = int(state["step"])
    elif resume:
        raise FileNotFoundError(f"--resume: no checkpoint in {out_dir / CHECKPOINT_DIR}")
    else:
        model = ToposTextureModel.from_size(config.size, topology_id=topology.topology_id)
        ema = ToposTextureModel.from_config(model.config)
        ema.load_state_dict(model.state_dict())
        state = None
    if model.config.topology_id != topology.topology_id:
        raise ValueError(f"checkpoint topology {model.config.topology_id} differs from the reference {topology.topology_id}")
    resolution = model.config.resolution
    geometry = uv_geometry(topology, topology.rest_points, resolution, model.config.tile)
    items = [training_item(record, geometry) for record in records]
    if len(items) < config.validation_items + 2:
        raise ValueError(f"{len(items)} bakes: need at least {config.validation_items + 2} "
                         f"({config.validation_items} kept for validation)")
    validation = TexturePairs(items[len(items) - config.validation_items:], geometry, topology,
                              seed=config.seed + 1_000_003, relight_probability=config.relight_probability)
    eval_batch = validation.batch(range(config.eval_examples))
    training_items = items[:len(items) - config.validation_items]
    if config.mirror_items:
        training_items += [mirrored_item(item, topology, model.config.tile) for item in training_items]
    pairs = TexturePairs(training_items, geometry, topology,
                         crop=min(config.crop or resolution, resolution), seed=config.seed,
                         views_per_item=config.views_per_item, relight_probability=config.relight_probability,
                         colour_probability=config.colour_probability)
    if config.workers:
        pairs.prepare_views(config.workers)

    model.to(device).train()
    ema.to(device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    started = time.monotonic()
    record: dict = {}
    b = config.batch_size
    batches = (pairs.batch(range(step * b, (step + 1) * b)) for step in range(start_step, config.steps))
    if config.workers:
        batches = iter(torch.utils.data.DataLoader(_StepBatches(pairs, b, start_step, config.steps), batch_size=None,
                                                   num_workers=config.workers, prefetch_factor=4,
                                                   multiprocessing_context="fork",
                                                   pin_memory=device.type == "cuda"))
    with open(out_dir / LOG_FILE, "a") as log:
        for step in range(start_step, config.steps):
            time_fraction = (time.monotonic() - started) / config.time_limit_s if config.time_limit_s else 0.0
            lr = learning_rate(config, step, time_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            sigma = draw_sigmas(b, gen).to(device)
            noise = torch.randn(batch["target"].shape, generator=gen).to(device)
            with autocast:
                losses = flow_matching_loss(model, batch, sigma, noise, config.roughness_weight)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                decay = min(config.ema_decay, (1 + step) / (10 + step))
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1.0 - decay)

            done = step + 1
            record = {"step": done, "lr": lr, "elapsed_s": round(time.monotonic() - started, 1),
                      **{k: float(v.detach()) for k, v in losses.items()}}
            out_of_time = config.time_limit_s is not None and time.monotonic() - started > config.time_limit_s
            if done % config.eval_every == 0 or done == config.steps or out_of_time:
                record.update(evaluate(ema, eval_batch, device, config.seed))
            log.write(json.dumps(record) + "\n")
            log.flush()
            if progress is not None:
                progress(record)
            if done % config.checkpoint_every == 0 or done == config.steps or out_of_time:
                save_checkpoint(out_dir, model, ema, optimizer, done, config)
            if out_of_time:
                break
    ema.to("cpu", torch.float16).eval()  # the deliverable: float16 on disk (half the size), run as float32
    ema.save_pretrained(out_dir / MODEL_DIR, safe_serialization=True)
    return record
