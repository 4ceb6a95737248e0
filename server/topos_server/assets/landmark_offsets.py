"""Where the face detector really puts its landmarks on the reference head: per-landmark offsets learned
from synthetic renders.

:mod:`~topos_server.assets.correspondence` places each of MediaPipe's FaceMesh points where MediaPipe's
*canonical* face puts it, a geometric guess. On renders of heads whose geometry and camera are exact
(:mod:`topos_server.data.synthetic_portraits`), the real detector's points sit systematically off those
places: the outer brow ends and the upper face outline by about a centimetre, the forehead, brows and nose
wings by several millimetres.
A fit that trusts the guessed places bends every head to explain the difference (BENCHMARKS.md, "MediaPipe
landmark offsets").

For each landmark, one 3D offset in the head's frame (cm) minimises the reprojection error of the true
head's embedded point against the detection, over every render in which the landmark faces the camera
and the head is turned at most ``max_yaw_deg`` (Gauss–Newton on the exact pinhole projection, errors in
units of the inter-ocular distance so small and large faces count alike, Huber weights, a small ridge
towards no offset). The offsets are then made mirror-symmetric (a landmark and its mirror image share
one offset, x negated) and :func:`~topos_server.assets.correspondence.register_mediapipe` adds them
before it snaps the points onto the skin.

A turned head is a second regime: beyond ~40° of yaw the detector places the far side's points, and many
near ones, by its own model of a face rather than by what it sees. A second table (``turned``), fitted the
same way on the renders turned 40–70° *on top of* the embedded points, holds where the points move for a
head turned fully to yaw > 0 (the renders turned the other way enter mirrored); the fit adds it, scaled by
how far the head it has found is turned (``FitWeights.turn_start_deg``/``turn_full_deg``), and refits
(:meth:`~topos_server.fit.landmark_fit.LandmarkBasis.turned_towards`). It is not embedded: it depends on
the pose.

Not offset (:func:`held_landmarks`): the 22 jaw/cheek points that the fit slides along the face's outline
(their fixed places are never used: ``fit.landmark_fit.CONTOUR_SLIDING``), the iris points, and every point
within ``EYE_REGION_CM`` of an eyelid contour in the embedded table. The renders draw eyes in flat colours
without lashes; offsets fitted there explained real photos' eye points worse (fit residual 1.47 → 1.60 % IOD on
192 real faces) and bought nothing on renders (68-point error 2.27 vs 2.26 %). The turned-head table keeps
them: on a turned head the detector places the eyes by its own face model, and holding them there cost the
turned renders 5–6 % of their 68-point error.

Writer: ``python -m topos_server.assets.landmark_offsets --pairs DIR [DIR …] --out FILE``; the committed
table and its exact command are in ``models/weights/README.md``. Derived from MediaPipe FaceMesh outputs
(Apache-2.0, © The MediaPipe Authors) on ICT-FaceKit heads (MIT, © 2020 USC ICT).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_sdk.atomic_files import atomic_output_path
from topos_sdk.topology import LandmarkSet

OFFSETS_FILE = Path(__file__).resolve().parent.parent / "models" / "weights" / "mediapipe_landmark_offsets.safetensors"
OFFSETS_FORMAT = "mediapipe-landmark-offsets/1"
FIRST_IRIS_POINT = 468
EYE_REGION_CM = 0.6  # face points this close to an eyelid contour point (rest shape) keep no offset
IRIS_CENTRES = (468, 473)


@dataclass
class OffsetFitOptions:
    max_yaw_deg: float = 40.0  # beyond this the far side's points are guesses of the detector, not observations
    min_facing: float = 0.3  # cos between the landmark's surface normal and the direction to the camera
    huber: float = 0.1  # inter-ocular distances: residuals beyond this count linearly
    ridge: float = 1e-4  # per used render, towards no offset (cm⁻² in IOD² units)
    iterations: int = 4


@dataclass
class RenderedLandmarks:
    """One render with exact truth: the posed head's landmark points and normals, camera, detections."""

    points: np.ndarray  # (K, 3) the embedded landmarks on the posed head, world (head) frame, cm
    normals: np.ndarray  # (K, 3) unit surface normals there
    world_to_camera: np.ndarray  # (4, 4) OpenGL camera (looks down −Z)
    focal_px: float
    principal_point: tuple[float, float]
    detected: np.ndarray  # (K, 2) the detector's points, pixels
    yaw_deg: float = 0.0  # the head's turn (data/synthetic_portraits.py: > 0 turns the face toward the image's right)


