"""The aligned face crop (TOPOS-DiT's image condition) on the astronaut photo and the real front-end."""

import cv2
import numpy as np
import pytest
from skimage.data import astronaut
from topos_server.face import FaceLandmarker
from topos_server.face.aligned_crop import EYE_CORNERS, MOUTH_CORNERS, aligned_face_crop

SIZE = 96


@pytest.fixture(scope="module")
def landmarker():
    try:
        return FaceLandmarker(refine_iris=True)
    except Exception as exc:  # models not imported on this machine
        pytest.skip(f"face front-end unavailable: {exc}")


@pytest.fixture(scope="module")
def astronaut_face(landmarker):
    image = astronaut()
    return image, landmarker.detect(image).points


def to_crop(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points[:, :2] @ affine[:, :2].T + affine[:, 2]


def anchors(points_in_crop: np.ndarray) -> np.ndarray:
    """(3, 2): the two eye centres and the mouth centre."""
    return np.array([points_in_crop[list(EYE_CORNERS[0])].mean(0), points_in_crop[list(EYE_CORNERS[1])].mean(0),
                     points_in_crop[list(MOUTH_CORNERS)].mean(0)])


def test_frontal_face_fills_the_crop_upright(astronaut_face):
    image, points = astronaut_face
    crop, affine = aligned_face_crop(image, points, SIZE)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
    in_crop = to_crop(affine, points[:468])
    span = in_crop.max(0) - in_crop.min(0)
    assert (span > 0.6 * SIZE).all() and (in_crop > 0).all() and (in_crop < SIZE).all()
    left_eye, right_eye, mouth = anchors(in_crop)
    assert abs(left_eye[1] - right_eye[1]) < 0.03 * SIZE  # level eyes
    assert left_eye[1] < 0.45 * SIZE < mouth[1]
    assert abs((left_eye[0] + right_eye[0]) / 2 - SIZE / 2) < 0.1 * SIZE
    # the crop is the photo warped by the returned affine (pixel centres at +½)
    integer_affine = np.concatenate([affine[:, :2], (affine[:, :2] @ [0.5, 0.5] + affine[:, 2] - 0.5)[:, None]], 1)
    sampled = cv2.warpAffine(image, integer_affine, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    assert np.abs(sampled.astype(float) - crop).mean() < 6.0


def test_rolled_photo_gives_the_same_crop(landmarker, astronaut_face):
    image, points = astronaut_face
    crop, affine = aligned_face_crop(image, points, SIZE)
    centre = tuple(points[:468, :2].mean(0))
    rolled = cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, 35.0, 1.0), image.shape[1::-1],
                            borderMode=cv2.BORDER_REFLECT)
    rolled_points = landmarker.detect(rolled).points
    rolled_crop, rolled_affine = aligned_face_crop(rolled, rolled_points, SIZE)
    assert np.abs(anchors(to_crop(rolled_affine, rolled_points)) - anchors(to_crop(affine, points))).max() < 0.04 * SIZE
    assert np.abs(rolled_crop.astype(float) - crop).mean() < 15.0


@pytest.mark.parametrize("yaw_deg", [45.0, 70.0])
def test_turned_face_keeps_its_scale_and_stays_inside(astronaut_face, yaw_deg):
    """The astronaut's landmarks turned in 3D (MediaPipe z is in x's units) and seen orthographically."""
    _, points = astronaut_face
    centre = points[:468].mean(0)
    yaw = np.radians(yaw_deg)
    rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    turned = (points - centre) @ rotation.T + centre
    image = np.zeros((512, 512, 3), np.uint8)
    _, frontal_affine = aligned_face_crop(image, points, SIZE)
    _, turned_affine = aligned_face_crop(image, turned, SIZE)
    scale_ratio = np.sqrt(np.linalg.det(turned_affine[:, :2]) / np.linalg.det(frontal_affine[:, :2]))
    assert 0.8 < scale_ratio < 1.25
    in_crop = to_crop(turned_affine, turned[:468])
    assert (in_crop > -0.02 * SIZE).all() and (in_crop < 1.02 * SIZE).all()
    left_eye, right_eye, mouth = anchors(in_crop)
    assert max(left_eye[1], right_eye[1]) < mouth[1]  # still upright


def test_bad_input_is_refused(astronaut_face):
    image, points = astronaut_face
    with pytest.raises(ValueError, match="uint8"):
        aligned_face_crop(image.astype(np.float32), points)
    with pytest.raises(ValueError, match="landmarks"):
        aligned_face_crop(image, points[:68])
    with pytest.raises(ValueError, match="coincide"):
        aligned_face_crop(image, np.zeros((478, 3)))
