"""A robust colour model of the portrait's skin, to keep background out of the texture.

Where the fitted mesh is a little wider than the face in the photo (cheeks near the jaw, the sides
of the forehead), texels seen at a grazing angle project onto background, collar or hair. Those
texels are recognised by colour: the model is the median chromaticity ``(r, g) / (r + g + b)`` and
median log-luminance of the plain-skin texels seen face-on, with spreads from their median
absolute deviation; a texel's skin likelihood is a Gaussian of its normalised distance. The baker
applies it only to texels seen obliquely (``cos`` below ``TRUST_COS``), so lips, eyes and brows —
which face the camera — keep their colour, while grazing texels that do not look like skin give way
to the symmetric side or the fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topos_server.texture.texel_chunks import in_chunks

MIN_CHROMA_SPREAD = 0.015  # floor of the chromaticity spread (uniformly lit, uniform skin)
MIN_LOG_LUMINANCE_SPREAD = 0.4  # shading alone moves the luminance this much (×1.5)
TOLERANCE = 3.0  # distance (in spreads) up to which a colour counts as skin; a Gaussian fall-off beyond
NECK_TOLERANCE = 1.5  # stricter on the neck: white and grey collars are only ~3 spreads from skin
TRUST_COS = 0.75  # texels seen closer to face-on than this are always trusted
DOUBT_COS = 0.4  # at and below this, the colour test applies in full


@dataclass
class SkinColour:
    chroma: np.ndarray  # (2,) median (r, g) chromaticity
    log_luminance: float
    chroma_spread: float
    log_luminance_spread: float

    def likelihood(self, linear_rgb: np.ndarray, tolerance: float | np.ndarray = TOLERANCE) -> np.ndarray:
        """(3, K) linear colours → (K,) float32 in (0, 1]: 1 at the skin colour, → 0 far from it."""
        out = np.empty(linear_rgb.shape[1], np.float32)

        def part(chunk: slice) -> None:
            out[chunk] = self._likelihood(linear_rgb[:, chunk], tolerance[chunk] if np.ndim(tolerance) else tolerance)

        in_chunks(part, out.size)
        return out

    def _likelihood(self, linear_rgb: np.ndarray, tolerance: float | np.ndarray) -> np.ndarray:
        chroma, log_lum = colour_features(linear_rgb)
        chroma[0] -= self.chroma[0]
        chroma[1] -= self.chroma[1]
        distance2 = (chroma[0] * chroma[0] + chroma[1] * chroma[1]) * np.float32(1.0 / self.chroma_spread ** 2)
        log_lum -= self.log_luminance
        log_lum *= np.float32(1.0 / self.log_luminance_spread)
        distance2 += log_lum * log_lum
        # flat (= 1) within TOLERANCE spreads, then a Gaussian fall-off
        excess = np.sqrt(distance2, out=distance2)
        excess -= tolerance
        np.maximum(excess, 0.0, out=excess)
        excess *= excess
        excess *= -0.5
        return np.exp(excess, out=excess)

    def oblique_weight(self, linear_rgb: np.ndarray, cos_view: np.ndarray,
                       doubt_floor: np.ndarray | None = None) -> np.ndarray:
        """(K,) factor for the observation weights: 1 face-on, the skin likelihood when grazing.

        ``doubt_floor`` (K,) in [0, 1] applies the colour test there whatever the view angle (the neck,
        which clothing covers face-on as often as not).
        """
        factor = np.empty(cos_view.shape, np.float32)

        def part(chunk: slice) -> None:
            doubt = np.clip((TRUST_COS - cos_view[chunk]) / (TRUST_COS - DOUBT_COS), 0.0, 1.0)
            tolerance = np.float32(TOLERANCE)
            if doubt_floor is not None:
                doubt = np.maximum(doubt, doubt_floor[chunk])
                tolerance = TOLERANCE + (NECK_TOLERANCE - TOLERANCE) * doubt_floor[chunk]
            active = np.flatnonzero(doubt > 0)
            out = factor[chunk]
            out[...] = 1.0
            if active.size:
                tol = np.take(tolerance, active) if np.ndim(tolerance) else tolerance
                likely = self._likelihood(np.take(linear_rgb[:, chunk], active, axis=1), tol)
                out[active] = 1.0 - np.take(doubt, active) * (1.0 - likely)

        in_chunks(part, factor.size)
        return factor


def fit_skin_colour(linear_rgb: np.ndarray, weights: np.ndarray) -> SkinColour | None:
    """Robust skin colour from (3, K) samples with (K,) weights; ``None`` with too few samples."""
    keep = np.flatnonzero(weights > 0.5)
    if keep.size < 50:
        return None
    chroma, log_lum = colour_features(linear_rgb[:, keep])
    centre = np.median(chroma, axis=1)
    lum_centre = float(np.median(log_lum))
    chroma_mad = float(np.median(np.hypot(chroma[0] - centre[0], chroma[1] - centre[1])))
    lum_mad = float(np.median(np.abs(log_lum - lum_centre)))
    return SkinColour(centre, lum_centre, max(1.4826 * chroma_mad, MIN_CHROMA_SPREAD),
                      max(1.4826 * lum_mad, MIN_LOG_LUMINANCE_SPREAD))


def colour_features(linear_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, K) → chromaticity (2, K) and log-luminance (K,), float32."""
    rgb = np.asarray(linear_rgb, np.float32)
    total = rgb[0] + rgb[1]
    total += rgb[2]
    total += 1e-4
    chroma = rgb[:2] / total
    lum = 0.2126 * rgb[0]
    lum += 0.7152 * rgb[1]
    lum += 0.0722 * rgb[2]
    lum += 1e-3
    return chroma, np.log(lum, out=lum)
