"""Training TOPOS-VAE on synthetic heads: the loop behind ``topos train vae``.

Loss per step, on the vertices of ``query_triangles`` random reference triangles (half from the outer
skin, half from the whole head: the decoder's queries are independent, so a subset is an unbiased
estimate of the full-mesh loss and ~10× cheaper on a CPU):

    vertex L1 + l2_weight · vertex L2 + edge_weight · |edge length error| + normal_weight · (1 − cos normals)
    + kl_weight · KL

Batches are a pure function of ``(seed, step)`` (:class:`SyntheticHeads` is deterministic by
index), so resuming from a checkpoint continues the same sequence. Checkpoints hold the model
(diffusers ``save_pretrained``: ``config.json`` + safetensors), the optimiser state and the step.
Data is made in a worker process while the main process trains; CUDA + bf16 autocast when available.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from topos_server.data.synthetic_heads import SyntheticHeadOptions, SyntheticHeads, outer_surface
from topos_server.models.vae import ToposVAE
from topos_server.training.control_vertices import attach_control_decoding, fit_control_upsampling

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "training_state.pt"
LOG_FILE = "training_log.jsonl"


@dataclass
class TrainingConfig:
    size: str = "small"
    steps: int = 3000
    batch_size: int = 12
    learning_rate: float = 4e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    query_triangles: int = 1024
    l2_weight: float = 1.0
    edge_weight: float = 1.0
    normal_weight: float = 0.1
    kl_weight: float = 1e-4
    eval_every: int = 250
    eval_samples: int = 32
    checkpoint_every: int = 250
    seed: int = 0
    workers: int = 1
    num_points: int | None = None  # None: the size config's
    time_limit_s: float | None = None  # stop (with a checkpoint) after this much wall time
    init_from: str | None = None  # start from these weights (a model folder) instead of a fresh network
    control_vertices: int | None = None  # decode at M controls (training/control_vertices.py); None: the model's own
    model_overrides: dict = field(default_factory=dict)  # ToposVAE config keys; with init_from: the new ones added to it
    data_overrides: dict = field(default_factory=dict)  # SyntheticHeadOptions fields of the training stream


def reference_triangles(topology) -> np.ndarray:
    tri, _ = topology.triangles()
    return tri.astype(np.int64)


def template_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    from topos_server.geometry.registration import vertex_normals

    return vertex_normals(np.asarray(points, np.float64), triangles).astype(np.float32)


SIMILARITY_MODES = 7


def deformation_basis(head_model, modes: int, surface_vertex_count: int | None = None) -> torch.Tensor:
    """(N, modes, 3): 7 infinitesimal similarity motions of the mean head, then the top ``modes − 7``
    principal modes of the head model's identity + ARKit expression shapes.

    The similarity modes (translations in cm, rotations of 0.1 rad and a 10 % scaling about the skin
    centroid) cover what pose canonicalisation leaves over — ICP fits a head to the *mean* head,
    so a long chin tilts the canonical frame by a degree or two. Principal modes are scaled by their
    singular value: a head drawn from the model has coefficients of order one.
    """
    if modes <= SIMILARITY_MODES:
        raise ValueError(f"basis_modes must exceed the {SIMILARITY_MODES} similarity modes")
    neutral = head_model.neutral.double()
    n = neutral.shape[0]
    centred = neutral - neutral[: surface_vertex_count or n].mean(0)
    axes = torch.eye(3, dtype=torch.float64)
    similarity = ([axes[k].expand(n, 3) for k in range(3)]
                  + [0.1 * torch.cross(axes[k].expand(n, 3), centred, dim=-1) for k in range(3)] + [0.1 * centred])
    arkit = len(head_model.arkit_expression_names)
    shapes = torch.cat([head_model.identity_basis, head_model.expression_basis[:arkit]]).reshape(-1, n * 3).double()
    # shapes = U Σ Vᵀ through the small Gram matrix (S × S) rather than an SVD of the (S, 3N) matrix
    eigenvalues, u = torch.linalg.eigh(shapes @ shapes.T)
    order = torch.argsort(eigenvalues, descending=True)[: modes - SIMILARITY_MODES]
    principal = (u[:, order].T @ shapes).reshape(-1, n, 3)  # Σ_k V_kᵀ: each mode scaled by its singular value
    basis = torch.cat([torch.stack(similarity), principal])  # (modes, N, 3)
    return basis.permute(1, 0, 2).float().contiguous()


def skin_identity_modes(head_model, basis: torch.Tensor, skin_vertex_count: int, modes: int) -> torch.Tensor:
    """(N, modes, 3): the top principal modes of the head model's identity shapes once the span of ``basis``
    (N, K, 3) is taken out on the outer skin (its first ``skin_vertex_count`` vertices), scaled by their
    singular values like :func:`deformation_basis`'s. The same combinations of the full shapes give the
    inner vertices' rows (the model keeps those at the controls only)."""
    identity = head_model.identity_basis.double()  # (I, N, 3)
    skin = identity[:, :skin_vertex_count].reshape(len(identity), -1)  # (I, V·3)
    kept = basis[:skin_vertex_count].double().permute(1, 0, 2).reshape(basis.shape[1], -1)  # (K, V·3)
    projection = torch.linalg.lstsq(kept.T, skin.T).solution.T  # (I, K) least squares on the skin
    residual = identity - torch.einsum("ik,nkc->inc", projection, basis.double())  # (I, N, 3)
    flat = residual[:, :skin_vertex_count].reshape(len(identity), -1)
    eigenvalues, u = torch.linalg.eigh(flat @ flat.T)
    order = torch.argsort(eigenvalues, descending=True)[:modes]
    principal = torch.einsum("is,inc->snc", u[:, order], residual)  # (modes, N, 3)
    return principal.permute(1, 0, 2).float().contiguous()


