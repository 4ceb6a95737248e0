"""TOPOS-VAE: a head surface of any topology (as a point cloud) → the reference topology.

    points (B, P, 3) + normals (B, P, 3)            canonical frame, cm
    + offsets (B, P, 1): signed distance along the mean head's normal from its nearest point
      │  Fourier features ‖ normal ‖ offset → Linear   (B, P, W)
      │  Perceiver Resampler: L learned queries cross-attend to the points, then self-attention;
      │  query l starts at anchor a_l on the mean head's skin (farthest-point samples): a fixed
      │  −‖x − a_l‖² / 2σ² attention bias makes each latent pool its own region from the first step
      ▼
    diagonal Gaussian posterior over the latent set    z (B, L, C)      KL to N(0, I)
      │  Linear → self-attention over the latents      (B, L, W)
      │  one query per reference vertex (Fourier features of its template position ‖ template
      │  normal ‖ its row of the low-rank deformation basis → MLP) cross-attends to the latents
      ▼
    offset from the template (zero-initialised heads)  (B, Q, 3) → template[q] + offset

The offset has two zero-initialised parts: the cross-attention branch's output MLP, and a linear
path ``Σ_k a_k(z) · basis[q, k]`` through a low-rank per-vertex deformation basis (a buffer: 7
infinitesimal similarity motions of the template, for what pose canonicalisation leaves over, and
the top principal modes of the head model's identity + expression shapes). The basis makes the
head model's span cheap to learn on a CPU; the attention branch learns the rest (out-of-span
shapes are part of the training data).

``skin_modes = S`` adds S more linear modes (the rest of the head model's identity span, see
``training/vae.py: skin_identity_modes``) stored at full resolution on the outer skin only — the first
``skin_vertices`` vertices, where a head's shape is seen and measured — and at the control vertices, from
which the inner parts (eyes, teeth, mouth socket) are upsampled; their coefficients are read from the
pooled latent tokens and, with ``latent_coefficients``, also linearly from the flattened latent set.
``refinement_iterations > 0`` appends ``refinement_tokens`` latent tokens to the set: the coefficients of every
linear mode (deformation basis + skin modes) fitted by ridge-regularised Gauss–Newton, point-to-plane, so that
the decoded skin meets the input points (:meth:`ToposVAE.refine_latents`, analysis by synthesis on top of
the encoder). The decoder adds their linear offsets; a latent set without them decodes as before.
``basis_precision = "float16"`` stores the basis buffers in half precision (half the file; the network
computes in float32 from exactly the stored values, so training and inference see the same basis).

The decoder's queries are independent of each other, so training decodes a random subset of
vertices per step and inference decodes all of them (or any subset). With ``control_vertices = M``
the attention branch runs at M control vertices only and a fixed sparse upsampling (buffers, see
``training/control_vertices.py``) carries its offsets to every vertex — the linear basis path stays at full
resolution. That makes decoding ~10× cheaper on a CPU at no measurable cost in accuracy. The template (the mean head
in the reference topology) is a buffer of the model, so a checkpoint is self-contained; its
topology is named by ``topology_id`` in the config.

Style after facebookresearch/DiT ``models.py`` (one file, shape comments, named sizes, zero-init
output layer) and 3DShape2VecSet (point-cloud encoder → latent set → decoder queried at points).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from topos_server.geometry.surface_points import farthest_point_indices

# Named sizes: width, heads, latents L × channels C, encoder / decoder self-attention depth, points in.
VAE_CONFIGS: dict[str, dict] = {
    "tiny": dict(width=64, num_heads=4, num_latents=16, latent_channels=8, encoder_depth=1, decoder_depth=1,
                 num_points=512),
    "small": dict(width=128, num_heads=4, num_latents=32, latent_channels=16, encoder_depth=2, decoder_depth=2,
                  num_points=2048),
    "base": dict(width=256, num_heads=8, num_latents=128, latent_channels=32, encoder_depth=6, decoder_depth=6,
                 num_points=4096),
    "large": dict(width=512, num_heads=8, num_latents=256, latent_channels=64, encoder_depth=12, decoder_depth=12,
                  num_points=8192),
}


class FourierFeatures(nn.Module):
    """x (…, 3) → [x / scale, sin(2^k π x / scale), cos(2^k π x / scale)] for k < num_bands: (…, 3 + 6·num_bands)."""

    def __init__(self, num_bands: int, scale: float):
        super().__init__()
        self.scale = scale
        self.register_buffer("frequencies", (2.0 ** torch.arange(num_bands)) * math.pi / scale, persistent=False)
        self.out_dim = 3 + 6 * num_bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = (x[..., None] * self.frequencies).flatten(-2)  # (…, 3·num_bands)
        return torch.cat([x / self.scale, angles.sin(), angles.cos()], dim=-1)


class Attention(nn.Module):
    """Multi-head attention of queries x (B, Q, W) over context (B, K, W) (self-attention when context is None)."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (B, Q, K) is added to the attention logits (None: plain attention)."""
        context = x if context is None else context
        b, q, w = x.shape
        h = self.num_heads
        query = self.to_q(x).view(b, q, h, w // h).transpose(1, 2)  # (B, H, Q, W/H)
        key, value = self.to_kv(context).view(b, context.shape[1], 2, h, w // h).permute(2, 0, 3, 1, 4)  # (B, H, K, W/H)
        mask = None if bias is None else bias[:, None].to(query.dtype)  # (B, 1, Q, K)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)  # (B, H, Q, W/H)
        return self.out(out.transpose(1, 2).reshape(b, q, w))


class Mlp(nn.Sequential):
    def __init__(self, width: int, hidden: int, out: int | None = None):
        super().__init__(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, out or width))


class Block(nn.Module):
    """Pre-norm transformer block: (cross- or self-)attention + MLP, both residual."""

    def __init__(self, width: int, num_heads: int, cross: bool = False, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_x = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width) if cross else None
        self.attention = Attention(width, num_heads)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        ctx = None if self.norm_context is None else self.norm_context(context)
        x = x + self.attention(self.norm_x(x), ctx, bias)
        return x + self.mlp(self.norm_mlp(x))


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) over the latent set; ``kl`` to N(0, I), averaged per element."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=-1)  # (B, L, C) each
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        return 0.5 * (self.mean ** 2 + self.logvar.exp() - 1.0 - self.logvar).mean()


