"""Fit the morphable head model to 2D face landmarks (+ MediaPipe's relative depth).

Unknowns: camera pose (rotation, translation), 100 identity and E expression coefficients, and the
focal length when not given. Alternates a PnP pose solve (OpenCV) with a bounded linear least-squares
solve of the coefficients (:func:`box_least_squares`, expressions in [0, 1]). The perspective projection is made linear in the
shape by multiplying through by depth (``f·X − (x − cx)·Z = 0``) and dividing by the current depth
estimate, so every residual is in pixels.

Strong poses (``FitWeights.visibility`` / ``contour_sliding``): each landmark is weighted by how
squarely its surface faces the camera (a landmark on a cheek turned away is the detector's guess), an
eye turned away drops its iris points, and the jaw/cheek contour landmarks — which a detector puts on
the face's outline, wherever that falls on the 3D face — slide along their row of candidate vertices
to the one on the mesh's occluding contour for the current pose (silhouette correspondences). A head
found turned beyond ``FitWeights.turn_start_deg`` is fitted again with the landmarks moved to where the
real detector puts them on a turned head (``LandmarkBasis.turned``, learned from renders:
:mod:`topos_server.assets.landmark_offsets`); one found turned beyond the ``LandmarkBasis.turned_correction``'s
yaw is fitted again on its detections moved to where the points belong (the detector regresses a less-turned
face there: :mod:`topos_server.assets.turned_landmarks`).

Several photos of one person (:func:`fit_landmarks_multiview`): one identity, per-view pose, focal
length and expression, solved jointly; the identity prior is held as many times as hard as there are
photos (the detector's error on one face repeats across its photos).

Camera conventions inside this module are OpenCV's (looks down +Z, y down); :func:`to_camera`
converts the result to :class:`topos_sdk.Camera` (looks down −Z, +Y up).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from topos_sdk import Camera, LandmarkSet
from topos_server.assets.turned_landmarks import TurnedLandmarkCorrection

# MediaPipe FaceMesh face-oval (silhouette) landmarks: where they sit on the 3D face changes with
# pose, so they get a lower weight.
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                      152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
_CV_TO_GL = np.diag([1.0, -1.0, -1.0])
# the jaw and cheek part of the face oval (below the eyes, off the chin's midline): these slide
CONTOUR_SLIDING = np.array([389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
                            176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162])
CONTOUR_ROW_STEP = 0.3  # model units (cm) between rows of contour candidates
# MediaPipe's lid contours, per eye in iris order (468–472 for the 33/133 eye, 473–477 for the other)
EYE_LIDS = (np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]),
            np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398]))
IRIS_POINTS = (np.arange(468, 473), np.arange(473, 478))
# focal-length candidates, as multiples of the image's longer side (≈ 53° … 14° horizontal FOV)
FOCAL_CANDIDATES = (1.0, 1.4, 2.0, 2.8, 4.0)


@dataclass
class ContourCandidates:
    """Rows of model vertices across the front of the face, per side: for a given pose the outermost
    vertex of each row lies on the face's outline (the occluding contour, or where the face ends)."""

    landmarks: np.ndarray  # (S,) landmark indices that slide
    landmark_side: np.ndarray  # (S,) +1 on the model's +x half of the face, −1 on the other
    rows: list[np.ndarray]  # R index arrays into `vertices`
    row_side: np.ndarray  # (R,) ±1
    vertices: "LandmarkBasis"  # the model at every candidate vertex, (C, ...)

    @cached_property
    def padded_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, L) the rows padded with their own first index, and (R, L) bool: a real member."""
        length = max(len(row) for row in self.rows)
        padded = np.stack([np.concatenate([row, np.full(length - len(row), row[0])]) for row in self.rows])
        member = np.arange(length)[None, :] < np.array([len(row) for row in self.rows])[:, None]
        return padded, member

    @cached_property
    def flat_basis(self) -> np.ndarray:
        """(C·3, I + E): evaluating every candidate is one matrix-vector product."""
        return self.vertices.combined.reshape(-1, self.vertices.combined.shape[2])

    def points(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """(C, 3) the candidate vertices of the head with these coefficients."""
        return self.vertices.neutral + (self.flat_basis @ np.concatenate([identity, expression])).reshape(-1, 3)

    @classmethod
    def from_model(cls, landmark_points: np.ndarray, pool: np.ndarray, neutral: np.ndarray,
                   identity_basis: np.ndarray, expression_basis: np.ndarray,
                   sliding: np.ndarray = CONTOUR_SLIDING) -> "ContourCandidates":
        """Rows of the ``pool`` vertices (the front of the face) every CONTOUR_ROW_STEP from the chin to
        above the highest sliding landmark, per side of the face; ``landmark_points`` (K, 3) on the
        neutral head."""
        sliding = sliding[sliding < len(landmark_points)]
        pool_points = neutral[pool]  # (P, 3)
        heights = np.arange(pool_points[:, 1].min(), landmark_points[sliding, 1].max() + CONTOUR_ROW_STEP,
                            CONTOUR_ROW_STEP)
        rows, row_side = [], []
        for side in (-1.0, 1.0):
            for y in heights:
                in_row = (np.abs(pool_points[:, 1] - y) <= CONTOUR_ROW_STEP / 2) & (pool_points[:, 0] * side > 0)
                if in_row.any():
                    rows.append(np.flatnonzero(in_row))
                    row_side.append(side)
        members = np.unique(np.concatenate(rows))  # pool positions in any row
        remap = np.full(len(pool), -1)
        remap[members] = np.arange(len(members))
        vertices = pool[members]
        basis = LandmarkBasis(neutral=neutral[vertices].astype(np.float64),
                              identity=np.einsum("bkx->kxb", identity_basis[:, vertices].astype(np.float64)),
                              expression=np.einsum("bkx->kxb", expression_basis[:, vertices].astype(np.float64)))
        return cls(sliding, np.sign(landmark_points[sliding, 0]), [remap[r] for r in rows], np.array(row_side), basis)


@dataclass
class LandmarkBasis:
    """The head model evaluated at K embedded landmarks."""

    neutral: np.ndarray  # (K, 3)
    identity: np.ndarray  # (K, 3, I)
    expression: np.ndarray  # (K, 3, E)
    normals: np.ndarray | None = None  # (K, 3) unit surface normals of the neutral head
    contour: ContourCandidates | None = None
    # (K, 3) each: where the detector's points move when the head is turned fully to yaw > 0 / yaw < 0
    turned: tuple[np.ndarray, np.ndarray] | None = None
    # beyond its yaw, the detections are moved to where the points belong (assets/turned_landmarks.py)
    turned_correction: TurnedLandmarkCorrection | None = None

    @classmethod
    def from_model(cls, landmarks: LandmarkSet, neutral: np.ndarray, identity_basis: np.ndarray,
                   expression_basis: np.ndarray, contour_pool: np.ndarray | None = None,
                   turned: tuple[np.ndarray, np.ndarray] | None = None,
                   turned_correction: TurnedLandmarkCorrection | None = None) -> "LandmarkBasis":
        """neutral (N, 3), identity_basis (I, N, 3), expression_basis (E, N, 3) → values at the landmarks,
        with the landmarks' smooth surface normals (visibility weights); ``contour_pool`` (vertex ids of
        the front of the face) enables silhouette sliding of the jaw/cheek landmarks; ``turned``: the
        turned-head offsets (:func:`~topos_server.assets.landmark_offsets.turned_offsets`); ``turned_correction``:
        the strongly turned head's (:func:`~topos_server.assets.turned_landmarks.load_correction`)."""
        w = landmarks.weights.astype(np.float64)  # (K, 3 corners)
        v = landmarks.vertices  # (K, 3 corners)

        def at(basis):  # (B, N, 3) → (K, 3, B)
            return np.einsum("bkcx,kc->kxb", basis[:, v, :].astype(np.float64), w)

        points = landmarks.evaluate(neutral.astype(np.float64))
        normals = landmark_surface_normals(points)
        contour = None if contour_pool is None else ContourCandidates.from_model(
            points, np.asarray(contour_pool), neutral, identity_basis, expression_basis)
        return cls(neutral=points, identity=at(identity_basis), expression=at(expression_basis),
                   normals=normals, contour=contour, turned=turned, turned_correction=turned_correction)

    @cached_property
    def combined(self) -> np.ndarray:
        """(K, 3, I + E) identity and expression bases side by side."""
        return np.concatenate([self.identity, self.expression], axis=2)

    def first(self, count: int) -> "LandmarkBasis":
        """The first ``count`` landmarks (468 plain FaceMesh points of a 478-point set)."""
        return LandmarkBasis(self.neutral[:count], self.identity[:count], self.expression[:count],
                             None if self.normals is None else self.normals[:count], self.contour,
                             None if self.turned is None else (self.turned[0][:count], self.turned[1][:count]),
                             self.turned_correction)

    def turned_towards(self, yaw_deg: float, weights: "FitWeights") -> "LandmarkBasis":
        """The basis with the landmarks moved by the turned-head offsets for a head at ``yaw_deg`` (the fit's
        :func:`yaw_degrees`): none up to ``weights.turn_start_deg``, all from ``weights.turn_full_deg``,
        linear between. Call it on the untouched basis (it adds to wherever the landmarks are)."""
        if self.turned is None or not weights.turned_offsets:
            return self
        share = np.clip((abs(yaw_deg) - weights.turn_start_deg) / (weights.turn_full_deg - weights.turn_start_deg),
                        0.0, 1.0)
        if share == 0.0:
            return self
        offsets = self.turned[0] if yaw_deg > 0 else self.turned[1]
        return replace(self, neutral=self.neutral + share * offsets)

    def points(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        return self.neutral + self.identity @ identity + self.expression @ expression  # (K, 3)

    def with_rows(self, rows: np.ndarray, source: "LandmarkBasis", source_rows: np.ndarray) -> "LandmarkBasis":
        """A copy whose landmarks ``rows`` take ``source``'s ``source_rows`` (slid correspondences)."""
        neutral, identity, expression = self.neutral.copy(), self.identity.copy(), self.expression.copy()
        neutral[rows], identity[rows], expression[rows] = (source.neutral[source_rows], source.identity[source_rows],
                                                           source.expression[source_rows])
        return LandmarkBasis(neutral, identity, expression, self.normals, self.contour, self.turned)


def landmark_surface_normals(points: np.ndarray, neighbours: int = 16) -> np.ndarray:
    """(K, 3) → (K, 3) unit normals of the smooth surface through the landmarks (plane of each point's
    nearest landmarks), pointing out of the head. Smoother than the mesh's own normals, which on
    eyelids and lips face every way."""
    count = min(neighbours, len(points))
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)  # (K, K): a few hundred landmarks
    nearest = np.argpartition(squared, count - 1, axis=1)[:, :count]  # (K, n) each point's n nearest, itself included
    patches = points[nearest] - points[nearest].mean(axis=1, keepdims=True)  # (K, n, 3)
    _, _, vt = np.linalg.svd(patches, full_matrices=False)
    normals = vt[:, -1, :]  # (K, 3) least-variance direction
    inside = points.mean(axis=0) - [0.0, 0.0, np.ptp(points[:, 0])]  # a point well inside the head
    flip = np.einsum("kx,kx->k", normals, points - inside) < 0
    normals[flip] *= -1
    return normals


