"""The 468 MediaPipe FaceMesh landmarks of one face in a portrait, run with LiteRT.

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
from topos_sdk.faces import FaceList
from topos_server.face.face_choice import FaceCandidate, rank_faces
from topos_server.face.detection import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector, FaceDetection, create_interpreter
from topos_server.face.image_loading import MIN_SIDE, ImageSource, array_to_rgb8, load_image
from topos_server.face.iris import IRIS_MODEL_FILE, IrisLandmarker

LANDMARK_MODEL_FILE = "face_landmark.tflite"
NUM_LANDMARKS = 468
FACE_PRESENCE_THRESHOLD = 0.5
SAME_FACE_IOU = 0.3  # detections of the two detector models overlapping more are one face


@dataclass(frozen=True)
class FaceLandmarks:
    points: np.ndarray  # (468 | 478 with iris, 3) float32 x, y in image pixels; z relative depth, same scale as x
    face_count: int  # faces the detector found
    box: np.ndarray  # (4,) float32 xmin, ymin, xmax, ymax of the chosen detection, image pixels
    score: float  # the detection's score
    presence: float  # the landmark model's face-presence probability
    region: FaceRegion  # the crop the landmarks were computed in
    detection: FaceDetection
    image_size: tuple[int, int]  # (width, height) of the image the points refer to
    faces: FaceList | None = None  # every face the landmark model accepted, scored (face_choice.py)
    face_index: int = 0  # the returned face's index in `faces`


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
    """Detect faces and the 468 landmarks of one (see face_choice.py for which). Build once, reuse: the three LiteRT
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
        """All faces: the short-range model's, plus the full-range model's that none of those overlap
        (the short-range model misses faces under about a fifth of the image, as in group photos)."""
        faces = self.short_range.detect(image)
        for far in self.full_range.detect(image):
            if all(box_iou(far.box, near.box) < SAME_FACE_IOU for near in faces):
                faces.append(far)
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

    def face_candidates(self, pixels: np.ndarray) -> tuple[list[FaceCandidate], int]:
        """(faces the landmark model accepts, faces the detector found) in an (H, W, 3) uint8 image."""
        faces = self.find_faces(pixels)
        candidates = []
        for detection in faces:
            region = region_from_detection(detection)
            points, presence = self.landmarks_in_region(pixels, region)
            if presence >= FACE_PRESENCE_THRESHOLD:
                candidates.append(FaceCandidate(detection, region, points, presence))
        return candidates, len(faces)

    def list_faces(self, image: ImageSource) -> FaceList:
        """Every face, numbered left to right and scored (face_choice.py); raises NoFaceFound."""
        pixels = self._pixels(image)
        candidates, found = self.face_candidates(pixels)
        _, faces = rank_faces(candidates, (pixels.shape[1], pixels.shape[0]))
        if not faces.faces:
            raise _no_face(found, pixels)
        return faces

    def detect(self, image: ImageSource, refine_iris: bool | None = None, face_index: int | None = None) -> FaceLandmarks:
        """Landmarks of one face. `image`: (H, W, 3) uint8 RGB array (other arrays are
        converted), or encoded bytes / a path (decoded with `load_image`, so the points are in
        that decoded image's pixels). `face_index`: which face (numbered left to right, as
        `list_faces`); None takes the largest, most frontal, least occluded one. Raises NoFaceFound
        when no face passes both the detector and the landmark model's presence check, and
        InvalidInputError for a face index beyond the faces found. `refine_iris` (default: the
        landmarker's setting) appends the 10 iris points → (478, 3)."""
        pixels = self._pixels(image)
        height, width = pixels.shape[:2]
        candidates, found = self.face_candidates(pixels)
        ordered, faces = rank_faces(candidates, (width, height))
        if not ordered:
            raise _no_face(found, pixels)
        if face_index is not None and not 0 <= face_index < len(ordered):
            raise InvalidInputError(f"face {face_index} asked for, but the image has {len(ordered)} "
                                    f"face(s) (0 to {len(ordered) - 1}, left to right)")
        chosen = faces.chosen_index if face_index is None else int(face_index)
        candidate = ordered[chosen]
        points, presence, region = candidate.points, candidate.presence, candidate.region
        if self.refine_roi:
            refined_region = region_from_landmarks(points)
            refined_points, refined_presence = self.landmarks_in_region(pixels, refined_region)
            if refined_presence >= FACE_PRESENCE_THRESHOLD:
                points, presence, region = refined_points, refined_presence, refined_region
        if self.refine_iris if refine_iris is None else refine_iris:
            points = self.iris.refine(pixels, points)
        return FaceLandmarks(
            points=points,
            face_count=found,
            box=candidate.detection.box,
            score=candidate.detection.score,
            presence=presence,
            region=region,
            detection=candidate.detection,
            image_size=(width, height),
            faces=faces,
            face_index=chosen,
        )

    def _pixels(self, image: ImageSource) -> np.ndarray:
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
        return pixels


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x_min, y_min, x_max, y_max boxes."""
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = np.clip(a[2:] - a[:2], 0, None).prod() + np.clip(b[2:] - b[:2], 0, None).prod() - inter
    return float(inter / union) if union > 0 else 0.0


def _no_face(found: int, pixels: np.ndarray) -> NoFaceFound:
    if found:
        return NoFaceFound(f"the detector found {found} face candidate(s) but the landmark model rejected them all "
                           "(a face turned more than about 70° from the camera, toward a full profile, is beyond it)")
    return NoFaceFound(f"no face found in the {pixels.shape[1]}×{pixels.shape[0]} image")
