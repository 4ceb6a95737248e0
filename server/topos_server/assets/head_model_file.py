"""The head model file: its format, and numpy-only save and load (no torch).

File (``head_model.safetensors``): tensors ``neutral`` (N, 3), ``identity_basis`` (100, N, 3),
``expression_basis`` (E, N, 3), float32; metadata ``topos`` = JSON with the format, names, units,
topology id and the ICT-FaceKit MIT notice.

The torch module that evaluates it is :class:`~topos_server.assets.head_model.HeadModel`; the classic
engine reads the arrays with :func:`load_head_model_arrays` and never imports torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEAD_MODEL_FORMAT = "topos.head_model/1"
ICT_MIT_NOTICE = (
    "Derived from ICT-FaceKit (ICT Face Model Light). MIT License. Copyright (c) 2020 USC Institute for "
    "Creative Technologies. Permission is hereby granted, free of charge, to any person obtaining a copy of "
    "this software and associated documentation files, to deal in the Software without restriction, subject to "
    "the conditions of the MIT License (full text: LICENSE beside this file). THE SOFTWARE IS PROVIDED \"AS IS\", "
    "WITHOUT WARRANTY OF ANY KIND."
)


def save_head_model_arrays(path: str | os.PathLike, neutral: np.ndarray, identity_basis: np.ndarray,
                           expression_basis: np.ndarray, expression_names: list[str], info: dict | None = None) -> Path:
    """Write the safetensors file atomically (numpy only, usable without a torch model)."""
    from safetensors.numpy import save_file

    from topos_sdk.atomic_files import atomic_output_path

    n = neutral.shape[0]
    if neutral.shape != (n, 3) or identity_basis.shape[1:] != (n, 3) or expression_basis.shape[1:] != (n, 3):
        raise ValueError(f"head model shapes disagree: neutral {neutral.shape}, identity {identity_basis.shape}, "
                         f"expression {expression_basis.shape}")
    if len(expression_names) != expression_basis.shape[0]:
        raise ValueError(f"{len(expression_names)} expression names for {expression_basis.shape[0]} shapes")
    meta = {
        "format": HEAD_MODEL_FORMAT,
        "expression_names": list(expression_names),
        "units": "cm",
        "license": ICT_MIT_NOTICE,
        **(info or {}),
    }
    tensors = {
        "neutral": np.ascontiguousarray(neutral, np.float32),
        "identity_basis": np.ascontiguousarray(identity_basis, np.float32),
        "expression_basis": np.ascontiguousarray(expression_basis, np.float32),
    }
    path = Path(path)
    with atomic_output_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"topos": json.dumps(meta)})
    return path


@dataclass(frozen=True)
class HeadModelArrays:
    """The head model file's contents as numpy arrays."""

    neutral: np.ndarray  # (N, 3) float32
    identity_basis: np.ndarray  # (I, N, 3) float32
    expression_basis: np.ndarray  # (E, N, 3) float32
    expression_names: list[str]
    info: dict  # the file's ``topos`` metadata


def load_head_model_arrays(path_or_cache=None) -> HeadModelArrays:
    """The head model from a safetensors file, or from an :class:`AssetCache` (None: the default cache)."""
    from safetensors import safe_open

    path = _head_model_path(path_or_cache)
    with safe_open(str(path), framework="np") as fh:
        meta = json.loads((fh.metadata() or {}).get("topos", "{}"))
        if meta.get("format") != HEAD_MODEL_FORMAT:
            raise ValueError(f"{path}: not a TOPOS head model (format {meta.get('format')!r})")
        arrays = {k: fh.get_tensor(k) for k in ("neutral", "identity_basis", "expression_basis")}
    return HeadModelArrays(arrays["neutral"], arrays["identity_basis"], arrays["expression_basis"],
                           list(meta["expression_names"]), meta)


def _head_model_path(path_or_cache) -> Path:
    if path_or_cache is None or not isinstance(path_or_cache, (str, os.PathLike)):
        from topos_server.assets.cache import AssetCache

        path_or_cache = (path_or_cache or AssetCache.default()).head_model_file()
    return Path(path_or_cache)
