"""The 468 MediaPipe FaceMesh landmarks of the largest face in a portrait, run with LiteRT.

Reproduces MediaPipe's FaceMesh in static-image mode (face_landmark_front_cpu.pbtxt):
BlazeFace detection → region of interest from the detection (DetectionsToRects: box centre and
size, rotation that levels the eye keypoints; RectTransformation: square on the long side, ×1.5)
→ rotated crop to the 192×192 landmark input (bilinear warp of the 8-bit image, replicated
border, values in [0, 1]) → face_landmark.tflite → face-presence gate (sigmoid > 0.5) →
landmarks projected back through the crop. z is MediaPipe's relative depth, in the same pixel
scale as x (negative towards the camera).

Optionally (`refine_roi=True`) the crop is redone from the first pass's landmarks
(face_landmark_landmarks_to_roi.pbtxt: bounding box of all landmarks, rotation levelling
landmarks 33 → 263, square ×1.5), which is what MediaPipe's video mode tracks with.

Optionally (`refine_iris=True`) the 10 iris points of MediaPipe's 478-point FaceMesh are appended
from the iris model (iris.py); the 468 face points are unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_sdk.errors import AssetError, InvalidInputError, NoFaceFound
from topos_server.face.crop import (
    FaceRegion,
    crop_region,
    project_landmarks,
    region_from_detection,
    region_from_landmarks,
)
from topos_server.face.detection import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector, FaceDetection, create_interpreter
from topos_server.face.image_loading import MIN_SIDE, ImageSource, array_to_rgb8, load_image
from topos_server.face.iris import IRIS_MODEL_FILE, IrisLandmarker

LANDMARK_MODEL_FILE = "face_landmark.tflite"
NUM_LANDMARKS = 468
FACE_PRESENCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class FaceLandmarks:
    points: np.ndarray  # (468 | 478 with iris, 3) float32 x, y in image pixels; z relative depth, same scale as x
    face_count: int  # faces the detector found (the largest one is returned)
    box: np.ndarray  # (4,) float32 xmin, ymin, xmax, ymax of the chosen detection, image pixels
    score: float  # the detection's score
    presence: float  # the landmark model's face-presence probability
    region: FaceRegion  # the crop the landmarks were computed in
    detection: FaceDetection
    image_size: tuple[int, int]  # (width, height) of the image the points refer to


def resolve_model_dir_file(name: str, cache=None, model_dir: Path | str | None = None) -> Path:
    """The path of a MediaPipe model file: `model_dir/name` if given, else the asset cache's."""
    if model_dir is not None:
        path = Path(model_dir) / name
        if not path.is_file():
            raise AssetError(f"{path}: MediaPipe model file missing")
        return path
    if cache is None:
        from topos_server.assets.cache import AssetCache

        cache = AssetCache.default()
    return Path(cache.facemesh_file(name))


