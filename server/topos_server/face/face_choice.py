"""Which face of a group photo: every detected face numbered left to right and scored, so the engine
takes the largest, most frontal, least occluded one unless told otherwise (``--face INDEX``).

score = size × cos(yaw) × visible fraction, where size is √area relative to the largest face, yaw is
estimated from MediaPipe's landmark depths, and the visible fraction is the part of the box that no
larger (nearer) face covers and the image border does not cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from topos_sdk.faces import DetectedFace, FaceList
from topos_server.face.crop import FaceRegion
from topos_server.face.detection import FaceDetection

# MediaPipe FaceMesh landmark pairs mirrored across the face: outer eye corners, cheek edges,
# mouth corners, jaw below the ears
SYMMETRIC_PAIRS = np.array([[33, 263], [234, 454], [61, 291], [132, 361]])
MIN_FRONTALITY = 0.05  # a full profile still ranks by size and visibility
VISIBILITY_SAMPLES = 24  # per box side, for the covered-area estimate


@dataclass(frozen=True)
class FaceCandidate:
    """One detection the landmark model accepted."""

    detection: FaceDetection
    region: FaceRegion
    points: np.ndarray  # (468, 3) image pixels, MediaPipe z
    presence: float


def estimate_yaw_deg(points: np.ndarray) -> float:
    """Head turn from (468, 3) landmarks: the angle of the left-right axis in the x–z plane (0 = frontal).

    MediaPipe's z is in the same pixel scale as x, so the pairs' depth difference over their width
    is the tangent of the yaw.
    """
    left, right = points[SYMMETRIC_PAIRS[:, 0]], points[SYMMETRIC_PAIRS[:, 1]]  # (P, 3)
    across = (right - left).sum(axis=0)  # (3,) summed pair vectors
    return float(np.degrees(np.arctan2(across[2], across[0])))


def visible_fractions(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(F, 4) boxes → (F,) fraction of each box inside the image and not covered by a larger box
    (a larger face in a photo is a nearer one)."""
    width, height = image_size
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)  # (F,)
    steps = (np.arange(VISIBILITY_SAMPLES) + 0.5) / VISIBILITY_SAMPLES
    fractions = np.empty(len(boxes))
    for i, box in enumerate(boxes):
        xs = box[0] + steps * (box[2] - box[0])
        ys = box[1] + steps * (box[3] - box[1])
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)  # (S², 2) sample points in the box
        visible = (grid[:, 0] >= 0) & (grid[:, 0] < width) & (grid[:, 1] >= 0) & (grid[:, 1] < height)
        for j in np.flatnonzero(areas > areas[i]):
            other = boxes[j]
            visible &= ~((grid[:, 0] >= other[0]) & (grid[:, 0] <= other[2])
                         & (grid[:, 1] >= other[1]) & (grid[:, 1] <= other[3]))
        fractions[i] = visible.mean()
    return fractions


def rank_faces(candidates: list[FaceCandidate], image_size: tuple[int, int]) -> tuple[list[FaceCandidate], FaceList]:
    """Candidates numbered left to right, and their scores with the best one marked."""
    ordered = sorted(candidates, key=lambda c: (float(c.detection.box[0] + c.detection.box[2]),
                                                float(c.detection.box[1])))
    if not ordered:
        return ordered, FaceList([], 0, image_size)
    boxes = np.array([c.detection.box for c in ordered], np.float64)  # (F, 4)
    sizes = np.sqrt(np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1))
    sizes = sizes / sizes.max()
    yaws = np.array([estimate_yaw_deg(c.points) for c in ordered])
    visible = visible_fractions(boxes, image_size)
    scores = sizes * np.maximum(np.cos(np.radians(yaws)), MIN_FRONTALITY) * visible
    faces = [DetectedFace(i, tuple(float(v) for v in boxes[i]), float(c.detection.score), float(yaws[i]),
                          float(visible[i]), float(scores[i])) for i, c in enumerate(ordered)]
    return ordered, FaceList(faces, int(np.argmax(scores)), image_size)


def draw_face_overlay(image: np.ndarray, faces: FaceList) -> np.ndarray:
    """(H, W, 3) uint8 RGB → a copy with every face's box and index drawn (the chosen one in green)."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces.faces:
        colour = (40, 220, 40) if face.index == faces.chosen_index else (255, 170, 0)
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
        label = str(face.index)
        scale = max(0.5, (x1 - x0) / 120)
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness + 1)
        top = max(y0, text_h + baseline + 2)
        cv2.rectangle(canvas, (x0, top - text_h - baseline - 2), (x0 + text_w + 4, top), colour, -1)
        cv2.putText(canvas, label, (x0 + 2, top - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness + 1, cv2.LINE_AA)
    return canvas