def extend_model(model: ToposVAE, head_model, topology, overrides: dict) -> ToposVAE:
    """A copy of ``model`` with config keys ``overrides`` added (skin modes, latent coefficients, basis precision):
    every weight carries over, the new layers start at zero, so it decodes exactly as before."""
    config = {key: value for key, value in model.config.items() if not key.startswith("_")}
    config.update(overrides)
    if config.get("skin_modes"):
        config["skin_vertices"], _ = outer_surface(topology)
    result = ToposVAE(**config)
    missing, unexpected = result.load_state_dict(model.state_dict(), strict=False)
    new = ("skin_coefficients.", "latent_to_coefficients.", "skin_basis")
    if unexpected or any(not key.startswith(new) for key in missing):
        raise ValueError(f"cannot carry the weights over: missing {missing}, unexpected {unexpected}")
    if result.config.skin_modes:
        result.set_skin_basis(skin_identity_modes(head_model, model.deformation_basis.float(),
                                                  result.config.skin_vertices, result.config.skin_modes))
    return result


def build_model(config: TrainingConfig, head_model, topology) -> ToposVAE:
    overrides = dict(config.model_overrides)
    if config.num_points is not None:
        overrides["num_points"] = config.num_points
    if config.control_vertices is not None:
        overrides["control_vertices"] = config.control_vertices
    surface_vertex_count, _ = outer_surface(topology)
    if overrides.get("skin_modes"):
        overrides["skin_vertices"] = surface_vertex_count
    model = ToposVAE.from_size(config.size, topology.num_points, topology_id=topology.topology_id, **overrides)
    neutral = head_model.neutral.detach().cpu().numpy()
    model.set_template(torch.from_numpy(neutral), torch.from_numpy(template_normals(neutral, reference_triangles(topology))),
                       deformation_basis(head_model, model.config.basis_modes, surface_vertex_count),
                       surface_vertex_count=surface_vertex_count)
    if model.config.control_vertices:
        model.set_control_upsampling(fit_control_upsampling(head_model, topology, model.config.control_vertices,
                                                            model.config.control_neighbours))
    if model.config.skin_modes:
        model.set_skin_basis(skin_identity_modes(head_model, model.deformation_basis.float(), surface_vertex_count,
                                                 model.config.skin_modes))
    return model


