"""Several photos of one person with the ``topos`` engine: in-process, ``topos generate --engine topos
--same-person`` and through a real gRPC server on 127.0.0.1 (the classic engine's are in
tests/test_pose_and_views.py).

Photos: the astronaut, her mirror image and a closer crop. The DiT is the committed one, else an
untrained tiny DiT for the installed VAE (tests/test_topos_engine.py): these tests are about the
engine's plumbing; bench/multiview_fit.py --engine topos measures the shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_pose_and_views import png, three_photos  # noqa: F401 (fixture)
from test_topos_engine import dit_weights, engine  # noqa: F401 (fixtures)

from topos_sdk import InvalidInputError, NoFaceFound


@pytest.fixture(scope="module")
def photos(three_photos) -> tuple:  # noqa: F811
    return tuple(path.read_bytes() for path in three_photos)


@pytest.fixture(scope="module")
def server(engine):  # noqa: F811
    from topos_server.serving.server import ServerConfig, start_in_thread

    config = ServerConfig(host="127.0.0.1", port=0, device="cpu", engines=["topos"], max_batch=4, max_batch_wait_s=0.5)
    with start_in_thread(config, engines={"topos": engine}) as srv:
        yield srv


@pytest.fixture(scope="module")
def local(engine, photos):  # noqa: F811
    """In-process: the three photos as one head, and the first photo alone (each in its own DiT call)."""
    from topos_server.engines.base import GenerateOptions

    options = GenerateOptions(seed=5, texture_size=512)
    return engine.generate([photos], options)[0], engine.generate([photos[0]], options)[0]


# A head of several photos in another DiT batch: the shading refinement's 130 gradient steps carry the batch's float
# noise (~1e-6 cm) up to about 0.1 mm (0.07 mm measured on these photos); the fits on it follow.
SAME_PERSON_ATOL = (0.02, 5e-3)  # (points in cm, expression weights and camera matrices (relative too))


def assert_same_head(a, b, atol: tuple[float, float] = (1e-5, 1e-4)) -> None:
    """Equal up to the float noise of a different DiT batch (a head does not depend on its batch-mates)."""
    np.testing.assert_allclose(a.points, b.points, rtol=0, atol=atol[0])
    names = sorted(set(a.expression_weights) | set(b.expression_weights))
    np.testing.assert_allclose([a.expression_weights.get(n, 0.0) for n in names],
                               [b.expression_weights.get(n, 0.0) for n in names], rtol=0, atol=atol[1])
    assert len(a.view_cameras) == len(b.view_cameras)
    for x, y in zip([a.camera, *a.view_cameras], [b.camera, *b.view_cameras]):
        np.testing.assert_allclose(x.world_to_camera, y.world_to_camera, rtol=atol[1], atol=atol[1])


def test_one_identity_from_every_view_and_every_camera_kept(engine, photos, local):  # noqa: F811
    from topos_server.engines.base import GenerateOptions
    from topos_server.engines.topos import reconcile_view_heads

    head, alone = local
    views = head.provenance.extra["views"]
    assert head.provenance.engine == "topos" and head.provenance.seed == 5
    assert head.provenance.extra["same_person_views"] == 3 and [v["seed"] for v in views] == [5, 6, 7]
    assert len(head.view_cameras) == 3 and head.camera == head.view_cameras[0]
    assert {"albedo", "normal", "roughness"} <= head.textures.keys()
    # the identity is the views' DiT samples (seed + view) reconciled, then refined by the skin's shading across
    # the photos (identity modes added to the mean); each view fitted with it held fixed
    portraits = engine._front_end_views(photos, GenerateOptions(), None, None)
    samples, _ = engine._sample(portraits, [5, 6, 7])
    assert np.abs(samples[0] - samples[1]).max() > 1e-4  # the views' samples differ: the mean is not one of them
    mean = reconcile_view_heads(samples)
    refined = engine._refined_by_shading(portraits, mean, None)
    np.testing.assert_allclose(head.points, refined, rtol=0, atol=1e-5)
    moved = np.linalg.norm(refined - mean, axis=1)[engine.topology.vertex_groups["narrow_face"]]  # (F,) cm
    assert 0.005 < moved.max() < 1.5  # the shading moved the front of the face, by less than the prior allows
    coefficients, *_ = np.linalg.lstsq(engine.classic.identity_basis.reshape(len(engine.classic.identity_basis), -1).T,
                                       (refined - mean).reshape(-1), rcond=None)
    np.testing.assert_allclose(np.tensordot(coefficients, engine.classic.identity_basis, axes=1), refined - mean,
                               rtol=0, atol=1e-4)  # identity modes on top of the samples' mean, nothing else
    assert head.provenance.timings_s["shading_refinement"] > 0
    for view, camera in zip(views, head.view_cameras):
        assert view["fit_rms_px"] < 15.0 and camera.focal_length_px == pytest.approx(view["focal_length_px"], abs=0.01)
    assert head.view_cameras[2].image_size == (440, 440) and head.view_cameras[0].image_size == (512, 512)
    # the mirror image turns the head the other way: its camera is not the first one's
    assert np.abs(head.view_cameras[0].world_to_camera - head.view_cameras[1].world_to_camera).max() > 1e-3
    # one DiT call for several photos of one person and a single photo: each is the head it is alone
    both, single = engine.generate([photos, photos[0]], GenerateOptions(seed=5, texture_size=512))
    assert_same_head(both, head, SAME_PERSON_ATOL)
    assert_same_head(single, alone)
    assert "views" not in single.provenance.extra and not single.view_cameras


def test_bad_sets_of_photos_are_clear_errors(engine, photos):  # noqa: F811
    from topos_server.engines.base import GenerateOptions

    for views in ((photos[0],), photos * 3):
        with pytest.raises(InvalidInputError, match=f"{len(views)} photos of one person; give 2 to 8"):
            engine.generate([views], GenerateOptions(texture_size=512))
    flat = png(np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(NoFaceFound, match="photo 2 of 2: no face found"):
        engine.generate([(photos[0], flat)], GenerateOptions(texture_size=512))
    with pytest.raises(InvalidInputError, match="photo 3 of 3: "):
        engine.generate([(*photos[:2], b"")], GenerateOptions(texture_size=512))


def test_learned_textures_complete_the_merged_bake(engine, photos, local):  # noqa: F811
    from topos_server.engines.base import GenerateOptions

    head, _ = local
    learned = engine.generate([photos], GenerateOptions(seed=5, texture_size=512, texture="learned"))[0]
    assert learned.provenance.extra["texture"] == "learned" and "texture_learned" in learned.provenance.timings_s
    assert_same_head(learned, head)  # the same head in the same DiT batch: the texture is all that changes
    for name in ("albedo", "normal", "roughness"):
        assert not np.array_equal(learned.textures[name].tiles[1001], head.textures[name].tiles[1001]), name
        np.testing.assert_array_equal(learned.textures[name].tiles[1002], head.textures[name].tiles[1002])


def test_cli_writes_one_valid_asset_with_every_camera(three_photos, dit_weights, monkeypatch,  # noqa: F811
                                                      tmp_path, capsys, local):
    from topos_sdk.cli import main
    from topos_sdk.usd import read_head_asset, validate_asset

    monkeypatch.setenv("TOPOS_DIT_WEIGHTS", str(dit_weights))
    out = tmp_path / "out"
    assert main(["generate", "--engine", "topos", "--same-person", *map(str, three_photos), "-o", str(out),
                 "--name", "eileen", "--seed", "5", "--texture-size", "512"]) == 0
    usda = out / "eileen" / "eileen.usda"
    assert capsys.readouterr().out.strip() == str(usda)
    assert validate_asset(usda) == []
    head = read_head_asset(usda)
    assert head.provenance.engine == "topos" and head.provenance.extra["same_person_views"] == 3
    assert len(head.view_cameras) == 3 and head.camera == head.view_cameras[0]
    np.testing.assert_allclose(head.points, local[0].points, rtol=0, atol=1e-4)
    assert sorted(p.name for p in out.iterdir()) == ["eileen"]


def test_grpc_equals_in_process_and_batches_with_single_photos(server, photos, local):
    from concurrent.futures import ThreadPoolExecutor

    from topos_sdk.client import Client

    with Client(server.address, retries=0, timeout=300) as client:
        remote = client.generate_same_person(list(photos), seed=5, engine="topos", texture_size=512)
        with ThreadPoolExecutor(2) as pool:  # the server may put both requests in one DiT call
            both = pool.submit(client.generate_same_person, list(photos), seed=5, engine="topos", texture_size=512)
            alone = pool.submit(client.generate, photos[0], seed=5, engine="topos", texture_size=512)
            remote_both, remote_single = both.result(), alone.result()
        with pytest.raises(NoFaceFound, match="photo 2 of 2: no face found") as caught:
            client.generate_same_person([photos[0], png(np.full((64, 64, 3), 128, np.uint8))], engine="topos",
                                        texture_size=512)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert remote.differences(local[0], atol=1e-5) == [] and len(remote.view_cameras) == 3
    assert remote.provenance.extra["views"] == local[0].provenance.extra["views"]
    assert_same_head(remote_both, local[0], SAME_PERSON_ATOL)
    assert_same_head(remote_single, local[1])
