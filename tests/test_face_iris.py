"""Iris refinement (478 FaceMesh points) with MediaPipe's iris model on LiteRT, against the original
MediaPipe pipeline's refined output on skimage's astronaut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from topos_server.assets.correspondence import MEDIAPIPE_MIRROR  # noqa: E402
from topos_server.face import FaceLandmarker  # noqa: E402
from topos_server.face.iris import (  # noqa: E402
    EYE_CONTOUR_FACE_INDICES,
    EYE_CORNERS,
    EYE_LID_CONTOURS,
    EYE_ROI_SCALE,
    IRIS_INPUT_SIZE,
    eye_region,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


def _model_dir() -> Path | None:
    """The asset cache's MediaPipe folder when populated (CI runs `topos assets import`), else ../shared."""
    try:
        from topos_server.assets.cache import AssetCache

        return AssetCache.default().facemesh_file("iris_landmark.tflite").parent
    except Exception:
        fallback = REPO.parent / "shared" / "mediapipe"
        return fallback if (fallback / "iris_landmark.tflite").is_file() else None


def _fixture(name: str) -> np.ndarray:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return np.asarray(json.loads(path.read_text())["landmarks"], dtype=np.float32)


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    model_dir = _model_dir()
    if model_dir is None:
        pytest.skip("MediaPipe models neither in the asset cache nor in ../shared/mediapipe")
    return FaceLandmarker(model_dir=model_dir, refine_iris=True)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def refined(landmarker, astronaut) -> np.ndarray:
    return landmarker.detect(astronaut).points  # (478, 3)


def test_iris_points_match_mediapipes_refined_facemesh(refined):
    reference = _fixture("astronaut_facemesh478.json")  # (478, 3), the attention model's output
    assert refined.shape == (478, 3) and refined.dtype == np.float32
    distance = np.linalg.norm(refined[468:, :2] - reference[468:, :2], axis=1)  # (10,)
    assert distance.mean() <= 0.6 and distance.max() <= 1.2, distance
    # the iris is ~8 px across here: a swapped rim or eye would be several px off
    iris_radius = np.linalg.norm(reference[469:473, :2] - reference[468, :2], axis=1).mean()
    assert iris_radius > 3 * distance.mean()


def test_the_468_face_points_are_unchanged(landmarker, astronaut, refined):
    reference = _fixture("astronaut_facemesh468.json")
    plain = landmarker.detect(astronaut, refine_iris=False).points
    assert plain.shape == (468, 3)
    assert np.array_equal(refined[:468], plain)
    assert np.linalg.norm(refined[:468, :2] - reference[:, :2], axis=1).mean() <= 0.05


def test_iris_order_and_depth_follow_mediapipe(refined):
    iris = refined[468:].reshape(2, 5, 3)  # (eye, centre + rim right/top/left/bottom, xyz)
    for eye, corners in enumerate(EYE_CORNERS):
        corner_middle = refined[list(corners), :2].mean(axis=0)
        other_middle = refined[list(EYE_CORNERS[1 - eye]), :2].mean(axis=0)
        centre, right, top, left, bottom = iris[eye, :, :2]
        assert np.linalg.norm(centre - corner_middle) < np.linalg.norm(centre - other_middle)
        assert left[0] < centre[0] < right[0] and top[1] < centre[1] < bottom[1]
        assert np.linalg.norm(iris[eye, 1:, :2].mean(axis=0) - centre) < 1.0
        # every iris point gets the mean depth of its eye's lid contour, as MediaPipe's refinement
        assert np.allclose(iris[eye, :, 2], refined[EYE_LID_CONTOURS[eye], 2].mean(), atol=1e-5)
    # 468–472 is the eye on the viewer's left (MediaPipe's "left eye", the subject's right)
    assert iris[0, 0, 0] < iris[1, 0, 0]


def test_mirrored_portrait_gives_mirrored_irises(landmarker, astronaut, refined):
    """The second eye's crop is mirrored for the model and mirrored back: a mirrored photo must give
    the mirror landmarks (MediaPipe's left/right swap, rim right ↔ left)."""
    width = astronaut.shape[1]
    mirrored = landmarker.detect(np.ascontiguousarray(astronaut[:, ::-1])).points
    back = mirrored[MEDIAPIPE_MIRROR[468:478]]  # (10, 3) in the original's landmark order
    back_xy = np.stack([width - back[:, 0], back[:, 1]], axis=1)
    error = np.linalg.norm(back_xy - refined[468:, :2], axis=1)  # (10,)
    assert error.mean() <= 1.0, error


def test_eye_region_levels_the_corners_in_a_square_2_3_times_wide(refined):
    for eye, (start, end) in enumerate(EYE_CORNERS):
        region = eye_region(refined, eye)
        corners = refined[[start, end], :2].astype(np.float64)  # (2, 2)
        affine = region.tensor_to_image(IRIS_INPUT_SIZE)  # crop pixels → image pixels
        to_crop = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2]
        in_crop = corners @ to_crop[:, :2].T + to_crop[:, 2]  # (2, 2)
        assert abs(in_crop[0, 1] - in_crop[1, 1]) < 1e-6  # level
        assert in_crop[0, 0] < IRIS_INPUT_SIZE / 2 < in_crop[1, 0]  # start on the left, end on the right
        assert np.allclose(region.center, corners.mean(axis=0))
        extent = np.abs(corners[1] - corners[0]).max()
        assert np.isclose(region.size, EYE_ROI_SCALE * extent)


def test_eye_contour_update_moves_only_the_eye_points_and_towards_mediapipes(landmarker, astronaut, refined):
    reference = _fixture("astronaut_facemesh478.json")
    face = refined[:468]
    updated = landmarker.iris.refine(astronaut, face, update_eye_contours=True)
    moved = np.flatnonzero(np.any(updated[:468] != face, axis=1))
    assert set(moved) <= set(EYE_CONTOUR_FACE_INDICES.ravel().tolist()) and len(moved) > 100
    assert np.array_equal(updated[:468, 2], face[:, 2])  # depth kept (the model's is per eye crop)
    assert np.array_equal(updated[468:, :2], refined[468:, :2])
    lids = EYE_LID_CONTOURS.ravel()
    before = np.linalg.norm(face[lids, :2] - reference[lids, :2], axis=1).mean()
    after = np.linalg.norm(updated[lids, :2] - reference[lids, :2], axis=1).mean()
    assert after < before


def test_refine_rejects_other_point_counts(landmarker, astronaut, refined):
    with pytest.raises(ValueError, match="468"):
        landmarker.iris.refine(astronaut, refined)


def test_missing_iris_model_fails_at_construction(tmp_path):
    import shutil

    from topos_sdk.errors import AssetError

    model_dir = _model_dir()
    if model_dir is None:
        pytest.skip("MediaPipe models missing")
    for name in ("face_landmark.tflite", "face_detection_short_range.tflite",
                 "face_detection_full_range_sparse.tflite"):
        shutil.copy(model_dir / name, tmp_path / name)
    assert FaceLandmarker(model_dir=tmp_path).refine_iris is False  # the 468-point landmarker needs no iris model
    with pytest.raises(AssetError, match="iris_landmark.tflite"):
        FaceLandmarker(model_dir=tmp_path, refine_iris=True)


def test_iris_and_landmarks_do_not_import_each_other():
    """The crop geometry both need lives in face/crop.py; neither module imports the other's back."""
    import ast

    import topos_server.face.iris as iris_module

    tree = ast.parse(Path(iris_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "topos_server.face.crop" in imported
    assert not any(name and name.endswith("landmarks") for name in imported)
