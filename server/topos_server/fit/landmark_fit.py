"""Fit the morphable head model to 2D face landmarks (+ MediaPipe's relative depth).

Unknowns: camera pose (rotation, translation), 100 identity and E expression coefficients, and the
focal length when not given. Alternates a PnP pose solve (OpenCV) with a bounded linear least-squares
solve of the coefficients (scipy ``lsq_linear``). The perspective projection is made linear in the
shape by multiplying through by depth (``f·X − (x − cx)·Z = 0``) and dividing by the current depth
estimate, so every residual is in pixels.

Camera conventions inside this module are OpenCV's (looks down +Z, y down); :func:`to_camera`
converts the result to :class:`topos_sdk.Camera` (looks down −Z, +Y up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np
from scipy.optimize import lsq_linear
from threadpoolctl import threadpool_limits

from topos_sdk import Camera, LandmarkSet

# MediaPipe FaceMesh face-oval (silhouette) landmarks: where they sit on the 3D face changes with
# pose, so they get a lower weight.
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                      152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
_CV_TO_GL = np.diag([1.0, -1.0, -1.0])
# focal-length candidates, as multiples of the image's longer side (≈ 53° … 14° horizontal FOV)
FOCAL_CANDIDATES = (1.0, 1.4, 2.0, 2.8, 4.0)


@dataclass
class LandmarkBasis:
    """The head model evaluated at K embedded landmarks."""

    neutral: np.ndarray  # (K, 3)
    identity: np.ndarray  # (K, 3, I)
    expression: np.ndarray  # (K, 3, E)

    @classmethod
    def from_model(cls, landmarks: LandmarkSet, neutral: np.ndarray, identity_basis: np.ndarray,
                   expression_basis: np.ndarray) -> "LandmarkBasis":
        """neutral (N, 3), identity_basis (I, N, 3), expression_basis (E, N, 3) → values at the landmarks."""
        w = landmarks.weights.astype(np.float64)  # (K, 3 corners)
        v = landmarks.vertices  # (K, 3 corners)

        def at(basis):  # (B, N, 3) → (K, 3, B)
            return np.einsum("bkcx,kc->kxb", basis[:, v, :].astype(np.float64), w)

        return cls(neutral=landmarks.evaluate(neutral.astype(np.float64)),
                   identity=at(identity_basis), expression=at(expression_basis))

    @cached_property
    def combined(self) -> np.ndarray:
        """(K, 3, I + E) identity and expression bases side by side."""
        return np.concatenate([self.identity, self.expression], axis=2)

    def first(self, count: int) -> "LandmarkBasis":
        """The first ``count`` landmarks (468 plain FaceMesh points of a 478-point set)."""
        return LandmarkBasis(self.neutral[:count], self.identity[:count], self.expression[:count])

    def points(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        return self.neutral + self.identity @ identity + self.expression @ expression  # (K, 3)


@dataclass
class FitWeights:
    landmark: float = 1.0
    face_oval: float = 0.3
    depth: float = 0.25  # relative to the 2D terms, MediaPipe's z is noisier
    identity_prior: float = 2.0  # pixels of residual one unit-variance coefficient is worth
    expression_prior: float = 1.0
    iterations: int = 5


@dataclass
class LandmarkFit:
    rotation: np.ndarray  # (3, 3) OpenCV camera frame
    translation: np.ndarray  # (3,)
    focal_length_px: float
    principal_point_px: tuple[float, float]
    image_size: tuple[int, int]
    identity: np.ndarray  # (I,)
    expression: np.ndarray  # (E,)
    rms_px: float
    per_focal_rms_px: dict[float, float] = field(default_factory=dict)

    def to_camera(self) -> Camera:
        m = np.eye(4)
        m[:3, :3] = _CV_TO_GL @ self.rotation
        m[:3, 3] = _CV_TO_GL @ self.translation
        return Camera(self.focal_length_px, self.principal_point_px, self.image_size, m)


def _intrinsics(f: float, c: tuple[float, float]) -> np.ndarray:
    return np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1]], np.float64)


def _solve_pose(points3d, points2d, f, c, weights, rvec=None, tvec=None):
    k = _intrinsics(f, c)
    use = weights > 0.5 * weights.max()
    if rvec is None:
        ok, rvec, tvec = cv2.solvePnP(points3d[use], points2d[use], k, None, flags=cv2.SOLVEPNP_SQPNP)
    else:
        ok, rvec, tvec = cv2.solvePnP(points3d[use], points2d[use], k, None, rvec, tvec, True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise RuntimeError("pose estimation failed")
    return rvec, tvec


def _solve_coefficients(basis: LandmarkBasis, rot, trans, f, c, lm2d, lm_depth, w_lm, weights: FitWeights):
    """Linearised (in px) least squares for [identity, expression] given the pose.

    Identity is held by its Gaussian prior (unbounded); expression weights are bounded to [0, 1].
    The identity block is eliminated in closed form, so the bounded solve runs on the E expression
    coefficients only.
    """
    n_id, n_ex = basis.identity.shape[2], basis.expression.shape[2]
    A = basis.combined  # (K, 3, P)
    cam_neutral = basis.neutral @ rot.T + trans  # (K, 3)
    depth = cam_neutral[:, 2]  # (K,) current depth estimate
    du = lm2d[:, 0] - c[0]
    dv = lm2d[:, 1] - c[1]
    # rows: (f r1 − du r3) · p + f t1 − du t3 = 0, same for y, all divided by depth → pixels
    row_x = f * rot[0][None, :] - du[:, None] * rot[2][None, :]  # (K, 3)
    row_y = f * rot[1][None, :] - dv[:, None] * rot[2][None, :]
    sw = (w_lm / depth)[:, None]
    Mx = np.einsum("kx,kxp->kp", row_x, A) * sw
    My = np.einsum("kx,kxp->kp", row_y, A) * sw
    bx = -((row_x * basis.neutral).sum(1) + f * trans[0] - du * trans[2]) * sw[:, 0]
    by = -((row_y * basis.neutral).sum(1) + f * trans[1] - dv * trans[2]) * sw[:, 0]
    blocks, rhs = [Mx, My], [bx, by]
    if lm_depth is not None and weights.depth > 0:
        # camera-space depth differences ≈ MediaPipe z (px) × depth / f, both centred
        zmean = depth.mean()
        Az = np.einsum("x,kxp->kp", rot[2], A)
        Az = Az - Az.mean(0, keepdims=True)
        target = (lm_depth - lm_depth.mean()) * zmean / f - (depth - depth.mean())
        scale = weights.depth * f / zmean  # back to px
        blocks.append(Az * scale * w_lm[:, None])
        rhs.append(target * scale * w_lm)
    prior = np.concatenate([np.full(n_id, weights.identity_prior), np.full(n_ex, weights.expression_prior)])
    blocks.append(np.diag(prior))
    rhs.append(np.zeros(n_id + n_ex))
    M, b = np.concatenate(blocks), np.concatenate(rhs)  # (rows, P), (rows,)
    N, n = M.T @ M, M.T @ b  # normal equations (P, P), (P,)
    Nii, Nie, Nee = N[:n_id, :n_id], N[:n_id, n_id:], N[n_id:, n_id:]
    # identity = Nii⁻¹ (n_i − Nie e) is optimal for any expression e; eliminating it leaves a bounded
    # problem in e alone with the Schur complement S, solved as least squares ||Lᵀe − L⁻¹s||² (S = L Lᵀ)
    solve_ii = np.linalg.solve(Nii, np.concatenate([Nie, n[:n_id, None]], axis=1))  # (I, E + 1)
    S = Nee - Nie.T @ solve_ii[:, :-1]  # (E, E)
    s = n[n_id:] - Nie.T @ solve_ii[:, -1]
    L = np.linalg.cholesky(S)
    expression = lsq_linear(L.T, np.linalg.solve(L, s), bounds=(0.0, 1.0), method="bvls", max_iter=400).x
    expression = np.clip(expression, 0.0, 1.0)  # bvls may overshoot a bound by rounding
    identity = solve_ii[:, -1] - solve_ii[:, :-1] @ expression
    return identity, expression


def _reprojection_rms(basis, identity, expression, rot, trans, f, c, lm2d, w_lm) -> float:
    cam = basis.points(identity, expression) @ rot.T + trans
    proj = f * cam[:, :2] / cam[:, 2:3] + np.asarray(c)
    err = np.linalg.norm(proj - lm2d, axis=1)
    return float(np.sqrt(np.sum(w_lm * err ** 2) / np.sum(w_lm)))


def landmark_weights(count: int, weights: FitWeights) -> np.ndarray:
    w = np.full(count, weights.landmark)
    w[FACE_OVAL[FACE_OVAL < count]] = weights.face_oval
    return w


def fit_landmarks(basis: LandmarkBasis, landmarks_px: np.ndarray, image_size: tuple[int, int],
                  focal_length_px: float | None = None, weights: FitWeights | None = None) -> LandmarkFit:
    """Fit pose, identity and expression to (K, 2|3) landmarks in pixels (x, y[, MediaPipe z])."""
    # the matrices are small: BLAS threads only contend (100× slower on a loaded 2-core box)
    with threadpool_limits(1, user_api="blas"):
        return _fit(basis, landmarks_px, image_size, focal_length_px, weights)


def _fit(basis, landmarks_px, image_size, focal_length_px, weights) -> LandmarkFit:
    weights = weights or FitWeights()
    lm = np.asarray(landmarks_px, np.float64)
    if len(lm) > len(basis.neutral):
        raise ValueError(f"{len(lm)} landmarks given, the model embeds {len(basis.neutral)}")
    basis = basis.first(len(lm))
    lm2d, lm_depth = lm[:, :2], (lm[:, 2] if lm.shape[1] > 2 else None)
    w, h = image_size
    c = (w / 2.0, h / 2.0)
    w_lm = landmark_weights(len(lm), weights)
    focals = [focal_length_px] if focal_length_px else [s * max(w, h) for s in FOCAL_CANDIDATES]
    n_id, n_ex = basis.identity.shape[2], basis.expression.shape[2]

    def refine(f, iterations, identity, expression, rvec=None, tvec=None):
        for _ in range(iterations):
            rvec, tvec = _solve_pose(basis.points(identity, expression), lm2d, f, c, w_lm, rvec, tvec)
            rot = cv2.Rodrigues(rvec)[0]
            identity, expression = _solve_coefficients(basis, rot, tvec.ravel(), f, c, lm2d, lm_depth, w_lm, weights)
        rvec, tvec = _solve_pose(basis.points(identity, expression), lm2d, f, c, w_lm, rvec, tvec)
        rot, trans = cv2.Rodrigues(rvec)[0], tvec.ravel()
        rms = _reprojection_rms(basis, identity, expression, rot, trans, f, c, lm2d, w_lm)
        return rms, rot, trans, f, identity, expression, rvec, tvec

    # a short fit per focal candidate picks the focal length; the best one is then refined
    scan = weights.iterations if len(focals) == 1 else 2
    best, per_focal = None, {}
    for f in focals:
        trial = refine(f, scan, np.zeros(n_id), np.zeros(n_ex))
        per_focal[round(f, 2)] = trial[0]
        if best is None or trial[0] < best[0]:
            best = trial
    if len(focals) > 1:
        _, _, _, f, identity, expression, rvec, tvec = best
        best = refine(f, weights.iterations - scan, identity, expression, rvec, tvec)
    rms, rot, trans, f, identity, expression = best[:6]
    return LandmarkFit(rot, trans, float(f), c, (int(w), int(h)), identity.astype(np.float32),
                       expression.astype(np.float32), rms, per_focal)
