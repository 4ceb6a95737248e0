"""The classic engine end to end on a real portrait (skimage's astronaut) and the real ICT model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from topos_sdk import NoFaceFound

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def engine():
    from topos_server.engines import shared_engine

    return shared_engine("classic", "cpu")


@pytest.fixture(scope="module")
def astronaut_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def astronaut_result(engine, astronaut_png):
    from topos_server.engines import GenerateOptions

    return engine.generate([astronaut_png], GenerateOptions(seed=3, texture_size=512))[0]


def test_fitted_landmarks_overlay_the_detected_ones(engine, astronaut_result):
    from topos_server.face import load_image
    from topos_server.fit.quality import landmark_errors

    detected = engine.landmarker.detect(load_image(skimage_data.astronaut())).points
    errors = landmark_errors(astronaut_result, detected)
    assert errors["mediapipe"] <= 0.03, f"mean landmark error {errors['mediapipe']:.2%} of the inter-ocular distance"
    assert errors["ict_inner"] <= 0.05, f"inner ICT landmark error {errors['ict_inner']:.2%} of the inter-ocular distance"


def test_result_is_neutral_identity_with_expression_as_weights(engine, astronaut_result):
    r = astronaut_result
    assert r.points.shape == (26719, 3)
    assert r.topology_id == engine.topology.topology_id
    assert len(r.blendshape_names) == len(r.expression_weights) >= 53
    weights = np.array(list(r.expression_weights.values()))
    assert ((weights >= 0) & (weights <= 1)).all()
    # identity differs from the model's mean head, and expression lives only in the weights
    assert np.abs(r.points - engine.neutral).max() > 0.05
    assert not np.allclose(r.posed_points(), r.points) or weights.max() == 0
    # the camera looks at the head: every skin vertex in front of it, projected inside the image
    cam_pts = r.camera.to_camera(r.points[:9409])
    assert (cam_pts[:, 2] < 0).all()
    uv = r.camera.project(r.points[:9409])
    assert (uv.min(0) > -50).all() and (uv.max(0) < 562).all()


def test_textures_cover_the_skin_without_holes(astronaut_result):
    tex = astronaut_result.textures
    assert set(tex) >= {"albedo", "normal", "roughness"}
    assert tex["albedo"].color_space == "sRGB" and tex["normal"].color_space == "raw"
    for name, t in tex.items():
        assert set(t.tiles) == {1001, 1002}, name
        for tile, img in t.tiles.items():
            assert img.shape[:2] == (512, 512)
            assert img.std() > 0 or name == "normal"
    albedo = tex["albedo"].tiles[1001]
    # the face tile carries the photo: skin-coloured (red > blue) on average
    assert albedo[..., 0].mean() > albedo[..., 2].mean()


def test_deterministic_for_a_seed(engine, astronaut_png, astronaut_result):
    from topos_server.engines import GenerateOptions

    again = engine.generate([astronaut_png], GenerateOptions(seed=3, texture_size=512))[0]
    assert again.differences(astronaut_result) == []


def test_no_face_is_a_clear_error(engine):
    from topos_server.engines import GenerateOptions

    flat = np.full((256, 256, 3), 127, np.uint8)
    with pytest.raises(NoFaceFound):
        engine.generate([flat], GenerateOptions())
