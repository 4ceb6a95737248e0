"""MediaPipe's iris landmarks (478-point FaceMesh refinement) from iris_landmark.tflite, run with LiteRT.

Reproduces MediaPipe's iris graphs (iris_landmark_left_and_right_cpu.pbtxt, iris_landmark_cpu.pbtxt,
iris_landmark_landmarks_to_roi.pbtxt) on the 468 FaceMesh points: per eye, the region of interest
is the box of the two eye corners (MediaPipe's "left" eye 33 → 133, the subject's right eye on the
viewer's left; its "right" eye 362 → 263), rotated so the corner-to-corner vector is horizontal,
square on the long side and scaled ×2.3 → 64×64 crop (bilinear, border replicated, values in
[0, 1]); the right eye's crop is mirrored horizontally so that both look like a left eye to the
model, and its outputs are mirrored back → 71 eye-contour/brow points + 5 iris points (centre,
then four rim points) per eye, projected back through the crop.

The 478 points are the 468 face points followed by the iris of the 33/133 eye (468 centre,
469–472 rim) and of the 362/263 eye (473 centre, 474–477 rim); each rim runs image-right, top,
image-left, bottom, and every iris point gets the mean depth of its eye's 16 contour points, as in
MediaPipe's refined (attention) FaceMesh output. Optionally the face points of the eye contours
and brows are replaced with the iris model's, as MediaPipe's UpdateFaceLandmarksCalculator does.

MediaPipe's iris model: Apache-2.0, © The MediaPipe Authors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_server.face.crop import FaceRegion, crop_region, project_landmarks, rotation_levelling
from topos_server.face.detection import create_interpreter

IRIS_MODEL_FILE = "iris_landmark.tflite"
IRIS_INPUT_SIZE = 64
EYE_ROI_SCALE = 2.3
NUM_EYE_CONTOUR = 71
NUM_IRIS_POINTS = 5
NUM_FACE_POINTS = 468
NUM_POINTS_WITH_IRIS = NUM_FACE_POINTS + 2 * NUM_IRIS_POINTS

# (start, end) corner landmarks whose vector the eye crop levels; MediaPipe's left eye, then right
EYE_CORNERS = ((33, 133), (362, 263))
EYE_IS_MIRRORED = (False, True)

# The 16 face points of each eye's lid contour (lower incl. corners, then upper); their mean depth
# is the iris depth (tensors_to_face_landmarks_with_attention.pbtxt, z_refinement).
EYE_LID_CONTOURS = np.array([
    [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173],
    [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398],
], dtype=np.int32)

# The face point each of the iris model's 71 eye points stands for, per eye (the order of
# MediaPipe's UpdateFaceLandmarksCalculator): lid contour, then four halos around it / the brow.
EYE_CONTOUR_FACE_INDICES = np.array([
    [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
     130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
     226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
     35, 124, 46, 53, 52, 65,
     143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105, 66, 107, 55, 193],
    [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
     359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
     446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
     265, 353, 276, 283, 282, 295,
     372, 340, 346, 347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417],
], dtype=np.int32)

# Rim order of the model (in the unmirrored crop): centre, image-right, top, image-left, bottom.
# Mirroring back swaps right and left, so the mirrored eye's rim is reordered to keep that order.
MIRRORED_IRIS_ORDER = np.array([0, 3, 2, 1, 4])


@dataclass(frozen=True)
class EyeLandmarks:
    contour: np.ndarray  # (71, 3) float32 image pixels; z the model's depth, same scale as x
    iris: np.ndarray  # (5, 3) float32 centre + rim, image pixels; z the model's depth
    region: FaceRegion  # the eye crop


def eye_region(face_points: np.ndarray, eye: int) -> FaceRegion:
    """The rotated square eye crop of eye 0 (corners 33/133) or 1 (362/263), image pixels."""
    start, end = (face_points[index, :2].astype(np.float64) for index in EYE_CORNERS[eye])
    low, high = np.minimum(start, end), np.maximum(start, end)
    long_side = float(np.max(high - low))
    return FaceRegion((low + high) / 2.0, long_side * EYE_ROI_SCALE, rotation_levelling(start, end))


def mirror_crop_x(raw: np.ndarray, size: int = IRIS_INPUT_SIZE) -> np.ndarray:
    """(K, 3) crop-pixel points of a mirrored crop → the unmirrored crop (x → size − x)."""
    mirrored = raw.copy()
    mirrored[:, 0] = size - mirrored[:, 0]
    return mirrored


def iris_depths(face_points: np.ndarray) -> np.ndarray:
    """(2,) per-eye iris depth: the mean depth of the eye's 16 lid-contour face points."""
    return face_points[EYE_LID_CONTOURS, 2].mean(axis=1)