@dataclass
class FitWeights:
    landmark: float = 1.0
    face_oval: float = 0.3
    sliding_contour: float = 0.3  # below half the top weight: slid points shape the head but stay out of the PnP pose solve
    depth: float = 0.25  # relative to the 2D terms, MediaPipe's z is noisier
    identity_prior: float = 2.0  # pixels of residual one unit-variance coefficient is worth
    expression_prior: float = 1.0
    iterations: int = 5
    strong_pose_yaw_deg: float = 45.0  # beyond this head turn the weights move with the pose: iterate more
    strong_pose_iterations: int = 4
    visibility: bool = True  # weight landmarks by how squarely they face the camera (needs normals)
    contour_sliding: bool = True  # jaw/cheek landmarks on the occluding contour (needs contour candidates)
    full_weight_facing: float = 0.35  # cos of the viewing angle from which a landmark counts fully
    turned_away: float = 0.03  # weight factor of landmarks edge-on or turned away from the camera
    hidden_eye_yaw_deg: float = 50.0  # beyond this head turn the nose hides the far eye: its iris points drop
    # refit a turned head with the detector's turned-head offsets (basis.turned) and, beyond its yaw, on the
    # corrected detections (basis.turned_correction): the real detector's behaviour, off for exact landmarks
    turned_offsets: bool = True
    turn_start_deg: float = 25.0  # the offsets start to apply beyond this yaw …
    turn_full_deg: float = 50.0  # … and apply fully from this one


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
    hidden_eyes: tuple[int, ...] = ()  # 0: the 33/133 eye, 1: the 263/362 eye, turned away from the camera

    def to_camera(self) -> Camera:
        m = np.eye(4)
        m[:3, :3] = _CV_TO_GL @ self.rotation
        m[:3, 3] = _CV_TO_GL @ self.translation
        return Camera(self.focal_length_px, self.principal_point_px, self.image_size, m)