def initial_model(config: TrainingConfig, head_model, topology) -> ToposVAE:
    """A fresh network, or ``config.init_from``'s weights (with control decoding attached when asked)."""
    if config.init_from is None:
        return build_model(config, head_model, topology)
    model = ToposVAE.from_pretrained(config.init_from, low_cpu_mem_usage=False)
    wanted = config.control_vertices
    if wanted is not None and wanted != model.config.control_vertices:
        if model.config.control_vertices:
            raise ValueError(f"{config.init_from} already decodes at {model.config.control_vertices} controls")
        model = attach_control_decoding(model, fit_control_upsampling(head_model, topology, wanted))
    added = {key: value for key, value in config.model_overrides.items() if model.config.get(key) != value}
    return extend_model(model, head_model, topology, added) if added else model


class BatchStream(torch.utils.data.Dataset):
    """Item ``step`` is the batch of that step (for a DataLoader with batch_size=None)."""

    def __init__(self, head_model, topology, config: TrainingConfig, num_points: int, seed: int):
        self.head_model, self.topology, self.config = head_model, topology, config
        self.num_points, self.seed = num_points, seed
        self._heads = None

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        if self._heads is None:  # built in the worker process (operators are cached per process)
            torch.set_num_threads(1)
            options = SyntheticHeadOptions(**{"num_points": self.num_points, **self.config.data_overrides})
            self._heads = SyntheticHeads(self.head_model, self.topology, seed=self.seed, options=options)
        b = self.config.batch_size
        return self._heads.batch(range(step * b, (step + 1) * b))


