"""The turned-head correction of the detector's points: its frame, its regression and file, the fit that uses it,
and the committed table on real detections of rendered profiles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from topos_server.assets.turned_landmarks import (
    CORRECTION_FILE,
    POINTS,
    TABLES,
    DetectionFrame,
    TurnedLandmarkCorrection,
    correction_features,
    fit_correction,
    load_correction,
    save_correction,
)

from conftest import needs_ict_and_mediapipe

PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "portraits" / "us-congress-pd"


def test_frame_normalises_mirrors_and_inverts():
    rng = np.random.default_rng(0)
    detections = np.column_stack([rng.uniform(100, 300, (478, 2)), rng.normal(0, 10, 478)])
    for yaw in (60.0, -60.0):
        frame = DetectionFrame.of(detections, yaw)
        normalised = frame.normalised(detections[:POINTS, :2])
        np.testing.assert_allclose(np.sqrt((normalised ** 2).sum(axis=1).mean()), 1.0, rtol=1e-9)
        np.testing.assert_allclose(frame.pixels(normalised), detections[:POINTS, :2], atol=1e-9)
    mirrored = DetectionFrame.of(detections, -60.0).normalised(detections[:POINTS, :2])
    plain = DetectionFrame.of(detections, 60.0).normalised(detections[:POINTS, :2])
    from topos_server.assets.correspondence import MEDIAPIPE_MIRROR

    partner = int(MEDIAPIPE_MIRROR[33])  # an eye corner: its mirror partner across the face
    np.testing.assert_allclose(mirrored[33], plain[partner] * [-1.0, 1.0])  # a yaw < 0 head reads as its mirror image
    features, _, _ = correction_features(detections, -60.0)
    assert features.shape == (3 * POINTS + 1,) and features[-1] == pytest.approx(60.0 / 90.0)
    with pytest.raises(ValueError, match="MediaPipe's z"):
        correction_features(detections[:, :2], 60.0)


def test_regression_recovers_a_linear_map_and_the_file_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(80, 12))
    truth = rng.normal(0, 0.01, (12, 2 * POINTS))
    shifts = features @ truth + 0.02
    correction = fit_correction(features, shifts, ridge=1e-8)
    np.testing.assert_allclose(correction.shift(features), shifts, atol=1e-5)
    assert np.abs(correction.dual).max() < 1e-3  # a linear map leaves the kernel part nothing to do
    path = tmp_path / "correction.safetensors"
    save_correction(path, correction, {"renders": 80})
    loaded = load_correction(path)
    for name in TABLES:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(correction, name))
    assert loaded.min_yaw_deg == correction.min_yaw_deg and loaded.info == {"renders": 80}
    assert load_correction(tmp_path / "missing.safetensors") is None
    from safetensors.numpy import save_file

    save_file({"offsets": np.zeros((478, 3), np.float32)}, str(tmp_path / "other.safetensors"),
              metadata={"format": "x"})
    with pytest.raises(ValueError, match="not a mediapipe-turned-correction/2 file"):
        load_correction(tmp_path / "other.safetensors")
    tables = {name: getattr(correction, name) for name in TABLES}
    metadata = {"format": "mediapipe-turned-correction/2", "min_yaw_deg": "45.0"}
    save_file({**tables, "modes": tables["modes"][:, :-2]}, str(tmp_path / "bad.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match="inconsistent"):
        load_correction(tmp_path / "bad.safetensors")
    save_file({k: v for k, v in tables.items() if k != "dual"}, str(tmp_path / "short.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match="expected"):
        load_correction(tmp_path / "short.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:-100])  # an interrupted copy
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_correction(tmp_path / "cut.safetensors")


def test_kernel_part_learns_what_a_linear_map_cannot():
    """A shift that depends on the square of a feature: the linear part alone misses it, the kernel part
    recovers most of it on held-out features; ``kernel_ridge=0`` leaves the kernel part out."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(400, 6))
    pattern = rng.normal(0, 0.01, 2 * POINTS)
    shifts = np.outer(features[:, 0] ** 2, pattern)
    held = slice(300, None)
    kernel = fit_correction(features[:300], shifts[:300], kernel_components=6, kernel_ridge=0.01, modes=4)
    linear = fit_correction(features[:300], shifts[:300], kernel_ridge=0.0)
    assert linear.dual.size == 0 and linear.centres.shape == (0, 6)

    def error(correction):
        return np.abs(correction.shift(features[held]) - shifts[held]).mean()

    assert error(kernel) < 0.3 * error(linear)



