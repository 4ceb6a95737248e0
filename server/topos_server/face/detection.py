"""BlazeFace face detection (MediaPipe's short- and full-range models) run with LiteRT.

Reproduces MediaPipe's face detection graph (face_detection.pbtxt and the short/full-range
options): the whole image letterboxed into the square input tensor (zero border, values in
[-1, 1]), SSD anchors with fixed unit size, box + 6 keypoint decoding relative to the anchors,
sigmoid scores clipped at ±100, weighted non-maximum suppression (IoU > 0.3), and projection
back to image pixels. Keypoints: 0 right eye, 1 left eye (as seen in the image: 0 is on the
viewer's left), 2 nose tip, 3 mouth centre, 4 right ear tragion, 5 left ear tragion.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class DetectorSpec:
    model_file: str
    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float  # > 0 adds a second anchor per cell and stride layer
    min_score: float


SHORT_RANGE = DetectorSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 1.0, 0.5)
FULL_RANGE = DetectorSpec("face_detection_full_range_sparse.tflite", 192, (4,), 0.0, 0.6)

NMS_IOU_THRESHOLD = 0.3
SCORE_CLIP = 100.0
NUM_KEYPOINTS = 6


@dataclass(frozen=True)
class FaceDetection:
    box: np.ndarray  # (4,) float32 xmin, ymin, xmax, ymax in image pixels
    keypoints: np.ndarray  # (6, 2) float32 x, y in image pixels
    score: float
    detector: str  # "short_range" | "full_range"

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def ssd_anchor_centers(spec: DetectorSpec) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in [0, 1], in the model's output order.

    As MediaPipe's SsdAnchorsCalculator with fixed_anchor_size (all anchors 1×1, so only the
    count per cell matters): consecutive layers with the same stride share one feature map and
    each contributes one anchor per aspect ratio (1.0) plus one interpolated-scale anchor.
    """
    per_map: list[np.ndarray] = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        same_stride = 0
        while layer + same_stride < len(spec.strides) and spec.strides[layer + same_stride] == stride:
            same_stride += 1
        anchors_per_cell = same_stride * (2 if spec.interpolated_scale_aspect_ratio > 0 else 1)
        cells = int(np.ceil(spec.input_size / stride))
        centers_1d = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        grid_y, grid_x = np.meshgrid(centers_1d, centers_1d, indexing="ij")  # row-major: y outer
        centers = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)  # (cells², 2)
        per_map.append(np.repeat(centers, anchors_per_cell, axis=0))
        layer += same_stride
    return np.concatenate(per_map, axis=0)