def held_landmarks(rest_points: np.ndarray, around_eyes: bool = True) -> np.ndarray:
    """Ids of the landmarks that keep no offset (module notes), from the (K, 3) embedded landmarks on the rest
    head; ``around_eyes`` False: the sliding contour only (the turned-head table)."""
    from topos_server.fit.landmark_fit import CONTOUR_SLIDING, EYE_LIDS  # the writer's import only: the fit is heavy

    if not around_eyes:
        return np.asarray(CONTOUR_SLIDING)
    lids = rest_points[np.concatenate(EYE_LIDS)]  # (32, 3)
    face = rest_points[:FIRST_IRIS_POINT]
    near_eye = np.flatnonzero(np.linalg.norm(face[:, None] - lids[None], axis=2).min(axis=1) < EYE_REGION_CM)
    return np.union1d(CONTOUR_SLIDING, near_eye)


def fit_landmark_offsets(renders: list[RenderedLandmarks], mirror: np.ndarray | None,
                         options: OffsetFitOptions = OffsetFitOptions(), held: np.ndarray = ()
                         ) -> tuple[np.ndarray, dict]:
    """(K, 3) head-frame offsets (cm) and a summary (renders used, residual before and after, IOD %).
    ``mirror`` (MediaPipe's mirror map): a landmark and its mirror image share one offset; None: no symmetry.
    ``held`` landmark ids and the iris points keep no offset."""
    count = len(renders[0].points)
    offsets = np.zeros((count, 3))
    history = []
    for _ in range(options.iterations):
        normal = np.zeros((count, 3, 3))
        gradient = np.zeros((count, 3))
        used = np.zeros(count)
        residuals = []
        for render in renders:
            jacobian, residual, facing = _linearised(render, offsets, options.min_facing)
            size = np.linalg.norm(residual, axis=1)  # (K,)
            weight = facing * np.minimum(1.0, options.huber / np.maximum(size, 1e-9))
            normal += weight[:, None, None] * np.einsum("kai,kaj->kij", jacobian, jacobian)
            gradient += weight[:, None] * np.einsum("kai,ka->ki", jacobian, residual)
            used += facing
            residuals.append(np.where(facing, size, np.nan))
        history.append(float(np.nanmean(residuals)))
        damping = options.ridge * used[:, None, None] * np.eye(3) + 1e-9 * np.eye(3)
        step = np.linalg.solve(normal + damping, (gradient - options.ridge * used[:, None] * offsets)[..., None])
        offsets += step[..., 0]
    if mirror is not None:
        offsets = _mirror_symmetric(offsets, mirror)
    fixed = np.zeros(count, bool)
    held = np.asarray(held, int)
    fixed[held[held < count]] = True
    fixed[FIRST_IRIS_POINT:] = True
    offsets[fixed] = 0.0
    final = []
    for render in renders:
        _, residual, facing = _linearised(render, offsets, options.min_facing)
        final.append(np.linalg.norm(residual, axis=1)[facing])
    summary = {"renders": len(renders), "residual_iod_before": history[0],
               "residual_iod_after": float(np.mean(np.concatenate(final))),
               "mean_offset_cm": float(np.linalg.norm(offsets[~fixed], axis=1).mean()),
               "max_offset_cm": float(np.linalg.norm(offsets, axis=1).max())}
    return offsets.astype(np.float32), summary