def test_writer_cli_fits_from_cached_renders_and_rejects_bad_arguments(tmp_path, capsys):
    """``python -m topos_server.assets.turned_landmarks``: features of two seeds read from ``--cache`` (no rendering),
    one seed held out for the report, the table written where ``--out`` says; bad arguments: exit 2, one line, no file."""
    import json

    from topos_server.assets.turned_landmarks import main

    rng = np.random.default_rng(3)
    truth = rng.normal(0, 0.01, (6, 2 * POINTS))
    for seed in (5, 6):
        features = rng.normal(size=(60, 6))
        np.savez(tmp_path / f"turned_{seed}_60.npz", features=features,
                 shifts=features @ truth + rng.normal(0, 1e-4, (60, 2 * POINTS)),
                 counts=json.dumps({"rendered": 60, "kept": 60}))
    out = tmp_path / "table.safetensors"
    assert main(["--renders", "60", "--seeds", "5", "6", "--cache", str(tmp_path), "--validation-seed", "6",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] == 120 and summary["validation_renders"] == 60
    assert summary["validation_error_after"] < 0.1 * summary["validation_error_before"]
    loaded = load_correction(out)
    assert loaded is not None and loaded.info["validation_seed"] == 6
    features = rng.normal(size=(5, 6))
    np.testing.assert_allclose(loaded.shift(features), features @ truth, atol=2e-3)

    for bad in (["--renders", "5", "--seeds", "5"], ["--renders", "60", "--seeds", "5", "--validation-seed", "5"]):
        assert main([*bad, "--cache", str(tmp_path), "--out", str(tmp_path / "bad.safetensors")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:")
    assert not (tmp_path / "bad.safetensors").exists()

@needs_ict_and_mediapipe
def test_fit_refits_a_turned_head_on_the_corrected_detections():
    """A correction that moves every point by a known amount: a head fitted beyond its yaw is fitted again on the
    moved points (without the turned-head table), a frontal one is fitted as without it, and 2-column points
    (no MediaPipe z) are left alone."""
    from scipy.spatial.transform import Rotation
    from topos_server.engines import shared_engine
    from topos_server.fit.landmark_fit import FitWeights, fit_landmarks, fit_landmarks_multiview, yaw_degrees

    engine = shared_engine("classic", "cpu")
    features = 3 * POINTS + 1
    shift = np.tile([0.02, -0.01], POINTS).astype(np.float32)  # right and up by 2 % / 1 % of the points' size
    correction = TurnedLandmarkCorrection(
        np.zeros(features, np.float32), np.ones(features, np.float32), np.eye(features, dtype=np.float32),
        np.zeros((features, 2 * POINTS), np.float32), shift, np.ones(1, np.float32), np.zeros((0, 1), np.float32),
        np.zeros((0, 0), np.float32), np.zeros((0, 2 * POINTS), np.float32), min_yaw_deg=45.0)
    with_correction = replace(engine.basis, turned_correction=correction)
    plain = replace(engine.basis, turned_correction=None)
    head = engine.neutral.astype(np.float64)
    mediapipe = engine.topology.landmarks["mediapipe"].evaluate(head)

    def detections(yaw: float) -> np.ndarray:
        rotation = np.diag([1.0, -1.0, -1.0]) @ Rotation.from_euler("Y", yaw, degrees=True).as_matrix()
        cam = mediapipe @ rotation.T + np.array([0.0, 0.0, 52.0]) - rotation @ mediapipe.mean(axis=0)
        return np.column_stack([717.0 * cam[:, :2] / cam[:, 2:3] + 256.0, (cam[:, 2] - 52.0) * 717.0 / 52.0])

    turned = detections(60.0)
    fit = fit_landmarks(with_correction, turned, (512, 512), 717.0)
    assert abs(yaw_degrees(fit.rotation)) > 45.0
    moved = correction(turned, yaw_degrees(fit_landmarks(plain, turned, (512, 512), 717.0).rotation))
    assert np.abs(moved[:POINTS, :2] - turned[:POINTS, :2]).max() > 1.0
    assert np.array_equal(moved[POINTS:], turned[POINTS:])  # the irises keep their detections
    expected = fit_landmarks(replace(plain, turned=None), moved, (512, 512), 717.0)
    np.testing.assert_allclose(fit.rotation, expected.rotation, atol=1e-9)
    np.testing.assert_allclose(fit.identity, expected.identity, atol=1e-6)
    # the multi-view fit starts each turned view from its corrected points too
    joint = fit_landmarks_multiview(with_correction, [turned, detections(5.0)], [(512, 512)] * 2, 717.0)
    joint_plain = fit_landmarks_multiview(plain, [turned, detections(5.0)], [(512, 512)] * 2, 717.0)
    assert np.abs(joint[0].rotation - joint_plain[0].rotation).max() > 1e-4
    frontal = detections(10.0)
    for points in (frontal, turned[:, :2]):
        a = fit_landmarks(with_correction, points, (512, 512), 717.0)
        b = fit_landmarks(plain, points, (512, 512), 717.0)
        np.testing.assert_array_equal(a.rotation, b.rotation)
    off = fit_landmarks(with_correction, turned, (512, 512), 717.0, FitWeights(turned_offsets=False))
    np.testing.assert_array_equal(off.rotation, fit_landmarks(plain, turned, (512, 512), 717.0,
                                                              FitWeights(turned_offsets=False)).rotation)


@needs_ict_and_mediapipe
def test_committed_correction_reaches_the_engine_and_turns_profiles_further(tmp_path):
    """The committed table is loaded by the classic engine, and on real detections of heads rendered turned
    62–76° (two held-out portraits' albedo; renders it was not fitted on) the fitted yaw is closer to the truth
    with it than without."""
    from topos_server.data.synthetic_portraits import PortraitOptions, SyntheticPortraits
    from topos_server.data.texture_bank import TextureBank, split_files
    from topos_server.engines import shared_engine
    from topos_server.fit.landmark_fit import fit_landmarks, yaw_degrees

    from topos_sdk import NoFaceFound

    correction = load_correction()
    assert correction is not None and CORRECTION_FILE.stat().st_size < 10_000_000
    assert correction.info["kept"] >= 500 and correction.info["validation_error_after"] < correction.info[
        "validation_error_before"]
    engine = shared_engine("classic", "cpu")
    assert engine.basis.turned_correction is not None
    if not PORTRAITS.is_dir():
        pytest.skip("the shared portraits are not on this machine")
    bank = TextureBank("eval", tmp_path)
    bank.build(split_files("eval", PORTRAITS)[:2], size=128, engine=engine, log=lambda line: None)
    portraits = SyntheticPortraits("eval", 77, bank, engine,
                                   PortraitOptions(min_yaw_deg=62.0, max_yaw_deg=76.0, yaw_power=1.0))
    plain = replace(engine.basis, turned_correction=None)
    before, after = [], []
    for index in range(16):
        truth = portraits.render(index)
        try:
            face = engine.landmarker.detect(truth["image"])
        except NoFaceFound:
            continue
        size = truth["image"].shape[1], truth["image"].shape[0]
        before.append(abs(abs(yaw_degrees(fit_landmarks(plain, face.points, size).rotation)) - abs(truth["yaw_deg"])))
        after.append(abs(abs(yaw_degrees(fit_landmarks(engine.basis, face.points, size).rotation))
                         - abs(truth["yaw_deg"])))
    assert len(before) >= 4
    assert np.mean(after) < 0.7 * np.mean(before)