class StepRange(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def reconstruction_losses(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """predicted, target (B, K, 3, 3): the corners of K triangles → vertex, edge and normal terms."""
    diff = predicted - target
    edges_p = predicted - predicted.roll(1, dims=2)  # (B, K, 3, 3) the three edges
    edges_t = target - target.roll(1, dims=2)
    normal_p = torch.cross(edges_p[:, :, 1], edges_p[:, :, 2], dim=-1)
    normal_t = torch.cross(edges_t[:, :, 1], edges_t[:, :, 2], dim=-1)
    cos = torch.nn.functional.cosine_similarity(normal_p, normal_t, dim=-1, eps=1e-12)
    return {
        "vertex_l1": diff.abs().mean(),
        "vertex_l2": (diff ** 2).sum(-1).mean(),
        "edge": (edges_p.norm(dim=-1) - edges_t.norm(dim=-1)).abs().mean(),
        "normal": (1.0 - cos).mean(),
    }


def learning_rate(config: TrainingConfig, step: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5 % over the steps or the time limit, whichever runs out first."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = max((step - config.warmup_steps) / max(1, config.steps - config.warmup_steps), time_fraction)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def evaluate(model: ToposVAE, batch: dict[str, torch.Tensor], surface_vertex_count: int, device) -> dict[str, float]:
    """Mean vertex error (mm) of the posterior mean on a held-out canonical batch, all vertices and outer skin."""
    model.eval()
    decoded, _ = model(batch["points"].to(device), batch["normals"].to(device), batch["offsets"].to(device),
                       sample_posterior=False)
    error = (decoded.float().cpu() - batch["target"]).norm(dim=-1) * 10.0  # (B, N) mm
    model.train()
    return {"eval_error_mm": float(error.mean()), "eval_surface_error_mm": float(error[:, :surface_vertex_count].mean())}


def save_checkpoint(out_dir: Path, model: ToposVAE, optimizer, step: int, config: TrainingConfig) -> None:
    from topos_sdk.atomic_files import atomic_output_dir

    with atomic_output_dir(out_dir / CHECKPOINT_DIR) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "config": asdict(config)}, tmp / STATE_FILE)


def train(config: TrainingConfig, out_dir, resume: bool = False, head_model=None, topology=None,
          progress=None, device: str | None = None) -> dict:
    """Train (or resume) into ``out_dir``; returns the last log record. ``progress(record)`` gets every log line."""
    from topos_server.assets.cache import AssetCache
    from topos_server.assets.head_model import HeadModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    topology = topology or AssetCache.default().ict_topology()
    head_model = head_model or HeadModel.load()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)

    start_step = 0
    if resume and (out_dir / CHECKPOINT_DIR / STATE_FILE).exists():
        model = ToposVAE.from_pretrained(out_dir / CHECKPOINT_DIR, low_cpu_mem_usage=False)
        state = torch.load(out_dir / CHECKPOINT_DIR / STATE_FILE, map_location="cpu", weights_only=False)
        start_step = int(state["step"])
    elif resume:
        raise FileNotFoundError(f"--resume: no checkpoint in {out_dir / CHECKPOINT_DIR}")
    else:
        model = initial_model(config, head_model, topology)
        state = None
    if model.config.topology_id != topology.topology_id:
        raise ValueError(f"checkpoint topology {model.config.topology_id} differs from the reference {topology.topology_id}")
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.99))
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    surface_vertex_count, surface_tris = outer_surface(topology)
    all_tris = torch.from_numpy(reference_triangles(topology))
    surface_tris = torch.from_numpy(surface_tris)
    num_points = model.config.num_points
    eval_heads = SyntheticHeads(head_model, topology, seed=config.seed + 1_000_003,
                                options=SyntheticHeadOptions(num_points=num_points))
    eval_batch = eval_heads.batch(range(config.eval_samples))
    stream = BatchStream(head_model, topology, config, num_points, config.seed)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, sampler=StepRange(start_step, config.steps),
                                         num_workers=config.workers, prefetch_factor=4 if config.workers else None,
                                         persistent_workers=False)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    log_path = out_dir / LOG_FILE
    started = time.monotonic()
    record: dict = {}
    step = start_step
    with open(log_path, "a") as log:
        for step, batch in enumerate(loader, start=start_step):
            time_fraction = (time.monotonic() - started) / config.time_limit_s if config.time_limit_s else 0.0
            lr = learning_rate(config, step, time_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            k = config.query_triangles // 2
            tris = torch.cat([surface_tris[torch.randint(len(surface_tris), (k,), generator=gen)],
                              all_tris[torch.randint(len(all_tris), (config.query_triangles - k,), generator=gen)]])
            ids = tris.reshape(-1).to(device)  # (3K,)
            target = batch["target"][:, tris.reshape(-1)].reshape(-1, len(tris), 3, 3).to(device)  # (B, K, 3, 3)
            with autocast:
                posterior = model.encode(batch["points"].to(device), batch["normals"].to(device),
                                         batch["offsets"].to(device))
                z = posterior.sample(torch.Generator(device=device).manual_seed(step) if device.type == "cuda" else gen)
                predicted = model.decode(z, ids).reshape(target.shape)
            losses = reconstruction_losses(predicted.float(), target)
            kl = posterior.kl().float()
            loss = (losses["vertex_l1"] + config.l2_weight * losses["vertex_l2"] + config.edge_weight * losses["edge"]
                    + config.normal_weight * losses["normal"] + config.kl_weight * kl)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

            done = step + 1
            record = {"step": done, "loss": float(loss.detach()), "kl": float(kl.detach()), "lr": lr,
                      "elapsed_s": round(time.monotonic() - started, 1), **{k: float(v.detach()) for k, v in losses.items()}}
            out_of_time = config.time_limit_s is not None and time.monotonic() - started > config.time_limit_s
            if done % config.eval_every == 0 or done == config.steps or out_of_time:
                record.update(evaluate(model, eval_batch, surface_vertex_count, device))
            log.write(json.dumps(record) + "\n")
            log.flush()
            if progress is not None:
                progress(record)
            if done % config.checkpoint_every == 0 or done == config.steps or out_of_time:
                save_checkpoint(out_dir, model, optimizer, done, config)
            if out_of_time:
                break
    model.to("cpu").eval()
    model.save_pretrained(out_dir / MODEL_DIR, safe_serialization=True)
    return record