class IrisLandmarker:
    """Both eyes' contour and iris landmarks from the 468 FaceMesh points. Build once, reuse;
    thread-safe (one interpreter behind a lock)."""

    def __init__(self, model_path: Path | str, num_threads: int | None = 1):
        self._model = create_interpreter(Path(model_path), num_threads)
        self._input = self._model.get_input_details()[0]["index"]
        sizes = {int(np.prod(output["shape"])): output["index"] for output in self._model.get_output_details()}
        self._contour_output = sizes[NUM_EYE_CONTOUR * 3]  # (1, 213) x, y, z in crop pixels
        self._iris_output = sizes[NUM_IRIS_POINTS * 3]  # (1, 15)
        self._lock = threading.Lock()

    def eye(self, image: np.ndarray, face_points: np.ndarray, eye: int) -> EyeLandmarks:
        """Landmarks of eye 0 (MediaPipe's left: corners 33/133) or 1 (right: 362/263)."""
        region = eye_region(face_points, eye)
        crop = crop_region(image, region, IRIS_INPUT_SIZE)  # (64, 64, 3) uint8
        mirrored = EYE_IS_MIRRORED[eye]
        if mirrored:
            crop = crop[:, ::-1]
        tensor = np.ascontiguousarray(crop, dtype=np.float32)[None] * (1.0 / 255.0)
        with self._lock:
            self._model.set_tensor(self._input, tensor)
            self._model.invoke()
            contour = self._model.get_tensor(self._contour_output).reshape(NUM_EYE_CONTOUR, 3).copy()
            iris = self._model.get_tensor(self._iris_output).reshape(NUM_IRIS_POINTS, 3).copy()
        if mirrored:
            contour, iris = mirror_crop_x(contour), mirror_crop_x(iris)[MIRRORED_IRIS_ORDER]
        return EyeLandmarks(project_landmarks(contour, region, IRIS_INPUT_SIZE),
                            project_landmarks(iris, region, IRIS_INPUT_SIZE), region)

    def eyes(self, image: np.ndarray, face_points: np.ndarray) -> tuple[EyeLandmarks, EyeLandmarks]:
        return self.eye(image, face_points, 0), self.eye(image, face_points, 1)

    def refine(self, image: np.ndarray, face_points: np.ndarray, update_eye_contours: bool = False) -> np.ndarray:
        """(468, 3) face points → (478, 3) float32 with the two irises appended (see module doc).
        `update_eye_contours`: also move the eye-contour and brow face points (x, y) to the iris
        model's, as MediaPipe's legacy iris graph does (their depth is kept: the model's depth is
        relative to the eye crop, not the face)."""
        if face_points.shape != (NUM_FACE_POINTS, 3):
            raise ValueError(f"expected ({NUM_FACE_POINTS}, 3) face points, got {face_points.shape}")
        eyes = self.eyes(image, face_points)
        points = face_points.astype(np.float32, copy=True)
        if update_eye_contours:
            for eye, found in enumerate(eyes):
                points[EYE_CONTOUR_FACE_INDICES[eye], :2] = found.contour[:, :2]
        iris = np.concatenate([found.iris for found in eyes])  # (10, 3)
        iris[:, 2] = np.repeat(iris_depths(points), NUM_IRIS_POINTS)
        return np.concatenate([points, iris]).astype(np.float32)
