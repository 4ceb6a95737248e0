"""The rotated square crops the landmark models see, and projecting their outputs back to the image.

MediaPipe's DetectionsToRects (box centre and size, rotation that levels two keypoints) and
RectTransformation (square on the long side, ×1.5) in pixels; the crop is a bilinear warp of the
8-bit image with the border replicated, as MediaPipe's ImageToTensor. Shared by the face landmark
model (landmarks.py) and the iris model (iris.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from topos_server.face.detection import FaceDetection

LANDMARK_INPUT_SIZE = 192
ROI_SCALE = 1.5
# MediaPipe's rotation keypoints: detection keypoints 0 → 1 (the eyes), landmarks 33 → 263
# (outer eye corners).
DETECTION_ROTATION_KEYPOINTS = (0, 1)
LANDMARK_ROTATION_INDICES = (33, 263)


@dataclass(frozen=True)
class FaceRegion:
    """A rotated square crop: centre and side in image pixels, rotation in radians (clockwise
    on screen, y down), as MediaPipe's NormalizedRect once multiplied by the image size."""

    center: np.ndarray  # (2,) float64 x, y
    size: float
    rotation: float

    def tensor_to_image(self, tensor_size: int = LANDMARK_INPUT_SIZE) -> np.ndarray:
        """(2, 3) affine from crop-tensor pixels (0..tensor_size spans the square) to image pixels."""
        cos, sin = np.cos(self.rotation), np.sin(self.rotation)
        rotation_scale = np.array([[cos, -sin], [sin, cos]]) * (self.size / tensor_size)
        offset = self.center - rotation_scale @ np.array([tensor_size / 2.0, tensor_size / 2.0])
        return np.concatenate([rotation_scale, offset[:, None]], axis=1)


def rotation_levelling(start: np.ndarray, end: np.ndarray) -> float:
    """Rotation (radians, normalised to [-π, π)) that makes the start → end vector horizontal."""
    angle = -np.arctan2(-(end[1] - start[1]), end[0] - start[0])
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def region_from_box(box: np.ndarray, rotation_start: np.ndarray, rotation_end: np.ndarray) -> FaceRegion:
    """DetectionsToRects (box centre/size, rotation from two points) + RectTransformation
    (square on the long side, scaled ×1.5), in pixels."""
    center = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0], dtype=np.float64)
    long_side = float(max(box[2] - box[0], box[3] - box[1]))
    return FaceRegion(center, long_side * ROI_SCALE, rotation_levelling(rotation_start, rotation_end))


def region_from_detection(detection: FaceDetection) -> FaceRegion:
    start, end = DETECTION_ROTATION_KEYPOINTS
    return region_from_box(detection.box, detection.keypoints[start], detection.keypoints[end])


def region_from_landmarks(points: np.ndarray) -> FaceRegion:
    xy = points[:, :2]  # (468, 2)
    box = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
    start, end = LANDMARK_ROTATION_INDICES
    return region_from_box(box, xy[start], xy[end])


def crop_region(image: np.ndarray, region: FaceRegion, size: int = LANDMARK_INPUT_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 crop of the rotated square, bilinear, border replicated (as MediaPipe)."""
    return cv2.warpAffine(
        image, region.tensor_to_image(size), (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )


def project_landmarks(raw: np.ndarray, region: FaceRegion, size: int = LANDMARK_INPUT_SIZE) -> np.ndarray:
    """(468, 3) model output in crop-tensor pixels → image pixels; z scaled like x."""
    affine = region.tensor_to_image(size)  # (2, 3)
    xy = raw[:, :2] @ affine[:, :2].T + affine[:, 2]
    z = raw[:, 2:3] * (region.size / size)
    return np.concatenate([xy, z], axis=1).astype(np.float32)