class FaceLandmarker:
    """Detect the largest face and its 468 landmarks. Build once, reuse: the three LiteRT
    interpreters are created here; `detect` may be called from several threads (each
    interpreter is guarded by its own lock). `refine_iris`: append MediaPipe's 10 iris points
    (478 in all, see iris.py); the iris model is loaded on first use."""

    def __init__(
        self,
        cache=None,
        model_dir: Path | str | None = None,
        refine_roi: bool = False,
        num_threads: int | None = None,
        refine_iris: bool = False,
    ):
        if num_threads is None:
            num_threads = 1  # measured fastest per image for these small models; scale out with threads
        self.refine_roi = refine_roi
        self.refine_iris = refine_iris
        self._cache, self._model_dir = cache, model_dir
        self._iris = None  # IrisLandmarker, built on first need
        short_range_path = resolve_model_dir_file(SHORT_RANGE.model_file, cache, model_dir)
        self.short_range = BlazeFaceDetector(short_range_path, SHORT_RANGE, "short_range", num_threads)
        self._full_range_path = resolve_model_dir_file(FULL_RANGE.model_file, cache, model_dir)
        self._full_range: BlazeFaceDetector | None = None  # built on first need (small faces)
        self._num_threads = num_threads
        self._landmark_model = create_interpreter(
            resolve_model_dir_file(LANDMARK_MODEL_FILE, cache, model_dir), num_threads
        )
        self._landmark_input = self._landmark_model.get_input_details()[0]["index"]
        outputs = self._landmark_model.get_output_details()
        sizes = {int(np.prod(output["shape"])): output["index"] for output in outputs}
        self._landmark_output = sizes[NUM_LANDMARKS * 3]  # (1, 1, 1, 1404) x, y, z in crop pixels
        self._presence_output = sizes[1]  # (1, 1, 1, 1) face-presence logit
        self._landmark_lock = threading.Lock()
        self._build_lock = threading.Lock()
        if refine_iris:
            _ = self.iris  # a missing iris model fails here, not on the first image

    @property
    def full_range(self) -> BlazeFaceDetector:
        with self._build_lock:
            if self._full_range is None:
                self._full_range = BlazeFaceDetector(
                    self._full_range_path, FULL_RANGE, "full_range", self._num_threads
                )
        return self._full_range

    @property
    def iris(self):
        """The IrisLandmarker (iris.py) sharing this landmarker's model source."""
        with self._build_lock:
            if self._iris is None:
                path = resolve_model_dir_file(IRIS_MODEL_FILE, self._cache, self._model_dir)
                self._iris = IrisLandmarker(path, self._num_threads)
        return self._iris

    def find_faces(self, image: np.ndarray) -> list[FaceDetection]:
        """All faces, short-range model first, the full-range model when it finds none."""
        faces = self.short_range.detect(image)
        if not faces:
            faces = self.full_range.detect(image)
        return faces

    def landmarks_in_region(self, image: np.ndarray, region: FaceRegion) -> tuple[np.ndarray, float]:
        """((468, 3) image-pixel landmarks, face-presence probability) for one crop."""
        crop = crop_region(image, region)  # (192, 192, 3) uint8
        tensor = crop.astype(np.float32)[None] * (1.0 / 255.0)
        with self._landmark_lock:
            self._landmark_model.set_tensor(self._landmark_input, tensor)
            self._landmark_model.invoke()
            raw = self._landmark_model.get_tensor(self._landmark_output).reshape(NUM_LANDMARKS, 3).copy()
            presence_logit = float(self._landmark_model.get_tensor(self._presence_output).reshape(()))
        presence = 1.0 / (1.0 + np.exp(-presence_logit))
        return project_landmarks(raw, region), float(presence)

    def detect(self, image: ImageSource, refine_iris: bool | None = None) -> FaceLandmarks:
        """Landmarks of the largest face. `image`: (H, W, 3) uint8 RGB array (other arrays are
        converted), or encoded bytes / a path (decoded with `load_image`, so the points are in
        that decoded image's pixels). Raises NoFaceFound when no face passes both the detector
        and the landmark model's presence check. `refine_iris` (default: the landmarker's
        setting) appends the 10 iris points → (478, 3)."""
        if isinstance(image, np.ndarray):
            is_rgb8 = image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            pixels = np.ascontiguousarray(image if is_rgb8 else array_to_rgb8(image))
        else:
            pixels = load_image(image)
        height, width = pixels.shape[:2]
        if min(width, height) < MIN_SIDE:
            raise InvalidInputError(
                f"a {width}×{height} image is too small to hold a face (at least {MIN_SIDE} px a side)"
            )
        faces = self.find_faces(pixels)
        # largest first; a detection the landmark model rejects falls through to the next
        for detection in sorted(faces, key=lambda face: -face.area):
            region = region_from_detection(detection)
            points, presence = self.landmarks_in_region(pixels, region)
            if presence < FACE_PRESENCE_THRESHOLD:
                continue
            if self.refine_roi:
                refined_region = region_from_landmarks(points)
                refined_points, refined_presence = self.landmarks_in_region(pixels, refined_region)
                if refined_presence >= FACE_PRESENCE_THRESHOLD:
                    points, presence, region = refined_points, refined_presence, refined_region
            if self.refine_iris if refine_iris is None else refine_iris:
                points = self.iris.refine(pixels, points)
            return FaceLandmarks(
                points=points,
                face_count=len(faces),
                box=detection.box,
                score=detection.score,
                presence=presence,
                region=region,
                detection=detection,
                image_size=(width, height),
            )
        if faces:
            raise NoFaceFound(
                f"the detector found {len(faces)} face candidate(s) but the landmark model rejected them all"
            )
        raise NoFaceFound(f"no face found in the {width}×{height} image")