def _linearised(render: RenderedLandmarks, offsets: np.ndarray, min_facing: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per landmark: (K, 2, 3) d(pixel)/d(offset) and (K, 2) detection − projection, both in IODs,
    and (K,) bool facing the camera."""
    rotation, translation = render.world_to_camera[:3, :3], render.world_to_camera[:3, 3]
    camera_points = (render.points + offsets) @ rotation.T + translation  # (K, 3)
    depth = -camera_points[:, 2]
    f, (cx, cy) = render.focal_px, render.principal_point
    projected = np.stack([cx + f * camera_points[:, 0] / depth, cy - f * camera_points[:, 1] / depth], axis=1)
    iod = float(np.linalg.norm(projected[IRIS_CENTRES[0]] - projected[IRIS_CENTRES[1]]))
    zeros = np.zeros_like(depth)
    d_x = np.stack([f / depth, zeros, f * camera_points[:, 0] / depth ** 2], axis=1)  # (K, 3) dx/d(camera point)
    d_y = np.stack([zeros, -f / depth, -f * camera_points[:, 1] / depth ** 2], axis=1)
    jacobian = np.stack([d_x, d_y], axis=1) @ rotation / iod  # (K, 2, 3)
    towards_camera = -camera_points / np.linalg.norm(camera_points, axis=1, keepdims=True)
    facing = np.einsum("kx,kx->k", render.normals @ rotation.T, towards_camera) > min_facing
    return jacobian, (render.detected - projected) / iod, facing


def fit_turned_offsets(renders: list[RenderedLandmarks], mirror: np.ndarray,
                       options: OffsetFitOptions = OffsetFitOptions(), held: np.ndarray = ()) -> tuple[np.ndarray, dict]:
    """(K, 3) offsets for a head turned fully to yaw > 0, from renders turned either way beyond
    ``options.max_yaw_deg``: each side fitted on its own, the yaw < 0 side mirrored onto the other, averaged."""
    sides, summaries = [], {}
    for sign in (1.0, -1.0):
        side = [r for r in renders if sign * r.yaw_deg > options.max_yaw_deg]
        if not side:
            raise ValueError(f"no renders turned beyond {sign * options.max_yaw_deg:+.0f}° of yaw")
        offsets, summaries["yaw > 0" if sign > 0 else "yaw < 0"] = fit_landmark_offsets(side, None, options, held)  # one side has no symmetry
        sides.append(offsets.astype(np.float64))
    count = min(len(sides[0]), len(mirror))
    turned = sides[0].copy()
    turned[:count] = 0.5 * (sides[0][:count] + sides[1][mirror[:count]] * np.array([-1.0, 1.0, 1.0]))
    return turned.astype(np.float32), summaries


def _mirror_symmetric(offsets: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """A landmark and its mirror image across x = 0 share one offset (x negated); mid-line points get x = 0."""
    count = min(len(offsets), len(mirror))
    mirrored = offsets[mirror[:count]] * np.array([-1.0, 1.0, 1.0])
    out = offsets.copy()
    out[:count] = 0.5 * (offsets[:count] + mirrored)
    return out


def renders_from_pairs(folders: list[Path], landmarks: LandmarkSet, expression_basis: np.ndarray,
                       skin_triangles: np.ndarray, limit: int | None = None) -> list[RenderedLandmarks]:
    """The renders of synthetic-portrait shard folders (``data/synthetic_portraits.py``)."""
    from topos_server.data.synthetic_portraits import memory_map_npz
    from topos_server.texture.bake import vertex_normals

    renders = []
    for folder in folders:
        for path in sorted(Path(folder).glob("shard_*.npz")):
            shard = memory_map_npz(path)
            count = len(shard["index"])
            basis = expression_basis[: shard["expression"].shape[1]]  # (E, N, 3): the render's ARKit shapes
            for i in range(count):
                posed = shard["neutral"][i].astype(np.float32) + np.tensordot(shard["expression"][i], basis, axes=1)
                normals = landmarks.evaluate(vertex_normals(posed, skin_triangles))  # (K, 3)
                normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
                width, height = (float(v) for v in shard["image_size"][i])
                renders.append(RenderedLandmarks(
                    landmarks.evaluate(posed).astype(np.float64), normals.astype(np.float64),
                    shard["world_to_camera"][i].astype(np.float64), float(shard["focal_px"][i]),
                    (width / 2.0, height / 2.0), shard["landmarks"][i][: len(landmarks), :2].astype(np.float64),
                    float(shard["yaw_deg"][i])))
                if limit is not None and len(renders) >= limit:
                    return renders
    return renders


def save_offsets(path: str | Path, offsets: np.ndarray, info: dict, turned: np.ndarray | None = None) -> None:
    from safetensors.numpy import save_file

    tables = {"offsets": np.ascontiguousarray(offsets, np.float32)}
    if turned is not None:
        tables["turned"] = np.ascontiguousarray(turned, np.float32)
    with atomic_output_path(Path(path)) as tmp:
        save_file(tables, str(tmp), metadata={"format": OFFSETS_FORMAT, "info": json.dumps(info)})


def load_offsets(path: str | Path = OFFSETS_FILE, table: str = "offsets") -> np.ndarray | None:
    """(K, 3) float32 offsets (cm): ``table`` "offsets" (embedded) or "turned"; None when the file or the
    table does not exist."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as archive:
            if (archive.metadata() or {}).get("format") != OFFSETS_FORMAT:
                raise ValueError(f"{path}: not a {OFFSETS_FORMAT} file")
            if table not in archive.keys():
                return None
            offsets = archive.get_tensor(table)
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a readable safetensors file (truncated or damaged?): {exc}") from None
    if offsets.ndim != 2 or offsets.shape[1] != 3 or not np.isfinite(offsets).all():
        raise ValueError(f"{path}: {table} must be a finite (K, 3) table, got {offsets.shape}")
    return offsets


def turned_offsets(path: str | Path = OFFSETS_FILE) -> tuple[np.ndarray, np.ndarray] | None:
    """The turned-head table for yaw > 0 and its mirror image for yaw < 0, (K, 3) each, for
    :meth:`LandmarkBasis.from_model <topos_server.fit.landmark_fit.LandmarkBasis.from_model>`; or None."""
    from topos_server.assets.correspondence import MEDIAPIPE_MIRROR

    right = load_offsets(path, "turned")
    if right is None:
        return None
    count = min(len(right), len(MEDIAPIPE_MIRROR))
    left = right.copy()
    left[:count] = right[MEDIAPIPE_MIRROR[:count]] * np.array([-1.0, 1.0, 1.0], np.float32)
    return right, left


def main(argv: list[str] | None = None) -> int:
    from topos_server.assets.cache import AssetCache
    from topos_server.assets.correspondence import MEDIAPIPE_MIRROR, register_mediapipe, skin_triangles
    from topos_server.assets.head_model_file import load_head_model_arrays

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, nargs="+", required=True, help="synthetic-portrait shard folders")
    parser.add_argument("--out", type=Path, default=OFFSETS_FILE)
    parser.add_argument("--limit", type=int, help="use at most this many renders")
    parser.add_argument("--max-yaw", type=float, default=OffsetFitOptions.max_yaw_deg,
                        help="renders within this yaw make the embedded offsets, those beyond it the turned-head ones")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    cache = AssetCache.default()
    topology = cache.ict_topology()
    canonical = cache.facemesh_dir / "canonical_face_model.obj"
    iris = cache.facemesh_dir / "face_model_with_iris.obj"
    iris = iris if iris.is_file() else None
    # offsets are fitted to the geometric registration alone, never on top of earlier offsets
    landmarks = register_mediapipe(topology, canonical, iris, offsets=None).landmarks
    rest_landmarks = landmarks.evaluate(topology.rest_points.astype(np.float64))
    held = held_landmarks(rest_landmarks)
    model = load_head_model_arrays(cache.head_model_file())
    options = OffsetFitOptions(max_yaw_deg=args.max_yaw)
    triangles = skin_triangles(topology)
    renders = renders_from_pairs(args.pairs, landmarks, model.expression_basis, triangles, args.limit)
    frontal = [r for r in renders if abs(r.yaw_deg) <= options.max_yaw_deg]
    folders = ", ".join(str(p) for p in args.pairs)
    if not renders:
        print(f"error: no synthetic-portrait shards (shard_*.npz) in {folders}", file=sys.stderr)
        return 2
    if not frontal or len(frontal) == len(renders):
        print(f"error: the renders in {folders} must include heads within ±{options.max_yaw_deg}° of yaw and beyond it",
              file=sys.stderr)
        return 2
    offsets, summary = fit_landmark_offsets(frontal, MEDIAPIPE_MIRROR, options, held)
    # the turned-head table is fitted on top of the embedded points, as the fit uses it
    embedded = register_mediapipe(topology, canonical, iris, offsets=offsets).landmarks
    turned, turned_summary = fit_turned_offsets(
        renders_from_pairs(args.pairs, embedded, model.expression_basis, triangles, args.limit), MEDIAPIPE_MIRROR,
        options, held_landmarks(rest_landmarks, around_eyes=False))
    summary.update(turned=turned_summary, pairs=[str(p) for p in args.pairs], max_yaw_deg=options.max_yaw_deg,
                   seconds=round(time.perf_counter() - start, 1))
    save_offsets(args.out, offsets, summary, turned)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
