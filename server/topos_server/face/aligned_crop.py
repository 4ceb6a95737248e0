"""The aligned face crop TOPOS-DiT is conditioned on: a similarity warp fixed by the eyes and the mouth.

The frame follows the FFHQ alignment (Karras et al., ``ffhq-dataset/download_ffhq.py``), which stays
sensible under strong yaw and roll because it never relies on the eye distance alone:

- ``eye_to_eye`` joins the two eye centres (mean of each eye's corners), ``eye_to_mouth`` joins
  their midpoint to the mouth centre (mean of the mouth corners);
- the crop's x axis is ``eye_to_eye − rot90(eye_to_mouth)``: both vectors vote for the roll, so a
  profile (eyes almost on top of each other) still gets its roll from the eyes→mouth direction;
- its half side is ``max(EYE_SPAN · |eye_to_eye|, MOUTH_SPAN · |eye_to_mouth|)``: the eye distance
  shrinks with yaw (cos 70° ≈ 0.34), the eyes→mouth distance does not, so the larger one keeps the
  scale;
- its centre is ``eye_mid + CENTRE_SHIFT · eye_to_mouth`` (about the nose).

A frontal face fills most of the crop (brows to chin); the canonical positions of the eyes and the
mouth follow from the constants for a frontal face and shift with yaw, as the face itself does.
"""

from __future__ import annotations

import cv2
import numpy as np

# MediaPipe FaceMesh indices (the image's left eye is the subject's right one)
EYE_CORNERS = ((33, 133), (362, 263))
MOUTH_CORNERS = (61, 291)
EYE_SPAN = 1.6  # crop half side ≥ this × the eye distance
MOUTH_SPAN = 1.9  # ... and ≥ this × the eyes→mouth distance
CENTRE_SHIFT = 0.35  # crop centre: this far from the eye midpoint toward the mouth


def aligned_face_crop(image: np.ndarray, landmarks_px: np.ndarray, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (468 | 478, ≥2) landmarks in its pixels → ``(crop, affine)``.

    ``crop`` is (size, size, 3) uint8 (border pixels replicated where the crop leaves the image);
    ``affine`` is the (2, 3) float64 image→crop map (``crop_xy = affine @ [x, y, 1]``), the same
    convention for landmarks and pixels (pixel centres at +½ in both).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"aligned_face_crop needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    landmarks = np.asarray(landmarks_px, np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] < 468 or landmarks.shape[1] < 2:
        raise ValueError(f"aligned_face_crop needs (468 or 478, 2 or 3) MediaPipe landmarks, got {landmarks.shape}")
    if not np.isfinite(landmarks[:, :2]).all():
        raise ValueError("aligned_face_crop: the landmarks are not all finite")
    size = int(size)
    if size < 8:
        raise ValueError(f"crop size must be at least 8 px, got {size}")
    affine = face_crop_affine(landmarks[:, :2], size)
    # shrink a large image first (area average) so the warp never skips more than a pixel: no aliasing
    shrink = min(1.0, 2.0 * _scale(affine))
    source, to_source = image, np.eye(3)
    if shrink < 1.0:
        width, height = max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink))
        source = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        to_source = np.diag([width / image.shape[1], height / image.shape[0], 1.0])
    source_affine = affine @ np.linalg.inv(to_source)  # (2, 3) source→crop
    # warpAffine maps integer pixel positions; our pixel centres sit at +½ in both images
    shift = source_affine[:, :2] @ [0.5, 0.5] + source_affine[:, 2] - 0.5
    crop = cv2.warpAffine(source, np.concatenate([source_affine[:, :2], shift[:, None]], axis=1), (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, affine


def face_crop_affine(points_xy: np.ndarray, size: int) -> np.ndarray:
    """(478, 2) landmark pixels → the (2, 3) image→crop similarity (see the module docstring)."""
    eyes = np.array([points_xy[list(corners)].mean(axis=0) for corners in EYE_CORNERS])  # (2, 2)
    eye_mid = eyes.mean(axis=0)
    eye_to_eye = eyes[1] - eyes[0]
    eye_to_mouth = points_xy[list(MOUTH_CORNERS)].mean(axis=0) - eye_mid
    x_axis = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # rot90 toward image +x for an upright face
    norm = np.hypot(*x_axis)
    half_side = max(EYE_SPAN * np.hypot(*eye_to_eye), MOUTH_SPAN * np.hypot(*eye_to_mouth))
    if norm < 1e-6 or half_side < 1e-6:
        raise ValueError("aligned_face_crop: the eye and mouth landmarks coincide")
    x_axis /= norm
    y_axis = np.array([-x_axis[1], x_axis[0]])  # image y is down: x right → y down
    centre = eye_mid + CENTRE_SHIFT * eye_to_mouth
    scale = size / (2.0 * half_side)
    rotation = scale * np.stack([x_axis, y_axis])  # (2, 2) rows: crop x, crop y
    return np.concatenate([rotation, (size / 2.0 - rotation @ centre)[:, None]], axis=1)


def _scale(affine: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