@dataclass
class ViewObservation:
    """One photo's landmarks and the per-view state of the fit."""

    lm2d: np.ndarray  # (K, 2) pixels
    lm_depth: np.ndarray | None  # (K,) MediaPipe z
    base_weights: np.ndarray  # (K,)
    image_size: tuple[int, int]
    focal: float
    rvec: np.ndarray | None = None
    tvec: np.ndarray | None = None
    expression: np.ndarray | None = None  # (E,)

    @property
    def principal_point(self) -> tuple[float, float]:
        return self.image_size[0] / 2.0, self.image_size[1] / 2.0


def _intrinsics(f: float, c: tuple[float, float]) -> np.ndarray:
    return np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1]], np.float64)


def _solve_pose(points3d, points2d, f, c, weights, rvec=None, tvec=None):
    k = _intrinsics(f, c)
    use = weights > 0.5 * weights.max()
    use[468:] = False  # iris points add nothing to the pose the eye corners do not, and may be off an eye the nose hides
    if rvec is None:
        ok, rvec, tvec = cv2.solvePnP(points3d[use], points2d[use], k, None, flags=cv2.SOLVEPNP_SQPNP)
    else:
        ok, rvec, tvec = cv2.solvePnP(points3d[use], points2d[use], k, None, rvec, tvec, True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise RuntimeError("pose estimation failed")
    return rvec, tvec


def slide_contour(basis: LandmarkBasis, identity, expression, rot, trans, f, c, lm2d: np.ndarray) -> LandmarkBasis:
    """The basis with each sliding contour landmark moved to the point of the face's outline for this
    pose nearest (in the image) to where the detector put it. The outline: the vertex of each row that
    projects furthest out along the head's projected x axis, on its side of the face."""
    contour = basis.contour
    if contour is None:
        return basis
    cam = contour.points(identity, expression) @ rot.T + trans  # (C, 3)
    projected = f * cam[:, :2] / cam[:, 2:3] + np.asarray(c)  # (C, 2)
    across = rot[:2, 0] / max(np.linalg.norm(rot[:2, 0]), 1e-9)  # the head's x axis in the image
    padded, member = contour.padded_rows
    outward = np.where(member, contour.row_side[:, None] * (projected @ across)[padded], -np.inf)  # (R, L)
    outline = padded[np.arange(len(padded)), np.argmax(outward, axis=1)]  # (R,) one vertex per row
    keep = contour.landmarks < len(basis.neutral)
    landmarks, sides = contour.landmarks[keep], contour.landmark_side[keep]
    chosen = np.empty(len(landmarks), int)
    for i, (k, side) in enumerate(zip(landmarks, sides)):
        candidates = outline[contour.row_side == side]
        chosen[i] = candidates[np.argmin(np.linalg.norm(projected[candidates] - lm2d[k], axis=1))]
    return basis.with_rows(landmarks, contour.vertices, chosen)


def yaw_degrees(rot: np.ndarray) -> float:
    """The head's turn about its vertical axis in the fit's (OpenCV) camera rotation; > 0: the model's +x
    side turned away (data/synthetic_portraits.py's yaw > 0)."""
    return float(np.degrees(np.arctan2(rot[2, 0], rot[0, 0])))


def visibility_weights(basis: LandmarkBasis, base: np.ndarray, identity, expression, rot, trans,
                       weights: FitWeights) -> tuple[np.ndarray, tuple[int, ...]]:
    """(K,) landmark weights scaled by how squarely each landmark faces the camera, and the eyes
    turned away (whose iris points get weight 0)."""
    if basis.normals is None:
        return base, ()
    cam = basis.points(identity, expression) @ rot.T + trans  # (K, 3)
    to_camera = -cam / np.linalg.norm(cam, axis=1, keepdims=True)
    facing = np.einsum("kx,kx->k", basis.normals @ rot.T, to_camera)  # (K,) cos of the viewing angle
    # landmarks edge-on or turned away are the detector's guess
    scale = np.clip(facing / weights.full_weight_facing, weights.turned_away, 1.0)
    if basis.contour is not None and weights.contour_sliding:
        sliding = basis.contour.landmarks[basis.contour.landmarks < len(scale)]
        scale[sliding] = 1.0  # on the silhouette by construction
    w = base * scale
    yaw = yaw_degrees(rot)
    hidden = ()
    if abs(yaw) > weights.hidden_eye_yaw_deg:
        far = 1 if yaw > 0 else 0  # EYE_LIDS[1] is the +x eye
        hidden = (far,)
        if IRIS_POINTS[far][-1] < len(w):
            w[IRIS_POINTS[far]] = 0.0
    return w, hidden


def _solve_coefficients(bases: list[LandmarkBasis], views: list[ViewObservation], rotations, translations,
                        weights_per_view: list[np.ndarray], weights: FitWeights):
    """Linearised (in px) least squares for the shared identity and every view's expression, given
    the poses.

    Identity is held by its Gaussian prior (unbounded); expression weights are bounded to [0, 1].
    The identity block is eliminated in closed form, so the bounded solve runs on the V·E expression
    coefficients only.
    """
    n_id, n_ex = bases[0].identity.shape[2], bases[0].expression.shape[2]
    n_views = len(views)
    blocks, rhs = [], []
    for v, (basis, view, rot, trans, w_lm) in enumerate(zip(bases, views, rotations, translations, weights_per_view)):
        f, c = view.focal, view.principal_point
        A = basis.combined  # (K, 3, I + E)
        cam_neutral = basis.neutral @ rot.T + trans  # (K, 3)
        depth = cam_neutral[:, 2]  # (K,) current depth estimate
        du = view.lm2d[:, 0] - c[0]
        dv = view.lm2d[:, 1] - c[1]
        # rows: (f r1 − du r3) · p + f t1 − du t3 = 0, same for y, all divided by depth → pixels
        row_x = f * rot[0][None, :] - du[:, None] * rot[2][None, :]  # (K, 3)
        row_y = f * rot[1][None, :] - dv[:, None] * rot[2][None, :]
        sw = (w_lm / depth)[:, None]
        view_blocks = [np.einsum("kx,kxp->kp", row_x, A) * sw, np.einsum("kx,kxp->kp", row_y, A) * sw]
        rhs += [-((row_x * basis.neutral).sum(1) + f * trans[0] - du * trans[2]) * sw[:, 0],
                -((row_y * basis.neutral).sum(1) + f * trans[1] - dv * trans[2]) * sw[:, 0]]
        if view.lm_depth is not None and weights.depth > 0:
            # camera-space depth differences ≈ MediaPipe z (px) × depth / f, both centred
            zmean = depth.mean()
            Az = np.einsum("x,kxp->kp", rot[2], A)
            Az = Az - Az.mean(0, keepdims=True)
            target = (view.lm_depth - view.lm_depth.mean()) * zmean / f - (depth - depth.mean())
            scale = weights.depth * f / zmean  # back to px
            view_blocks.append(Az * scale * w_lm[:, None])
            rhs.append(target * scale * w_lm)
        for block in view_blocks:  # (rows, I + E) → (rows, I + V·E): this view's expression columns
            wide = np.zeros((len(block), n_id + n_views * n_ex))
            wide[:, :n_id] = block[:, :n_id]
            wide[:, n_id + v * n_ex:n_id + (v + 1) * n_ex] = block[:, n_id:]
            blocks.append(wide)
    prior = np.concatenate([np.full(n_id, weights.identity_prior), np.full(n_views * n_ex, weights.expression_prior)])
    blocks.append(np.diag(prior))
    rhs.append(np.zeros(len(prior)))
    M, b = np.concatenate(blocks), np.concatenate(rhs)  # (rows, P), (rows,)
    N, n = M.T @ M, M.T @ b  # normal equations (P, P), (P,)
    Nii, Nie, Nee = N[:n_id, :n_id], N[:n_id, n_id:], N[n_id:, n_id:]
    # identity = Nii⁻¹ (n_i − Nie e) is optimal for any expression e; eliminating it leaves a bounded
    # problem in e alone with the Schur complement S: min ½ eᵀSe − sᵀe, 0 ≤ e ≤ 1
    solve_ii = np.linalg.solve(Nii, np.concatenate([Nie, n[:n_id, None]], axis=1))  # (I, V·E + 1)
    S = Nee - Nie.T @ solve_ii[:, :-1]  # (V·E, V·E)
    s = n[n_id:] - Nie.T @ solve_ii[:, -1]
    expression = box_least_squares(S, s, 0.0, 1.0)
    identity = solve_ii[:, -1] - solve_ii[:, :-1] @ expression
    return identity, list(expression.reshape(n_views, n_ex))


def box_least_squares(S: np.ndarray, s: np.ndarray, lower: float, upper: float, max_changes: int = 1000) -> np.ndarray:
    """argmin ½ xᵀSx − sᵀx subject to lower ≤ x ≤ upper, S (P, P) symmetric positive definite: (P,) float64.

    A primal active-set method (as BVLS, Stark & Parker 1995): the coefficients not held at a bound are
    solved exactly; a solve that leaves the box is stepped back to the first bound it crosses, which then
    holds that coefficient; at a solution inside the box, the held coefficient whose gradient points most
    into the box is let go, until none does (the KKT conditions). Written here rather than taking scipy's
    ``lsq_linear(method="bvls")`` because importing ``scipy.optimize`` costs ~0.25–0.8 s of every `topos
    generate` process, a tenth to a quarter of its whole budget, for a problem of ~53 unknowns per photo.
    """
    S, s = np.asarray(S, np.float64), np.asarray(s, np.float64)
    x = np.clip(np.linalg.solve(S, s), lower, upper)
    held = (x <= lower) | (x >= upper)  # (P,) coefficients held at a bound
    tolerance = 1e-10 * max(1.0, float(np.abs(s).max(initial=0.0)), float(np.abs(S).max(initial=0.0)))
    for _ in range(max_changes):
        free = ~held
        if free.any():
            target = x.copy()
            target[free] = np.linalg.solve(S[np.ix_(free, free)], s[free] - S[np.ix_(free, held)] @ x[held])
            below, above = free & (target < lower), free & (target > upper)
            if below.any() or above.any():  # step towards it up to the first bound crossed, which then holds
                step = target - x
                with np.errstate(divide="ignore", invalid="ignore"):
                    reach = np.where(below, (lower - x) / step, np.where(above, (upper - x) / step, np.inf))
                alpha = float(np.clip(reach.min(), 0.0, 1.0))
                x = np.clip(x + alpha * step, lower, upper)
                crossing = (below | above) & (reach <= alpha + 1e-12)
                x[crossing & below], x[crossing & above] = lower, upper
                held |= crossing
                continue
            x = target
        gradient = S @ x - s
        # letting a held coefficient go lowers the objective when its gradient points into the box
        into_box = np.where(held & (x <= lower), -gradient, 0.0) + np.where(held & (x >= upper), gradient, 0.0)
        worst = int(np.argmax(into_box))
        if into_box[worst] <= tolerance:
            return x
        held[worst] = False
    return x


def _reprojection_rms(basis, identity, expression, rot, trans, f, c, lm2d, w_lm) -> float:
    cam = basis.points(identity, expression) @ rot.T + trans
    proj = f * cam[:, :2] / cam[:, 2:3] + np.asarray(c)
    err = np.linalg.norm(proj - lm2d, axis=1)
    return float(np.sqrt(np.sum(w_lm * err ** 2) / np.sum(w_lm)))


def landmark_weights(count: int, weights: FitWeights, sliding: bool = False) -> np.ndarray:
    w = np.full(count, weights.landmark)
    w[FACE_OVAL[FACE_OVAL < count]] = weights.face_oval
    if sliding:
        w[CONTOUR_SLIDING[CONTOUR_SLIDING < count]] = weights.sliding_contour
    return w


def fit_landmarks(basis: LandmarkBasis, landmarks_px: np.ndarray, image_size: tuple[int, int],
                  focal_length_px: float | None = None, weights: FitWeights | None = None) -> LandmarkFit:
    """Fit pose, identity and expression to (K, 2|3) landmarks in pixels (x, y[, MediaPipe z])."""
    # the matrices are small: BLAS threads only contend (100× slower on a loaded 2-core box)
    with threadpool_limits(1, user_api="blas"):
        return _fit(basis, landmarks_px, image_size, focal_length_px, weights)[0]


def fit_landmarks_multiview(basis: LandmarkBasis, landmarks_px: list[np.ndarray], image_sizes: list[tuple[int, int]],
                            focal_length_px: float | None = None, weights: FitWeights | None = None
                            ) -> list[LandmarkFit]:
    """One identity fitted to several photos of one person: per view (K, 2|3) landmarks in pixels and
    (width, height). Each view is first fitted alone (its focal length and pose), then all jointly:
    shared identity, per-view pose and expression, MediaPipe's depth weighted 1/V as much (the views'
    geometry fixes depth) and the identity prior V times as much (BENCHMARKS.md, "Several photos of one
    person": with the prior as for one photo, three rendered photos gave a worse head than one). One
    LandmarkFit per view, sharing ``identity``. The head's overall size stays the prior's: scaling the head
    and every camera distance together changes no photo."""
    weights = weights or FitWeights()
    with threadpool_limits(1, user_api="blas"):
        fitted = [_fit(basis, lm, size, focal_length_px, weights) for lm, size in zip(landmarks_px, image_sizes)]
        singles = [single for single, _, _ in fitted]
        views, bases = [], []
        for size, (single, single_basis, lm) in zip(image_sizes, fitted):  # a turned view: its corrected points
            view, view_basis = _observation(single_basis, lm, size, weights)
            view_basis = view_basis.turned_towards(yaw_degrees(single.rotation), weights)
            view.focal = single.focal_length_px
            view.rvec, view.tvec = cv2.Rodrigues(single.rotation)[0], single.translation.reshape(3, 1).copy()
            view.expression = single.expression.astype(np.float64)
            views.append(view)
            bases.append(view_basis)
        identity = np.mean([single.identity for single in singles], axis=0).astype(np.float64)
        # the views' geometry fixes depth better than each detector's own guess of it (MediaPipe's z); and the
        # detector's error on one face is largely the same in every photo of it (its own shape prior), so V photos
        # are not V times the evidence on the identity: its prior is held V times as hard
        joint_weights = replace(weights, depth=weights.depth / len(views),
                                identity_prior=weights.identity_prior * len(views))
        states = _refine(bases, views, identity, weights.iterations, joint_weights)
    return [LandmarkFit(rot, trans, float(view.focal), view.principal_point, tuple(map(int, view.image_size)),
                        state_identity.astype(np.float32), view.expression.astype(np.float32), rms, {}, hidden)
            for view, (rms, rot, trans, state_identity, hidden) in zip(views, states)]


def _observation(basis: LandmarkBasis, landmarks_px, image_size, weights: FitWeights
                 ) -> tuple[ViewObservation, LandmarkBasis]:
    lm = np.asarray(landmarks_px, np.float64)
    if len(lm) > len(basis.neutral):
        raise ValueError(f"{len(lm)} landmarks given, the model embeds {len(basis.neutral)}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks must be finite")
    view_basis = basis.first(len(lm))
    if not weights.visibility:
        view_basis = replace(view_basis, normals=None)
    if not weights.contour_sliding:
        view_basis = replace(view_basis, contour=None)
    sliding = view_basis.contour is not None
    view = ViewObservation(lm[:, :2], lm[:, 2] if lm.shape[1] > 2 else None,
                           landmark_weights(len(lm), weights, sliding), tuple(image_size), 0.0)
    return view, view_basis


def _refine(bases: list[LandmarkBasis], views: list[ViewObservation], identity: np.ndarray, iterations: int,
            weights: FitWeights) -> list[tuple]:
    """Alternate per-view pose (PnP), contour sliding and visibility, and the joint coefficient solve.
    Updates the views' pose and expression in place; per view (rms, rotation, translation, identity,
    hidden eyes)."""

    def view_state(basis, view):
        c = view.principal_point
        current = basis
        if view.rvec is not None:  # slide to the contour of the previous pose before solving the next
            rot = cv2.Rodrigues(view.rvec)[0]
            current = slide_contour(basis, identity, view.expression, rot, view.tvec.ravel(), view.focal, c, view.lm2d)
        w, _ = (visibility_weights(current, view.base_weights, identity, view.expression,
                                   cv2.Rodrigues(view.rvec)[0], view.tvec.ravel(), weights)
                if view.rvec is not None else (view.base_weights, ()))
        view.rvec, view.tvec = _solve_pose(current.points(identity, view.expression), view.lm2d, view.focal, c, w,
                                           view.rvec, view.tvec)
        rot, trans = cv2.Rodrigues(view.rvec)[0], view.tvec.ravel()
        current = slide_contour(basis, identity, view.expression, rot, trans, view.focal, c, view.lm2d)
        w, hidden = visibility_weights(current, view.base_weights, identity, view.expression, rot, trans, weights)
        return current, rot, trans, w, hidden

    for _ in range(iterations):
        states = [view_state(basis, view) for basis, view in zip(bases, views)]
        identity, expressions = _solve_coefficients([s[0] for s in states], views, [s[1] for s in states],
                                                    [s[2] for s in states], [s[3] for s in states], weights)
        for view, expression in zip(views, expressions):
            view.expression = expression
    results = []
    for basis, view in zip(bases, views):
        current, rot, trans, w, hidden = view_state(basis, view)
        rms = _reprojection_rms(current, identity, view.expression, rot, trans, view.focal, view.principal_point,
                                view.lm2d, w)
        results.append((rms, rot, trans, identity, hidden))
    return results


def _fit(basis, landmarks_px, image_size, focal_length_px, weights
         ) -> tuple[LandmarkFit, LandmarkBasis, np.ndarray]:
    """The fit, and the basis and landmarks it ended with: a head found turned beyond the basis's
    ``turned_correction`` is fitted again on the corrected detections, without the turned-head offsets."""
    weights = weights or FitWeights()
    fit = _fit_detections(basis, landmarks_px, image_size, focal_length_px, weights)
    correction, yaw = basis.turned_correction, yaw_degrees(fit.rotation)
    if correction is None or not weights.turned_offsets or not correction.applies(yaw, landmarks_px):
        return fit, basis, landmarks_px
    corrected = correction(landmarks_px, yaw)
    basis = replace(basis, turned=None, turned_correction=None)
    return _fit_detections(basis, corrected, image_size, focal_length_px, weights), basis, corrected


def _fit_detections(basis, landmarks_px, image_size, focal_length_px, weights) -> LandmarkFit:
    view, view_basis = _observation(basis, landmarks_px, image_size, weights)
    w, h = image_size
    focals = [focal_length_px] if focal_length_px else [s * max(w, h) for s in FOCAL_CANDIDATES]
    n_id, n_ex = view_basis.identity.shape[2], view_basis.expression.shape[2]

    def refine(f, iterations, identity, expression, rvec=None, tvec=None):
        trial = replace(view, focal=f, rvec=rvec, tvec=tvec, expression=expression)
        (rms, rot, trans, identity, hidden), = _refine([view_basis], [trial], identity, iterations, weights)
        return rms, rot, trans, f, identity, trial.expression, trial.rvec, trial.tvec, hidden

    # a short fit per focal candidate picks the focal length; the best one is then refined
    scan = weights.iterations if len(focals) == 1 else 2
    best, per_focal = None, {}
    for f in focals:
        trial = refine(f, scan, np.zeros(n_id), np.zeros(n_ex))
        per_focal[round(f, 2)] = trial[0]
        if best is None or trial[0] < best[0]:
            best = trial
    if len(focals) > 1:
        _, _, _, f, identity, expression, rvec, tvec, _ = best
        best = refine(f, weights.iterations - scan, identity, expression, rvec, tvec)
    if weights.visibility and abs(yaw_degrees(best[1])) > weights.strong_pose_yaw_deg:
        _, _, _, f, identity, expression, rvec, tvec, _ = best
        best = refine(f, weights.strong_pose_iterations, identity, expression, rvec, tvec)
    turned = view_basis.turned_towards(yaw_degrees(best[1]), weights)
    if turned is not view_basis:  # a turned head: the detector's points sit elsewhere; refit with them there
        view_basis = turned  # refine() reads it
        _, _, _, f, identity, expression, rvec, tvec, _ = best
        best = refine(f, weights.iterations, identity, expression, rvec, tvec)
    rms, rot, trans, f, identity, expression, _, _, hidden = best
    return LandmarkFit(rot, trans, float(f), view.principal_point, (int(w), int(h)), identity.astype(np.float32),
                       expression.astype(np.float32), rms, per_focal, hidden)
