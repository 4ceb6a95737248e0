"""Estimate the portrait's lighting on the skin and divide it out (→ albedo).

Model: the photo's linear luminance at a skin point with unit normal ``n`` is ``a · S(n)`` with a
constant albedo ``a`` and ``S`` a 2nd-order spherical-harmonic irradiance (9 coefficients; 4 — the
constant and linear band — when few samples are seen). The constant is absorbed into the
coefficients, which are fitted by least squares to the plain-skin samples (eyes, brows and lips
left out by the caller), made robust by iteratively reweighted least squares (Tukey biweight on the
residuals, scale from their median absolute deviation) so that hair, stubble, specular highlights
and cast shadows do not pull the fit. A small ridge keeps the unobserved directions (the fit only
sees normals that face the camera) close to flat. The shading is normalised so that its median over
the fitted samples is 1: the albedo keeps the photo's typical skin brightness and colour balance;
one shading (grey) divides all three channels.

Colours are linear RGB in [0, 1] here (:func:`srgb_to_linear` / :func:`linear_to_srgb`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topos_server.texture.texel_chunks import in_chunks

MIN_SHADING, MAX_SHADING = 0.5, 2.0  # relative to the median: deep shadow / highlights are not amplified
#                                      or flattened further than this
MAX_FIT_SAMPLES = 40_000
IRLS_ITERATIONS = 6
# ridge per coefficient (data normalised to median 1, per unit of total sample weight): the linear
# band is cheap, the quadratic band (poorly seen: only normals that face the camera) is held flatter
RIDGE_LINEAR, RIDGE_QUADRATIC = 0.01, 0.1


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] → linear (IEC 61966-2-1), float32."""
    c = np.asarray(srgb, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear in [0, 1] → sRGB, float32 (clamped)."""
    c = np.clip(np.asarray(linear, np.float32), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055).astype(np.float32)


_SRGB8_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)  # (256,)
_LINEAR16_TO_SRGB8 = np.rint(linear_to_srgb(np.arange(65536, dtype=np.float32) / 65535.0) * 255.0).astype(np.uint8)


def srgb8_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB → float32 linear in [0, 1] (table lookup)."""
    return _SRGB8_TO_LINEAR[image]


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """float linear in [0, 1] → uint8 sRGB (clamped; table lookup on a 16-bit quantisation)."""
    flat = np.asarray(linear).reshape(-1)
    out = np.empty(flat.shape, np.uint8)

    def part(chunk: slice) -> None:
        index = np.clip(flat[chunk], 0.0, 1.0) * 65535.0 + 0.5
        out[chunk] = _LINEAR16_TO_SRGB8[index.astype(np.uint16)]

    in_chunks(part, flat.size)
    return out.reshape(np.shape(linear))


def luminance(linear_rgb: np.ndarray, axis: int = -1) -> np.ndarray:
    """Linear RGB with channels on ``axis`` → Rec.709 luminance (that axis removed)."""
    rgb = np.moveaxis(np.asarray(linear_rgb, np.float32), axis, 0)
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]


def sh_basis(normals: np.ndarray, order: int = 2) -> np.ndarray:
    """(3, K) unit normals → (9, K) real SH basis (order 2) or (4, K) (order 1), float32.

    Normalisation constants are dropped: they are absorbed by the fitted coefficients.
    """
    x, y, z = normals[0], normals[1], normals[2]
    rows = [np.ones_like(x), x, y, z]
    if order >= 2:
        rows += [x * y, y * z, 3.0 * z * z - 1.0, x * z, x * x - y * y]
    return np.stack(rows).astype(np.float32)


@dataclass
class SkinLighting:
    """Fitted SH shading: ``shading(n) = sh_basis(n) @ coefficients`` (normalised, median 1 on skin)."""

    coefficients: np.ndarray  # (9,) or (4,) float64
    order: int
    samples_used: int

    def shading(self, normals: np.ndarray) -> np.ndarray:
        """(3, K) unit normals (same frame as the fit) → (K,) float32 shading in [MIN_SHADING, MAX_SHADING]."""
        c = self.coefficients.astype(np.float32)
        x, y, z = normals[0], normals[1], normals[2]
        s = c[0] + c[1] * x + c[2] * y + c[3] * z
        if self.order >= 2:
            s += x * (c[4] * y + c[7] * z + c[8] * x) + y * (c[5] * z - c[8] * y) + c[6] * (3.0 * z * z - 1.0)
        return np.clip(s, MIN_SHADING, MAX_SHADING, out=s).astype(np.float32, copy=False)

    @classmethod
    def flat(cls) -> "SkinLighting":
        return cls(np.array([1.0, 0.0, 0.0, 0.0]), 1, 0)


def fit_skin_lighting(normals: np.ndarray, linear_rgb: np.ndarray, weights: np.ndarray) -> SkinLighting:
    """Fit the shading to skin samples.

    normals: (3, K) unit normals; linear_rgb: (3, K) observed colours; weights: (K,) confidence in
    [0, 1] (view angle × plain-skin region). Returns :meth:`SkinLighting.flat` when too few samples.
    """
    keep = np.flatnonzero(weights > 0.05)
    if keep.size < 50:
        return SkinLighting.flat()
    if keep.size > MAX_FIT_SAMPLES:  # deterministic thinning
        keep = keep[np.linspace(0, keep.size - 1, MAX_FIT_SAMPLES).astype(np.int64)]
    order = 2 if keep.size >= 500 else 1
    basis = sh_basis(normals[:, keep], order).T.astype(np.float64)  # (k, B)
    target = luminance(linear_rgb[:, keep], axis=0).astype(np.float64)  # (k,)
    level = float(np.median(target))
    if not level > 1e-4:  # a black photo: nothing to learn
        return SkinLighting.flat()
    target = target / level
    prior = weights[keep].astype(np.float64)
    robust = np.ones_like(target)
    coefficients = np.zeros(basis.shape[1])
    penalty = np.array([0.0] + [RIDGE_LINEAR] * 3 + [RIDGE_QUADRATIC] * (basis.shape[1] - 4))  # (B,)
    for _ in range(IRLS_ITERATIONS):
        w = prior * robust
        normal_matrix = basis.T @ (basis * w[:, None])
        coefficients = np.linalg.solve(normal_matrix + np.diag(penalty * w.sum()), basis.T @ (w * target))
        residual = target - basis @ coefficients
        scale = 1.4826 * np.median(np.abs(residual[w > 0])) + 1e-6
        u = residual / (4.685 * scale)
        robust = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
    fitted = basis @ coefficients
    median_shading = float(np.median(fitted[robust > 0])) if (robust > 0).any() else float(np.median(fitted))
    if not np.isfinite(median_shading) or median_shading <= 1e-6:
        return SkinLighting.flat()
    return SkinLighting(coefficients / median_shading, order, int(keep.size))