class ToposVAE(ModelMixin, ConfigMixin):
    """Point-cloud encoder → L × C Gaussian latent set → decoder queried at the reference vertices."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_vertices: int, width: int = 128, num_heads: int = 4, num_latents: int = 32,
                 latent_channels: int = 16, encoder_depth: int = 2, decoder_depth: int = 2, num_points: int = 2048,
                 point_bands: int = 8, query_bands: int = 10, position_scale_cm: float = 32.0,
                 basis_modes: int = 47, anchor_sigma_cm: float = 3.0, control_vertices: int = 0,
                 control_neighbours: int = 12, topology_id: str = "", size_name: str = "",
                 skin_modes: int = 0, skin_vertices: int = 0, latent_coefficients: bool = False,
                 basis_precision: str = "float32", refinement_iterations: int = 0,
                 refinement_ridge: float = 1e-3):
        super().__init__()
        if skin_modes and not (control_vertices and 0 < skin_vertices <= num_vertices):
            raise ValueError("skin_modes need control vertices (the inner parts are upsampled from them) and "
                             "0 < skin_vertices <= num_vertices")
        if refinement_iterations and not skin_vertices:
            raise ValueError("latent refinement fits the outer skin: set skin_vertices")
        if basis_precision not in ("float32", "float16"):
            raise ValueError(f"basis_precision must be float32 or float16, got {basis_precision!r}")
        basis_dtype = getattr(torch, basis_precision)
        self.point_features = FourierFeatures(point_bands, position_scale_cm)
        self.point_in = nn.Linear(self.point_features.out_dim + 3 + 1, width)
        self.latent_queries = nn.Parameter(torch.randn(num_latents, width) * 0.02)  # (L, W)
        self.anchor_in = nn.Linear(self.point_features.out_dim, width)
        self.encoder_cross = Block(width, num_heads, cross=True)
        self.encoder_blocks = nn.ModuleList(Block(width, num_heads) for _ in range(encoder_depth))
        self.encoder_out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * latent_channels))

        self.latent_in = nn.Linear(latent_channels, width)
        self.latent_positions = nn.Parameter(torch.randn(num_latents, width) * 0.02)
        self.decoder_blocks = nn.ModuleList(Block(width, num_heads) for _ in range(decoder_depth))
        self.query_features = FourierFeatures(query_bands, position_scale_cm)
        self.query_in = Mlp(self.query_features.out_dim + 3 + 3 * basis_modes, width, width)
        self.decoder_cross = Block(width, num_heads, cross=True)
        self.decoder_out = nn.Sequential(nn.LayerNorm(width), Mlp(width, width, 3))
        self.basis_coefficients = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, basis_modes))
        if skin_modes:
            self.skin_coefficients = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, skin_modes))
        if latent_coefficients:
            self.latent_to_coefficients = nn.Linear(num_latents * latent_channels, basis_modes + skin_modes)

        self.register_buffer("template_points", torch.zeros(num_vertices, 3))  # (N, 3) mean head, cm
        self.register_buffer("template_normals", torch.zeros(num_vertices, 3))  # (N, 3) unit
        self.register_buffer("deformation_basis", torch.zeros(num_vertices, basis_modes, 3, dtype=basis_dtype))  # (N, K, 3) cm
        self.register_buffer("anchors", torch.zeros(num_latents, 3))  # (L, 3) cm on the template skin
        if control_vertices:  # see training/control_vertices.py: the attention branch runs at M controls only
            self.register_buffer("control_ids", torch.zeros(control_vertices, dtype=torch.long))  # (M,)
            self.register_buffer("upsample_neighbours", torch.zeros(num_vertices, control_neighbours, dtype=torch.int32))  # (N, k)
            self.register_buffer("upsample_weights", torch.zeros(num_vertices, control_neighbours))  # (N, k)
        if skin_modes:
            self.register_buffer("skin_basis", torch.zeros(skin_vertices, skin_modes, 3, dtype=basis_dtype))  # (V, S, 3) cm
            self.register_buffer("skin_basis_at_controls", torch.zeros(control_vertices, skin_modes, 3, dtype=basis_dtype))  # (M, S, 3)
        self._query_cache: torch.Tensor | None = None
        self._basis_cache: torch.Tensor | None = None
        self._upsample_cache: torch.Tensor | None = None
        self._skin_basis_cache: torch.Tensor | None = None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(basic_init)
        # the decoder starts as the template: zero offsets (DiT's zero-init of the last layer)
        nn.init.zeros_(self.decoder_out[-1][-1].weight)
        nn.init.zeros_(self.decoder_out[-1][-1].bias)
        zero_init = [self.basis_coefficients[-1]]
        zero_init += [self.skin_coefficients[-1]] if self.config.skin_modes else []
        zero_init += [self.latent_to_coefficients] if self.config.latent_coefficients else []
        for layer in zero_init:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # start with a nearly deterministic posterior (std e^-4): unit-variance noise on a fresh latent
        # drowns its signal and the decoder learns to ignore z; the KL term widens it as far as it pays
        channels = self.config.latent_channels
        nn.init.constant_(self.encoder_out[-1].bias[channels:], -8.0)

    def set_template(self, points: torch.Tensor, normals: torch.Tensor, basis: torch.Tensor | None = None,
                     surface_vertex_count: int | None = None) -> None:
        """Mean head (N, 3), its unit normals (N, 3), the deformation basis (N, K, 3) (None: zeros);
        the encoder's anchors are farthest-point samples of the first ``surface_vertex_count`` vertices."""
        self.template_points.copy_(torch.as_tensor(points, dtype=torch.float32))
        self.template_normals.copy_(torch.as_tensor(normals, dtype=torch.float32))
        if basis is not None:
            self.deformation_basis.copy_(torch.as_tensor(basis, dtype=torch.float32))
        surface = self.template_points[: surface_vertex_count or len(self.template_points)]
        self.anchors.copy_(surface[farthest_point_indices(surface.cpu().numpy(), self.config.num_latents)])
        self._query_cache = self._basis_cache = self._upsample_cache = self._skin_basis_cache = None

    def set_skin_basis(self, basis: torch.Tensor) -> None:
        """The extra modes (N, S, 3) cm: kept at full resolution on the first ``skin_vertices``, at the controls elsewhere."""
        if not self.config.skin_modes:
            raise ValueError("this model has no skin modes (skin_modes = 0 in its config)")
        basis = torch.as_tensor(basis, dtype=torch.float32)
        self.skin_basis.copy_(basis[: self.config.skin_vertices])
        self.skin_basis_at_controls.copy_(basis[self.control_ids.cpu()])
        self._skin_basis_cache = None

    def set_control_upsampling(self, upsampling) -> None:
        """Install a :class:`~topos_server.training.control_vertices.ControlUpsampling` (sizes as in the config)."""
        if not self.config.control_vertices:
            raise ValueError("this model decodes every vertex (control_vertices = 0 in its config)")
        self.control_ids.copy_(torch.as_tensor(upsampling.control_ids, dtype=torch.long))
        self.upsample_neighbours.copy_(torch.as_tensor(upsampling.neighbours, dtype=torch.int32))
        self.upsample_weights.copy_(torch.as_tensor(upsampling.weights, dtype=torch.float32))
        self._query_cache = None

    def train(self, mode: bool = True):
        self._query_cache = self._basis_cache = self._upsample_cache = self._skin_basis_cache = None  # weights and buffers may change while training
        return super().train(mode)

    def _queries(self, ids: torch.Tensor) -> torch.Tensor:
        """(Q, W) query embeddings of reference vertices ``ids``."""
        features = [self.query_features(self.template_points[ids]), self.template_normals[ids],
                    self.deformation_basis[ids].flatten(1).float()]
        return self.query_in(torch.cat(features, dim=-1))

    @property
    def linear_modes(self) -> int:
        """Modes of the linear path: the deformation basis, then the skin modes."""
        return self.config.basis_modes + self.config.skin_modes

    @property
    def refinement_tokens(self) -> int:
        """Latent tokens appended by :meth:`refine_latents` (0 without refinement)."""
        return -(-self.linear_modes // self.config.latent_channels) if self.config.refinement_iterations else 0

    @torch.no_grad()
    def refine_latents(self, z: torch.Tensor, points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        """z (B, L, C) + the encoder's input points, normals (B, P, 3) → (B, L + T, C): T tokens holding linear-mode
        coefficients c (B, K + S) fitted so the decoded skin meets the points.

        Each round: every point's nearest skin vertex j, residual r = n · (x − s_j) along the point's normal,
        rows A = n · basis[j]; c ← (AᵀA + λP·I)⁻¹ Aᵀ(r + A c) (Gauss–Newton on ‖r‖² + λP‖c‖²).
        """
        v, c_channels = self.config.skin_vertices, self.config.latent_channels
        b, modes = z.shape[0], self.linear_modes
        rows = self.deformation_basis[:v].float()  # (V, K, 3)
        if self.config.skin_modes:
            rows = torch.cat([rows, self.skin_basis.float()], dim=1)  # (V, K + S, 3)
        base = self.decode(z, torch.arange(v, device=z.device))  # (B, V, 3)
        coefficients = z.new_zeros(b, modes)
        ridge = self.config.refinement_ridge * points.shape[1] * torch.eye(modes, device=z.device)
        for _ in range(self.config.refinement_iterations):
            skin = base + torch.einsum("bk,vkc->bvc", coefficients, rows)  # (B, V, 3)
            for i in range(b):
                nearest = torch.cdist(points[i], skin[i]).argmin(1)  # (P,)
                residual = ((points[i] - skin[i, nearest]) * normals[i]).sum(-1)  # (P,)
                a = torch.einsum("pc,pkc->pk", normals[i], rows[nearest])  # (P, K + S)
                coefficients[i] = torch.linalg.solve(a.T @ a + ridge, a.T @ (residual + a @ coefficients[i]))
        tokens = torch.nn.functional.pad(coefficients, (0, self.refinement_tokens * c_channels - modes))
        return torch.cat([z, tokens.view(b, -1, c_channels)], dim=1)  # (B, L + T, C)

    @classmethod
    def from_size(cls, size: str, num_vertices: int, **overrides) -> "ToposVAE":
        try:
            config = dict(VAE_CONFIGS[size])
        except KeyError:
            raise ValueError(f"unknown VAE size {size!r}; choose from {', '.join(VAE_CONFIGS)}") from None
        config.update(overrides)
        return cls(num_vertices=num_vertices, size_name=size, **config)

    # ---- encoder ---------------------------------------------------------------------------------
    def encode(self, points: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor) -> DiagonalGaussian:
        """points, normals (B, P, 3) and offsets (B, P, 1) in the canonical frame → posterior over (B, L, C).

        ``offsets`` (see :meth:`PoseCanonicalizer.normal_offsets`) hand the encoder what differs
        from the mean head directly; attention then only has to pool it by region.
        """
        x = self.point_in(torch.cat([self.point_features(points), normals, 10.0 * offsets], dim=-1))  # (B, P, W), offsets in mm
        latents = (self.latent_queries + self.anchor_in(self.point_features(self.anchors))).expand(points.shape[0], -1, -1)
        bias = -torch.cdist(self.anchors.expand(points.shape[0], -1, -1), points) ** 2 / (2 * self.config.anchor_sigma_cm ** 2)
        latents = self.encoder_cross(latents, x, bias)  # (B, L, W), bias (B, L, P)
        for block in self.encoder_blocks:
            latents = block(latents)
        return DiagonalGaussian(self.encoder_out(latents))  # moments (B, L, 2C)

    # ---- decoder ---------------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, vertex_ids: torch.Tensor | None = None, chunk: int = 8192) -> torch.Tensor:
        """z (B, L, C) → points (B, Q, 3) of the reference vertices ``vertex_ids`` (Q,) (None: all N).

        z may carry :meth:`refine_latents`' T extra tokens (B, L + T, C): their coefficients add linear offsets."""
        z, refined = z[:, : self.config.num_latents], z[:, self.config.num_latents:].flatten(1)[:, : self.linear_modes]
        h = self.latent_in(z) + self.latent_positions  # (B, L, W)
        for block in self.decoder_blocks:
            h = block(h)
        pooled = h.mean(1)  # (B, W)
        coefficients = self.basis_coefficients(pooled)  # (B, K)
        if self.config.skin_modes:
            coefficients = torch.cat([coefficients, self.skin_coefficients(pooled)], dim=-1)  # (B, K + S)
        if self.config.latent_coefficients:
            coefficients = coefficients + self.latent_to_coefficients(z.flatten(1))
        if refined.shape[1]:
            coefficients = coefficients + refined
        everything = vertex_ids is None
        ids = torch.arange(self.config.num_vertices, device=z.device) if everything else vertex_ids
        k = self.config.basis_modes
        linear = (coefficients[:, :k] @ self._basis_rows(ids, everything)).view(z.shape[0], -1, 3)  # (B, Q, 3)
        if self.config.skin_modes:
            linear = linear + self._skin_offsets(coefficients[:, k:].float(), ids, everything)
        if self.config.control_vertices:
            at_controls = self._attention_offsets(h, self.control_ids, cache=True, chunk=chunk)  # (B, M, 3)
            residual = self._upsample(at_controls, ids, everything)  # (B, Q, 3)
        else:
            residual = self._attention_offsets(h, ids, cache=everything, chunk=chunk)  # (B, Q, 3)
        template = self.template_points if everything else self.template_points[ids]  # (Q, 3)
        return template + linear.float() + residual

    def _upsample(self, at_controls: torch.Tensor, ids: torch.Tensor, everything: bool) -> torch.Tensor:
        """(B, M, 3) values at the controls → (B, Q, 3) at vertices ``ids``: one sparse matmul at inference."""
        if not (everything and not self.training):
            weights = self.upsample_weights[ids]  # (Q, k)
            return (at_controls[:, self.upsample_neighbours[ids].long()] * weights[..., None]).sum(2)
        if self._upsample_cache is None or self._upsample_cache.device != at_controls.device:
            n, k = self.upsample_weights.shape
            rows = torch.arange(n, device=ids.device).repeat_interleave(k)
            matrix = torch.sparse_coo_tensor(torch.stack([rows, self.upsample_neighbours.reshape(-1).long()]),
                                             self.upsample_weights.reshape(-1), (n, self.config.control_vertices),
                                             check_invariants=True)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self._upsample_cache = matrix.coalesce().to_sparse_csr()  # (N, M)
        b, m, _ = at_controls.shape
        flat = at_controls.permute(1, 0, 2).reshape(m, b * 3)  # (M, B·3)
        return (self._upsample_cache @ flat).view(-1, b, 3).permute(1, 0, 2)  # (B, N, 3)

    def _skin_offsets(self, coefficients: torch.Tensor, ids: torch.Tensor, everything: bool) -> torch.Tensor:
        """(B, S) skin-mode coefficients → (B, Q, 3) offsets of vertices ``ids``: stored rows on the skin, upsampled inside."""
        v, s = self.config.skin_vertices, self.config.skin_modes
        b = coefficients.shape[0]
        at_controls = (coefficients @ self.skin_basis_at_controls.float().permute(1, 0, 2).reshape(s, -1)).view(b, -1, 3)  # (B, M, 3)
        if everything and not self.training:
            if self._skin_basis_cache is None or self._skin_basis_cache.device != ids.device:
                self._skin_basis_cache = self.skin_basis.float().permute(1, 0, 2).reshape(s, -1).contiguous()  # (S, V·3)
            on_skin = (coefficients @ self._skin_basis_cache).view(b, v, 3)
            return torch.cat([on_skin, self._upsample(at_controls, ids[v:], everything=False)], dim=1)  # (B, N, 3)
        skin = ids < v
        out = coefficients.new_zeros(b, len(ids), 3)
        rows = self.skin_basis[ids[skin]].float().permute(1, 0, 2).reshape(s, -1)  # (S, Q_skin·3)
        out[:, skin] = (coefficients @ rows).view(b, -1, 3)
        out[:, ~skin] = self._upsample(at_controls, ids[~skin], everything=False)
        return out

    def _basis_rows(self, ids: torch.Tensor, everything: bool) -> torch.Tensor:
        """(K, Q·3) the deformation basis of vertices ``ids`` laid out for one matmul (cached for all vertices)."""
        if everything and not self.training:
            if self._basis_cache is None or self._basis_cache.device != ids.device:
                self._basis_cache = self.deformation_basis.float().permute(1, 0, 2).reshape(self.config.basis_modes, -1).contiguous()
            return self._basis_cache
        return self.deformation_basis[ids].float().permute(1, 0, 2).reshape(self.config.basis_modes, -1)

    def _attention_offsets(self, h: torch.Tensor, ids: torch.Tensor, cache: bool, chunk: int) -> torch.Tensor:
        """The cross-attention branch: (B, Q, 3) offsets of vertices ``ids`` from latent tokens h (B, L, W)."""
        queries = None
        if cache and not self.training:
            if self._query_cache is None or self._query_cache.device != h.device:
                self._query_cache = torch.cat([self._queries(ids[i:i + chunk]) for i in range(0, len(ids), chunk)])
            queries = self._query_cache  # (Q, W): they depend on the weights only
        outputs = []
        for start in range(0, len(ids), chunk):
            query = queries[start:start + chunk] if queries is not None else self._queries(ids[start:start + chunk])
            query = self.decoder_cross(query.expand(h.shape[0], -1, -1), h)  # (B, q, W)
            outputs.append(self.decoder_out(query).float())
        return torch.cat(outputs, dim=1)

    def forward(self, points: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor,
                vertex_ids: torch.Tensor | None = None, sample_posterior: bool = True,
                generator: torch.Generator | None = None):
        """Returns (decoded points (B, Q, 3), posterior)."""
        posterior = self.encode(points, normals, offsets)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z, vertex_ids), posterior
