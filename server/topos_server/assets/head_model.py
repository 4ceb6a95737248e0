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

The file and its numpy reader/writer: ``assets/head_model_file.py`` (no torch: the classic engine
needs only the arrays, and importing torch costs seconds per process).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from topos_server.assets.head_model_file import load_head_model_arrays, save_head_model_arrays


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
