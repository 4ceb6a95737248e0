"""The faces found in a photo, as ``topos generate --list-faces`` and ``Client.list_faces`` report them.

Faces are numbered left to right; ``--face INDEX`` / ``face_index=`` pick one. Without a choice the
engine takes the face with the highest ``choice_score`` (size × frontality × visibility): the largest,
most frontal, least occluded one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CHOICE_RULE = "largest, most frontal, least occluded (size × cos yaw × visible fraction)"


@dataclass
class DetectedFace:
    index: int  # left to right
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in pixels
    detection_score: float
    yaw_deg: float  # estimated head turn, 0 = frontal
    visible_fraction: float  # of the box not covered by nearer faces or cut by the image border
    choice_score: float

    def as_dict(self) -> dict:
        return {"index": self.index, "box": [round(float(v), 1) for v in self.box],
                "detection_score": round(float(self.detection_score), 3), "yaw_deg": round(float(self.yaw_deg), 1),
                "visible_fraction": round(float(self.visible_fraction), 3),
                "choice_score": round(float(self.choice_score), 4)}


@dataclass
class FaceList:
    faces: list[DetectedFace] = field(default_factory=list)
    chosen_index: int = 0  # the face taken when none is asked for
    image_size: tuple[int, int] = (0, 0)  # (width, height) pixels

    @property
    def chosen(self) -> DetectedFace:
        return self.faces[self.chosen_index]

    def as_dict(self) -> dict:
        return {"faces": [face.as_dict() for face in self.faces], "chosen_index": self.chosen_index,
                "image_size": list(self.image_size), "choice_rule": CHOICE_RULE}

    def boxes(self) -> np.ndarray:
        """(F, 4) float64 x_min, y_min, x_max, y_max."""
        return np.array([face.box for face in self.faces], np.float64).reshape(-1, 4)
