"""Where the face detector's points belong on a strongly turned head: a correction learned from renders.

Beyond ~60° of yaw the FaceMesh model regresses a *less* turned face: on heads turned 62° to 79° its points
spread across the cheek like those of a face turned 60–65°, and the landmark fit, however it weights them,
finds 60–65° (BENCHMARKS.md, "Where the 60–90° error comes from"). The turned-head offsets of
:mod:`~topos_server.assets.landmark_offsets` are one table per side: they cannot tell 62° from 79° when the
fitted yaw is the same. The detections' whole configuration can: a map of the 468 points (x, y and MediaPipe's
z, in a frame normalised for position and size and mirrored to yaw > 0, plus the fitted yaw) predicts where the
true head's embedded points project.

:class:`TurnedLandmarkCorrection` is that map, learned from renders of heads with exact geometry and camera
(``data/synthetic_portraits.py``'s heads, textures of the ``train`` bank, yaw 35–90°, the real front-end): ridge
regression on the features' leading principal components, and kernel ridge regression (a Gaussian kernel on the
leading, whitened components) of what the linear part leaves, in the leading modes of that remainder. The fit
applies it to a head it finds turned beyond ``min_yaw_deg`` and fits again on the corrected points without the
turned-head offsets (:func:`~topos_server.fit.landmark_fit.fit_landmarks`).

Writer: ``python -m topos_server.assets.turned_landmarks --renders N --seeds S [S …] --out FILE``; the committed
table and its exact command are in ``models/weights/README.md``. Derived from MediaPipe FaceMesh outputs
(Apache-2.0, © The MediaPipe Authors) on ICT-FaceKit heads (MIT, © 2020 USC ICT).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_sdk.atomic_files import atomic_output_path

CORRECTION_FILE = (Path(__file__).resolve().parent.parent / "models" / "weights"
                   / "mediapipe_turned_correction.safetensors")
CORRECTION_FORMAT = "mediapipe-turned-correction/2"  # /1: a linear map of the standardised features
POINTS = 468  # FaceMesh points without the irises: the irises keep their detections
MIN_YAW_DEG = 45.0  # applied to a head fitted as turned beyond this
TRAINING_MIN_YAW_DEG = 35.0  # renders whose fit finds this much turn or more train it
COMPONENTS = 256  # principal components of the standardised features the linear part reads
RIDGE = 0.001  # × the number of renders, on those components
KERNEL_COMPONENTS = 128  # the leading components, whitened, the kernel part reads
KERNEL_GAMMA = 0.5  # the Gaussian kernel's exp(−γ · mean squared whitened difference)
KERNEL_RIDGE = 0.3  # on the kernel matrix (its diagonal is 1)
MODES = 64  # principal modes of the linear part's remainder the kernel part predicts
TABLES = ("mean", "scale", "basis", "weights", "offset", "spread", "centres", "dual", "modes")


@dataclass(frozen=True)
class DetectionFrame:
    """The detections' normalising frame: centre and size of the 468 points, mirrored when turned to yaw < 0."""

    centre: np.ndarray  # (2,) pixels
    size: float  # RMS distance of the points from the centre, pixels
    mirrored: bool

    @classmethod
    def of(cls, landmarks_px: np.ndarray, yaw_deg: float) -> "DetectionFrame":
        xy = np.asarray(landmarks_px, np.float64)[:POINTS, :2]
        centre = xy.mean(axis=0)
        return cls(centre, float(np.sqrt(((xy - centre) ** 2).sum(axis=1).mean())), yaw_deg < 0)

    def normalised(self, xy: np.ndarray) -> np.ndarray:
        """(P, 2) pixels → (P, 2) in the frame (a yaw < 0 head's points mirrored onto their partners)."""
        out = (np.asarray(xy, np.float64) - self.centre) / self.size
        return out[_mirror()] * np.array([-1.0, 1.0]) if self.mirrored else out

    def pixels(self, normalised: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`normalised`."""
        if self.mirrored:
            unmirrored = np.empty_like(normalised)
            unmirrored[_mirror()] = normalised * np.array([-1.0, 1.0])
            normalised = unmirrored
        return normalised * self.size + self.centre


def _mirror() -> np.ndarray:
    from topos_server.assets.correspondence import MEDIAPIPE_MIRROR

    return np.asarray(MEDIAPIPE_MIRROR)[:POINTS]


def correction_features(landmarks_px: np.ndarray, yaw_deg: float) -> tuple[np.ndarray, DetectionFrame, np.ndarray]:
    """(F,) features of (≥ 468, 3) detections (x, y pixels and MediaPipe z) of a head fitted at ``yaw_deg``, their
    frame, and the (468, 2) normalised points."""
    landmarks = np.asarray(landmarks_px, np.float64)
    if landmarks.ndim != 2 or len(landmarks) < POINTS or landmarks.shape[1] < 3:
        raise ValueError(f"the correction needs (>= {POINTS}, 3) detections with MediaPipe's z, got {landmarks.shape}")
    frame = DetectionFrame.of(landmarks, yaw_deg)
    points = frame.normalised(landmarks[:POINTS, :2])  # (P, 2)
    depth = (landmarks[:POINTS, 2] - landmarks[:POINTS, 2].mean()) / frame.size  # (P,)
    if frame.mirrored:
        depth = depth[_mirror()]
    return np.concatenate([points.ravel(), depth, [abs(yaw_deg) / 90.0]]), frame, points


@dataclass(frozen=True)
class TurnedLandmarkCorrection:
    """features → the (468, 2) normalised shift from each detection to where its point projects: a linear map of
    the features' leading components plus a Gaussian-kernel regression of what it leaves."""

    mean: np.ndarray  # (F,) feature standardisation
    scale: np.ndarray  # (F,)
    basis: np.ndarray  # (K, F) principal components of the standardised features
    weights: np.ndarray  # (K, 2P) linear part
    offset: np.ndarray  # (2P,)
    spread: np.ndarray  # (Q,) whitening of the Q ≤ K leading components the kernel reads (γ folded in)
    centres: np.ndarray  # (R, Q) the training renders, whitened
    dual: np.ndarray  # (R, M) kernel ridge coefficients, one column per mode
    modes: np.ndarray  # (M, 2P) modes of the linear part's remainder
    min_yaw_deg: float = MIN_YAW_DEG
    info: dict = field(default_factory=dict)

    def applies(self, yaw_deg: float, landmarks_px: np.ndarray) -> bool:
        """A head fitted as turned beyond ``min_yaw_deg``, and detections that are FaceMesh's (≥ 468, with z)."""
        shape = np.shape(landmarks_px)
        return abs(yaw_deg) > self.min_yaw_deg and len(shape) == 2 and shape[0] >= POINTS and shape[1] >= 3

    def shift(self, features: np.ndarray) -> np.ndarray:
        """(…, F) features → (…, 2P) normalised shifts."""
        components = ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.basis.T  # (…, K)
        whitened = components[..., :len(self.spread)] / self.spread  # (…, Q)
        distance = ((whitened ** 2).sum(-1)[..., None] + (self.centres ** 2).sum(-1)
                    - 2.0 * whitened @ self.centres.T)  # (…, R)
        return components @ self.weights + self.offset + (np.exp(-distance) @ self.dual) @ self.modes

    def __call__(self, landmarks_px: np.ndarray, yaw_deg: float) -> np.ndarray:
        """A corrected copy of (K ≥ 468, 3) detections of a head fitted at ``yaw_deg`` (irises and z unchanged)."""
        features, frame, points = correction_features(landmarks_px, yaw_deg)
        out = np.array(landmarks_px, np.float64, copy=True)
        out[:POINTS, :2] = frame.pixels(points + self.shift(features).reshape(POINTS, 2))
        return out


def fit_correction(features: np.ndarray, shifts: np.ndarray, ridge: float = RIDGE, components: int = COMPONENTS,
                   kernel_components: int = KERNEL_COMPONENTS, kernel_gamma: float = KERNEL_GAMMA,
                   kernel_ridge: float = KERNEL_RIDGE, modes: int = MODES,
                   min_yaw_deg: float = MIN_YAW_DEG) -> TurnedLandmarkCorrection:
    """(R, 2P) normalised shifts regressed on (R, F) features: ridge regression on the standardised features' leading
    ``components``, then kernel ridge regression of the remainder's leading ``modes`` on the leading
    ``kernel_components``, whitened (the kernel part is left out when ``kernel_ridge`` is 0 or less)."""
    features, shifts = np.asarray(features, np.float64), np.asarray(shifts, np.float64)
    count = len(features)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    standard = (features - mean) / scale  # (R, F)
    basis = np.linalg.svd(standard, full_matrices=False)[2][:components]  # (K, F)
    reduced = standard @ basis.T  # (R, K)
    offset = shifts.mean(axis=0)
    weights = np.linalg.solve(reduced.T @ reduced + ridge * count * np.eye(len(basis)),
                              reduced.T @ (shifts - offset))  # (K, 2P)
    remainder = shifts - offset - reduced @ weights  # (R, 2P)
    kernel_components = min(kernel_components, len(basis))
    spread = reduced[:, :kernel_components].std(axis=0) * np.sqrt(kernel_components / kernel_gamma)  # (Q,)
    if kernel_ridge > 0:
        centres = reduced[:, :kernel_components] / spread  # (R, Q)
        remainder_modes = np.linalg.svd(remainder, full_matrices=False)[2][:modes]  # (M, 2P)
        squared = (centres ** 2).sum(axis=1)
        kernel = np.exp(-(squared[:, None] + squared[None] - 2.0 * centres @ centres.T))  # (R, R)
        dual = np.linalg.solve(kernel + kernel_ridge * np.eye(count), remainder @ remainder_modes.T)  # (R, M)
    else:
        centres, dual = np.zeros((0, kernel_components)), np.zeros((0, 0))
        remainder_modes = np.zeros((0, shifts.shape[1]))
    tables = dict(mean=mean, scale=scale, basis=basis, weights=weights, offset=offset, spread=spread,
                  centres=centres, dual=dual, modes=remainder_modes)
    return TurnedLandmarkCorrection(**{k: v.astype(np.float32) for k, v in tables.items()}, min_yaw_deg=min_yaw_deg)


def save_correction(path: str | Path, correction: TurnedLandmarkCorrection, info: dict) -> None:
    from safetensors.numpy import save_file

    tensors = {name: getattr(correction, name) for name in TABLES}
    metadata = {"format": CORRECTION_FORMAT, "min_yaw_deg": str(correction.min_yaw_deg), "info": json.dumps(info)}
    with atomic_output_path(Path(path)) as tmp:
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_correction(path: str | Path = CORRECTION_FILE) -> TurnedLandmarkCorrection | None:
    """The correction of a file (None when there is none)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as archive:
            metadata = archive.metadata() or {}
            if metadata.get("format") != CORRECTION_FORMAT:
                raise ValueError(f"{path}: not a {CORRECTION_FORMAT} file")
            if set(archive.keys()) != set(TABLES):
                raise ValueError(f"{path}: tables {sorted(archive.keys())}, expected {sorted(TABLES)}")
            tensors = {k: archive.get_tensor(k) for k in TABLES}
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a readable safetensors file (truncated or damaged?): {exc}") from None
    if not _consistent(tensors):
        raise ValueError(f"{path}: inconsistent or non-finite correction tables")
    try:
        min_yaw_deg, info = float(metadata["min_yaw_deg"]), json.loads(metadata.get("info", "{}"))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: missing or malformed metadata ({exc})") from None
    return TurnedLandmarkCorrection(**tensors, min_yaw_deg=min_yaw_deg, info=info)


def _consistent(tensors: dict[str, np.ndarray]) -> bool:
    """The tables' shapes agree with each other and with 2P outputs, and every value is finite."""
    if any(tensors[name].ndim != (1 if name in ("mean", "scale", "offset", "spread") else 2) for name in TABLES):
        return False
    components, features = tensors["basis"].shape
    renders, kernel_components = tensors["centres"].shape
    modes = tensors["modes"].shape[0]
    return (tensors["mean"].shape == tensors["scale"].shape == (features,)
            and tensors["weights"].shape == (components, 2 * POINTS) and tensors["offset"].shape == (2 * POINTS,)
            and tensors["spread"].shape == (kernel_components,) and kernel_components <= components
            and tensors["dual"].shape == (renders, modes) and tensors["modes"].shape == (modes, 2 * POINTS)
            and bool((tensors["spread"] > 0).all()) and all(np.isfinite(t).all() for t in tensors.values()))


def render_training_set(count: int, seed: int, split: str = "train", engine=None, log=print
                        ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Renders ``0 … count−1`` of ``data/synthetic_portraits.py`` (``split``, ``seed``) turned 35–90° either way;
    the front-end and the fit (without this correction) on each. Returns the (R, F) features and (R, 2P)
    normalised shifts of the renders the fit finds turned beyond TRAINING_MIN_YAW_DEG, and counts."""
    from dataclasses import replace

    from topos_sdk import NoFaceFound
    from topos_server.data.synthetic_portraits import PortraitOptions, SyntheticPortraits
    from topos_server.fit.landmark_fit import fit_landmarks, yaw_degrees

    portraits = SyntheticPortraits(split, seed, engine=engine,
                                   options=PortraitOptions(min_yaw_deg=TRAINING_MIN_YAW_DEG, max_yaw_deg=90.0,
                                                           yaw_power=1.0))
    engine = portraits.engine
    basis = replace(engine.basis, turned_correction=None)
    features, shifts, counts = [], [], {"renders": count, "undetected": 0, "fitted_below_min_yaw": 0}
    start = time.perf_counter()
    for index in range(count):
        truth = portraits.render(index)
        try:
            face = engine.landmarker.detect(truth["image"])
        except NoFaceFound:
            counts["undetected"] += 1
            continue
        height, width = truth["image"].shape[:2]
        yaw = yaw_degrees(fit_landmarks(basis, face.points, (width, height)).rotation)
        if abs(yaw) < TRAINING_MIN_YAW_DEG:
            counts["fitted_below_min_yaw"] += 1
            continue
        feature, frame, points = correction_features(face.points, yaw)
        true_xy = truth["camera"].project(portraits.landmarks.evaluate(truth["posed"]))[:POINTS]  # (P, 2)
        features.append(feature)
        shifts.append((frame.normalised(true_xy) - points).ravel())
        if log and (index + 1) % 100 == 0:
            log(f"{index + 1}/{count} renders, {len(features)} kept, {time.perf_counter() - start:.0f} s")
    counts["kept"] = len(features)
    return np.array(features), np.array(shifts), counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, required=True, help="renders to attempt per seed")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="render sets, one per seed")
    parser.add_argument("--cache", type=Path, help="keep each seed's features here (turned_SEED_RENDERS.npz) and "
                                                   "reuse them")
    parser.add_argument("--ridge", type=float, default=RIDGE, help="of the linear part")
    parser.add_argument("--kernel-ridge", type=float, default=KERNEL_RIDGE, help="of the kernel part (0: linear only)")
    parser.add_argument("--validation", type=float, default=0.2, help="share of the renders held out to report on")
    parser.add_argument("--validation-seed", type=int, help="report on this seed's renders instead, held out from a "
                                                            "trial fit on the other seeds")
    parser.add_argument("--out", type=Path, default=CORRECTION_FILE)
    args = parser.parse_args(argv)
    if args.renders < 10 or not 0.0 <= args.validation < 1.0:
        print("error: --renders must be at least 10 and --validation in [0, 1)", file=sys.stderr)
        return 2
    if args.validation_seed is not None and (args.validation_seed not in args.seeds or len(set(args.seeds)) < 2):
        print("error: --validation-seed must be one of two or more --seeds", file=sys.stderr)
        return 2
    start = time.perf_counter()
    sets = [_training_set(args.renders, seed, args.cache) for seed in args.seeds]
    features, shifts = np.concatenate([f for f, _, _ in sets]), np.concatenate([s for _, s, _ in sets])
    counts = {key: sum(c[key] for _, _, c in sets) for key in sets[0][2]}
    if len(features) < 10:
        print(f"error: only {len(features)} turned renders were detected", file=sys.stderr)
        return 2
    if args.validation_seed is not None:
        held = np.concatenate([np.full(len(f), seed == args.validation_seed)
                               for seed, (f, _, _) in zip(args.seeds, sets)])
    else:
        held = np.arange(len(features)) >= len(features) - int(round(args.validation * len(features)))
    summary = {**counts, "seeds": args.seeds, "ridge": args.ridge, "kernel_ridge": args.kernel_ridge,
               "validation_seed": args.validation_seed, "validation_renders": int(held.sum())}
    if held.any():
        trial = fit_correction(features[~held], shifts[~held], args.ridge, kernel_ridge=args.kernel_ridge)
        linear = fit_correction(features[~held], shifts[~held], args.ridge, kernel_ridge=0.0)
        # mean point distance, in units of the detections' RMS size
        for name, shift in (("before", 0.0), ("linear_part", linear.shift(features[held])),
                            ("after", trial.shift(features[held]))):
            summary[f"validation_error_{name}"] = float(
                np.linalg.norm((shifts[held] - shift).reshape(-1, POINTS, 2), axis=2).mean())
    # the shipped one sees every render
    correction = fit_correction(features, shifts, args.ridge, kernel_ridge=args.kernel_ridge)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    save_correction(args.out, correction, summary)
    print(json.dumps(summary, indent=1))
    return 0


def _training_set(renders: int, seed: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`render_training_set` of one seed, through the cache folder when given."""
    path = cache / f"turned_{seed}_{renders}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return stored["features"], stored["shifts"], json.loads(str(stored["counts"]))
    features, shifts, counts = render_training_set(renders, seed, log=lambda m: print(m, file=sys.stderr, flush=True))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=features, shifts=shifts, counts=json.dumps(counts))
    return features, shifts, counts


if __name__ == "__main__":
    sys.exit(main())
