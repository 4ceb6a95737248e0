"""The ICT morphable head model: neutral + 100 identity modes + expression shapes, batched in torch.

``vertices = neutral + identity @ identity_basis + expression @ expression_basis``

Identity scale: ICT-FaceKit stores each identity mode as a full mesh ``identityNNN = neutral + mode``
and its own toolkit (``ict_face_model.py``: ``randomize_identity`` draws ``np.random.normal`` per
mode, ``deform_mesh`` adds ``weight * (identityNNN - neutral)``) samples faces with coefficients from
N(0, 1) on exactly these differences. So the stored modes are already scaled by their standard
deviation and ``identity_basis = identityNNN - neutral`` with scale 1: coefficients ~ N(0, 1) give
the scan population's spread. The data agree: the modes are mutually near-orthogonal with RMS
displacement falling with the mode index, as scaled principal components do (the importer records
the per-mode RMS in the file's metadata; see ``identity_mode_rms_cm``).

Expressions: the 53 ARKit-named shapes of ``vertex_indices.json`` in its order, then the extra
shapes present in the folder (``PupilDilate_L/R``, ``cheekRaiser_L/R``), each ``shape - neutral``;
a weight of 1 gives the full shape.

File (``head_model.safetensors``): tensors ``neutral`` (N, 3), ``identity_basis`` (100, N, 3),
``expression_basis`` (E, N, 3), float32; metadata ``topos`` = JSON with the format, names, units,
topology id and the ICT-FaceKit MIT notice.

:func:`load_head_model_arrays` reads the file with numpy only (the classic engine needs the arrays,
not a torch module: importing torch costs seconds per process); :class:`HeadModel` is the torch
module for training and the topos engine, and importing it is what imports torch.
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600; the cache is shared like any other file
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


def __getattr__(name: str):
    if name == "HeadModel":  # defined on first use, so that importing this module does not import torch
        global HeadModel
        HeadModel = _define_head_model()
        return HeadModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_head_model():
    import torch
    from torch import nn

    class HeadModel(nn.Module):
        """Linear head model on the ICT topology; every method is batched over a leading B."""

        def __init__(self, neutral: torch.Tensor, identity_basis: torch.Tensor, expression_basis: torch.Tensor,
                     expression_names: list[str], info: dict | None = None):
            super().__init__()
            self.register_buffer("neutral", torch.as_tensor(neutral, dtype=torch.float32))  # (N, 3)
            self.register_buffer("identity_basis", torch.as_tensor(identity_basis, dtype=torch.float32))  # (K, N, 3)
            self.register_buffer("expression_basis", torch.as_tensor(expression_basis, dtype=torch.float32))  # (E, N, 3)
            self.expression_names = list(expression_names)
            self.info = dict(info or {})
            if len(self.expression_names) != self.expression_basis.shape[0]:
                raise ValueError("one expression name per expression shape")

        # ---- sizes ----------------------------------------------------------------------------------
        @property
        def num_vertices(self) -> int:
            return int(self.neutral.shape[0])

        @property
        def num_identity(self) -> int:
            return int(self.identity_basis.shape[0])

        @property
        def num_expressions(self) -> int:
            return int(self.expression_basis.shape[0])

        @property
        def arkit_expression_names(self) -> list[str]:
            """The 53 ARKit-named shapes (the first ones); the extras follow them in ``expression_names``."""
            return self.expression_names[: self.info.get("arkit_expression_count", len(self.expression_names))]

        def expression_index(self, name: str) -> int:
            try:
                return self.expression_names.index(name)
            except ValueError:
                raise KeyError(f"no expression {name!r}") from None

        # ---- evaluation -----------------------------------------------------------------------------
        def vertices(self, identity: torch.Tensor | None = None, expression: torch.Tensor | None = None) -> torch.Tensor:
            """(B, N, 3) points from identity (B, K ≤ 100) and expression (B, E' ≤ E) coefficients.

            Either may be None (zero); fewer coefficients than modes use the leading modes.
            """
            batch = {x.shape[0] for x in (identity, expression) if x is not None}
            if len(batch) > 1:
                raise ValueError(f"identity and expression batch sizes differ: {sorted(batch)}")
            b = batch.pop() if batch else 1
            n = self.num_vertices
            out = self.neutral.reshape(1, n * 3).expand(b, n * 3)  # (B, N*3)
            for coeffs, basis in ((identity, self.identity_basis), (expression, self.expression_basis)):
                if coeffs is None:
                    continue
                coeffs = torch.as_tensor(coeffs, dtype=self.neutral.dtype, device=self.neutral.device)
                if coeffs.ndim != 2 or coeffs.shape[1] > basis.shape[0]:
                    raise ValueError(f"coefficients must be (B, ≤{basis.shape[0]}), got {tuple(coeffs.shape)}")
                k = coeffs.shape[1]
                out = out + coeffs @ basis[:k].reshape(k, n * 3)  # (B, K) @ (K, N*3)
            if identity is None and expression is None:
                out = out.clone()  # never hand out a view of the neutral buffer
            return out.reshape(b, n, 3)

        def sample_identity(self, generator: torch.Generator | int | None = None, n: int = 1,
                            scale: float = 1.0) -> torch.Tensor:
            """(n, K) identity coefficients drawn from N(0, scale²) — the population prior."""
            if isinstance(generator, int):
                generator = torch.Generator().manual_seed(generator)
            coeffs = torch.randn(n, self.num_identity, generator=generator, dtype=torch.float32)
            return (coeffs * scale).to(self.neutral.device)

        def sample(self, generator: torch.Generator | int | None = None, n: int = 1, scale: float = 1.0) -> torch.Tensor:
            """(n, N, 3) neutral-expression heads with random identities."""
            return self.vertices(self.sample_identity(generator, n, scale))

        # ---- persistence ----------------------------------------------------------------------------
        def save(self, path: str | os.PathLike) -> Path:
            return save_head_model_arrays(
                path, self.neutral.cpu().numpy(), self.identity_basis.cpu().numpy(),
                self.expression_basis.cpu().numpy(), self.expression_names,
                {k: v for k, v in self.info.items() if k not in ("format", "expression_names", "units", "license")})

        @classmethod
        def load(cls, path_or_cache=None, device: str | torch.device = "cpu") -> "HeadModel":
            """From a safetensors file, or from an :class:`AssetCache` (None: the default cache)."""
            arrays = load_head_model_arrays(path_or_cache)
            model = cls(torch.from_numpy(arrays.neutral), torch.from_numpy(arrays.identity_basis),
                        torch.from_numpy(arrays.expression_basis), arrays.expression_names, arrays.info)
            return model.to(device)

    HeadModel.__qualname__ = "HeadModel"  # pickle and repr find it as ``head_model.HeadModel``
    return HeadModel
