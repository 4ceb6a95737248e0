"""How well a fitted head overlays the portrait: landmark errors as fractions of the inter-ocular distance."""

from __future__ import annotations

import numpy as np

from topos_sdk import HeadResult

MULTIPIE_INNER = np.arange(17, 68)  # brows, eyes, nose, mouth (0–16 are the jaw contour)


def interocular_px(points: np.ndarray) -> float:
    """Distance between the eye centres of (≥468, 2|3) MediaPipe landmarks (corners 33/133, 263/362)."""
    right = (points[33, :2] + points[133, :2]) / 2
    left = (points[263, :2] + points[362, :2]) / 2
    return float(np.linalg.norm(left - right))


def projected_landmarks(result: HeadResult, landmark_set: str = "mediapipe") -> np.ndarray:
    """(K, 2) landmarks of the posed head (expression applied) projected through the result's camera."""
    posed = result.posed_points()
    return result.camera.project(result.topology.landmarks[landmark_set].evaluate(posed))


def landmark_errors(result: HeadResult, detected: np.ndarray) -> dict[str, float]:
    """Mean errors of the posed head's landmarks projected through its camera vs the detected ones.

    ``mediapipe``: all embedded MediaPipe landmarks; ``ict_inner``: the inner Multi-PIE landmarks of the
    topology vs their MediaPipe counterparts. Both as fractions of the inter-ocular distance.
    """
    from topos_server.assets.correspondence import MEDIAPIPE_TO_MULTIPIE68

    iod = interocular_px(detected)
    mp = projected_landmarks(result, "mediapipe")
    n = min(len(mp), len(detected))
    ict = projected_landmarks(result, "multipie68")[MULTIPIE_INNER]
    mp_inner = detected[np.asarray(MEDIAPIPE_TO_MULTIPIE68)[MULTIPIE_INNER], :2]
    return {
        "interocular_px": iod,
        "mediapipe": float(np.linalg.norm(mp[:n] - detected[:n, :2], axis=1).mean() / iod),
        "ict_inner": float(np.linalg.norm(ict - mp_inner, axis=1).mean() / iod),
    }
