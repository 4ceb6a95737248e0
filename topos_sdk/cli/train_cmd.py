"""``topos train MODEL ...``: train a learned model. Each model's options and handler live in its own
module (``train_<model>_cmd.py``) with ``register(models)``; this one only groups them."""

from __future__ import annotations

import importlib

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