def decode_raw_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, spec: DetectorSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model outputs → (boxes (K,4) xmin,ymin,xmax,ymax, keypoints (K,6,2), scores (K,)) in
    tensor-normalised [0, 1] coordinates, for the K anchors scoring at least `spec.min_score`."""
    raw_boxes = raw_boxes.reshape(len(anchors), -1)  # (N, 16): x, y, w, h, 6 × (x, y)
    logits = np.clip(raw_scores.reshape(len(anchors)).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= spec.min_score
    raw_boxes, scores, anchors = raw_boxes[keep], scores[keep], anchors[keep]
    scale = float(spec.input_size)
    centers = raw_boxes[:, 0:2] / scale + anchors  # (K, 2)
    sizes = raw_boxes[:, 2:4] / scale  # (K, 2) w, h
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    keypoints = raw_boxes[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) / scale
    keypoints = keypoints + anchors[:, None, :]
    valid = np.all(sizes >= 0, axis=1) & np.all(np.isfinite(sizes), axis=1)
    return boxes[valid], keypoints[valid], scores[valid]


def weighted_non_max_suppression(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU_THRESHOLD
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED NMS: take the best remaining box, average it with every remaining box
    overlapping it by IoU > threshold (itself included), weighted by score; the cluster keeps the
    best score. Returns [(box (4,), keypoints (6, 2), score)] by decreasing score."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    remaining = np.arange(len(scores))
    results = []
    while remaining.size:
        best = remaining[0]
        candidates = boxes[remaining]
        inter_w = np.minimum(candidates[:, 2], boxes[best, 2]) - np.maximum(candidates[:, 0], boxes[best, 0])
        inter_h = np.minimum(candidates[:, 3], boxes[best, 3]) - np.maximum(candidates[:, 1], boxes[best, 1])
        intersection = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
        union = areas[remaining] + areas[best] - intersection
        iou = np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)
        in_cluster = iou > iou_threshold
        cluster = remaining[in_cluster]
        weights = scores[cluster][:, None]  # (C, 1)
        total = weights.sum()
        box = (boxes[cluster] * weights).sum(axis=0) / total
        points = (keypoints[cluster] * weights[:, :, None]).sum(axis=0) / total
        results.append((box, points, float(scores[best])))
        if not in_cluster.any():  # cannot happen (the best box overlaps itself) unless degenerate
            remaining = remaining[1:]
        else:
            remaining = remaining[~in_cluster]
    return results


def letterbox_transform(width: int, height: int, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Image → square tensor mapping that fits the whole image, centred, padding the short side.

    Returns (M (2, 3) tensor-pixel → image-pixel affine, side of the padded square in image
    pixels, its top-left corner (2,) in image pixels).
    """
    side = float(max(width, height))
    origin = np.array([width / 2.0 - side / 2.0, height / 2.0 - side / 2.0])
    pixel = side / size
    tensor_to_image = np.array([[pixel, 0.0, origin[0]], [0.0, pixel, origin[1]]])
    return tensor_to_image, side, origin


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced():
    """Silence file descriptor 2 briefly: LiteRT's C++ logger prints an INFO line to stderr when
    it creates its XNNPACK delegate, noise in a CLI whose stderr is for errors. If the descriptor
    cannot be redirected (embedded interpreters), nothing is silenced."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, AttributeError, ValueError):
            yield
            return
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def create_interpreter(model_path: Path, num_threads: int | None = 1):
    """A LiteRT interpreter with its tensors allocated (XNNPACK, ~3× the reference kernels)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
    with _native_stderr_silenced():
        interpreter.allocate_tensors()
    return interpreter


class BlazeFaceDetector:
    """One LiteRT interpreter for one BlazeFace model; `detect` is thread-safe (a lock)."""

    def __init__(self, model_path: Path, spec: DetectorSpec, name: str, num_threads: int | None = 1):
        self.spec = spec
        self.name = name
        self._interpreter = create_interpreter(model_path, num_threads)
        self._input_index = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        # the box regressor has 16 values per anchor, the classifier 1
        self._boxes_index = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores_index = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._anchors = ssd_anchor_centers(spec)  # (N, 2)
        self._lock = threading.Lock()

    def input_tensor(self, image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """(1, S, S, 3) float32 in [-1, 1] (letterboxed, zero border), padded side, its origin."""
        height, width = image.shape[:2]
        size = self.spec.input_size
        tensor_to_image, side, origin = letterbox_transform(width, height, size)
        # as MediaPipe: bilinear warp of the 8-bit image, then rescale to the float range
        crop = cv2.warpAffine(
            image, tensor_to_image, (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )  # (S, S, 3) uint8
        tensor = crop.astype(np.float32) * (2.0 / 255.0) - 1.0
        return tensor[None], side, origin

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in an (H, W, 3) uint8 RGB image, best score first, in image pixels."""
        tensor, side, origin = self.input_tensor(image)
        with self._lock:
            self._interpreter.set_tensor(self._input_index, tensor)
            self._interpreter.invoke()
            raw_boxes = self._interpreter.get_tensor(self._boxes_index).copy()
            raw_scores = self._interpreter.get_tensor(self._scores_index).copy()
        boxes, keypoints, scores = decode_raw_detections(raw_boxes, raw_scores, self._anchors, self.spec)
        faces = []
        for box, points, score in weighted_non_max_suppression(boxes, keypoints, scores):
            box_px = np.concatenate([box[:2] * side + origin, box[2:] * side + origin]).astype(np.float32)
            points_px = (points * side + origin).astype(np.float32)
            faces.append(FaceDetection(box_px, points_px, score, self.name))
        return faces
