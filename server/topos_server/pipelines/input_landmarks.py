"""``topos convert --landmarks FILE``: landmark points on the input mesh, to pin correspondence on hard inputs.

The file is JSON in the input mesh's coordinates, either

- named points: ``{"nose_bridge3": [x, y, z], "eye_right0": [x, y, z], …}`` (or the same under a
  ``"landmarks"`` key), names from the reference topology's ``multipie68`` set (``jaw00``…``jaw16``,
  ``brow_right0``…, ``nose_bridge0``…, ``nose_base0``…, ``eye_right0``…, ``eye_left0``…,
  ``lip_outer00``…, ``lip_inner0``…; ``topos inspect`` lists them) — any subset of at least four, or
- the 68 Multi-PIE points in their standard order: ``[[x, y, z], … 68 rows]``.

The landmarks set the pose (a similarity onto the mean head's landmarks) and pin their reference
vertices during the refinement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_sdk.errors import InvalidInputError

LANDMARK_SET = "multipie68"
MIN_LANDMARKS = 4


@dataclass
class InputLandmarks:
    names: list[str]  # names in the reference topology's landmark set
    points: np.ndarray  # (K, 3) float64 in the input mesh's coordinates

    def _indices(self, topology) -> np.ndarray:
        names = topology.landmarks[LANDMARK_SET].names
        return np.array([names.index(name) for name in self.names])

    def reference_points(self, topology, reference: np.ndarray) -> np.ndarray:
        """(K, 3) the same landmarks on a reference-topology head ``reference`` (N, 3)."""
        return topology.landmarks[LANDMARK_SET].evaluate(reference)[self._indices(topology)]

    def skin_pins(self, topology, canonical, surface_vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
        """(P,) skin vertex ids (each landmark's heaviest vertex) and (P, 3) their targets in the canonical frame."""
        landmark_set = topology.landmarks[LANDMARK_SET]
        rows = self._indices(topology)
        ids = landmark_set.vertices[rows, np.argmax(landmark_set.weights[rows], axis=1)].astype(np.int64)
        on_skin = ids < surface_vertex_count
        return ids[on_skin], canonical.apply(self.points[on_skin])


def read_landmarks_file(path: str | Path, topology) -> InputLandmarks:
    """Parse and check a landmarks JSON file against ``topology``'s landmark names."""
    path = Path(path)
    if LANDMARK_SET not in topology.landmarks:
        raise InvalidInputError(f"--landmarks: the reference topology has no {LANDMARK_SET} landmark set")
    known = topology.landmarks[LANDMARK_SET].names
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such landmarks file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: not a JSON landmarks file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("landmarks"), (dict, list)):
        data = data["landmarks"]
    if isinstance(data, list):
        if len(data) != len(known):
            raise InvalidInputError(f"{path}: a landmark list must hold the {len(known)} Multi-PIE points in order, "
                                    f"got {len(data)}; or give named points")
        names, rows = list(known), data
    elif isinstance(data, dict):
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidInputError(f"{path}: unknown landmark name(s) {', '.join(unknown[:5])}; expected names like "
                                    f"{', '.join(known[:3])}, … (the {LANDMARK_SET} set)")
        names, rows = list(data), list(data.values())
    else:
        raise InvalidInputError(f"{path}: expected named points {{name: [x, y, z]}} or a list of 68 [x, y, z]")
    try:
        points = np.asarray(rows, np.float64).reshape(len(rows), 3)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{path}: every landmark must be three numbers [x, y, z]") from None
    if not np.isfinite(points).all():
        raise InvalidInputError(f"{path}: landmark coordinates must be finite")
    if len(names) < MIN_LANDMARKS:
        raise InvalidInputError(f"{path}: at least {MIN_LANDMARKS} landmarks are needed to set the pose, got "
                                f"{len(names)}")
    centred = points - points.mean(0)
    if np.linalg.matrix_rank(centred, tol=1e-9 * max(1.0, float(np.abs(points).max()))) < 2:
        raise InvalidInputError(f"{path}: the landmarks lie on one line; they cannot set the pose")
    return InputLandmarks(names, points)
