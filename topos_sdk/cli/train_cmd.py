"""``topos train MODEL ...``: train a learned model. Each model's options and handler live in its own
module (``train_<model>_cmd.py``) with ``register(models)``; this one only groups them."""

from __future__ import annotations

import importlib
from pathlib import Path

# model → module with register(models_subparsers); keep them light (no torch at import time)
MODEL_MODULES = {
    "vae": "topos_sdk.cli.train_vae_cmd",
    "texture": "topos_sdk.cli.train_texture_cmd",
    "dit": "topos_sdk.cli.train_dit_cmd",
}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a learned model (" + ", ".join(MODEL_MODULES) + ")",
                       description="Train one of the learned models. Needs `topos assets import` first.")
    models = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    for module in MODEL_MODULES.values():
        importlib.import_module(module).register(models)


def add_training_options(p, *, steps: int, batch_of: str, batch_size: int, lr: str, eval_every: int) -> None:
    """The options every trainer shares (defaults shown as the trainer's config has them): --out, --steps,
    --batch-size, --lr, --time-limit, --eval-every, --seed, --device, --resume."""
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (checkpoint/, model/, log)")
    p.add_argument("--steps", type=int, help=f"optimiser steps (default {steps})")
    p.add_argument("--batch-size", type=int, help=f"{batch_of} per step (default {batch_size})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {lr})")
    p.add_argument("--time-limit", type=float, metavar="MINUTES", help="stop with a checkpoint after this long")
    p.add_argument("--eval-every", type=int, help=f"steps between evaluations and checkpoints (default {eval_every})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint")


def apply_training_options(config, args) -> None:
    """The shared options given on the command line into a trainer's config (unset ones keep its defaults)."""
    if args.steps is not None:
        config.steps = args.steps
    if args.batch_size is not None:
        config.batch_size = args.batch_size
    if args.lr is not None:
        config.learning_rate = args.lr
    if args.eval_every is not None:
        config.eval_every = args.eval_every
        if hasattr(config, "checkpoint_every"):
            config.checkpoint_every = args.eval_every
    if args.time_limit is not None:
        config.time_limit_s = 60.0 * args.time_limit
    if config.steps <= 0 or config.batch_size <= 0 or config.eval_every <= 0:
        raise ValueError("--steps, --batch-size and --eval-every must be positive")
