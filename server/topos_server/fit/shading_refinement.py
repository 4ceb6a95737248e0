"""Several photos of one person: refine the jointly fitted identity with the skin's shading across the photos.

The landmarks say little about the smooth shape of a face (the depth of the cheeks, the width of the jaw, the
slope of the forehead): the face front-end's points carry its own shape prior, and the same error repeats in every
photo of one face (BENCHMARKS.md, "Several photos of one person"). The shading of the skin does carry that shape,
and several photos of one person separate it from the skin's colour: a point of the skin has one albedo in every
photo, while its shading changes with its normal's angle to each photo's light.

Model (per photo ``k``, per plain-skin vertex ``v`` of the front of the face — ``face_regions`` "lighting_fit":
no eyes, brows or lips): the photo's linear luminance at the vertex's projection is ``a_v · S_k(n_vk)``, with one
albedo ``a_v`` shared by all photos and ``S_k`` the photo's own 2nd-order spherical-harmonic irradiance of the
vertex normal in its camera frame (9 coefficients: the light is unknown and differs per photo). For a given shape
the albedos and the lights are solved in closed form (alternating least squares, three rounds); the shape — the
leading ``components`` identity modes, added to the landmark fit's identity — follows the gradient of the
remaining misfit (Adam, through the closed-form solve), with a small correction of each photo's pose, the identity
prior and a term that keeps the landmarks' projections near the detections. Focal length and expression stay the
landmark fit's (refining the expressions too measured worse, as did fitting R, G and B each). Only
vertices seen in two or more photos count (one photo cannot tell albedo from shading), weighted by how squarely
each photo sees them (visibility from the starting shape's depth buffer), and not where a photo shows hair over
the forehead (:mod:`~topos_server.texture.hair_mask`). Photos are looked at with
``WORK_IOD_PX`` pixels between the eyes, blurred coarse to fine (``SCALES``).

Measured in ``bench/multiview_fit.py --photos`` (BENCHMARKS.md). Needs torch (imported here only).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from topos_sdk.topology import ReferenceTopology
from topos_server.fit.landmark_fit import FACE_OVAL, LandmarkBasis, LandmarkFit
from topos_server.texture.bake import depth_buffer, occluding_triangles, vertex_normals
from topos_server.texture.face_regions import face_regions
from topos_server.texture.hair_mask import hair_mask
from topos_server.texture.skin_lighting import luminance as rec709_luminance, srgb8_to_linear

EYE_CORNERS = (33, 263)
WORK_IOD_PX = 64.0  # each photo is resampled to this many pixels between the outer eye corners
SCALES = ((2.0, 60), (1.0, 40), (0.5, 30))  # (Gaussian blur σ in work pixels, Adam iterations), coarse to fine
COMPONENTS = 60  # leading identity modes refined
PRIOR_WEIGHT = 0.01  # × the squared identity coefficients (unit variance each)
LANDMARK_WEIGHT = 0.01  # × the mean squared landmark reprojection in units of LANDMARK_SIGMA_PX
LANDMARK_SIGMA_PX = 3.0  # work pixels
PHOTO_WEIGHT = 300.0  # × the misfit relative to the luminance's energy
LEARNING_RATE = 0.03
POSE_LEARNING_RATES = (5e-4, 5e-3)  # each photo's rotation (axis-angle, rad) and translation (cm) corrections
REFINE_POSE = True
RIDGE = 1e-3  # on each photo's 9 light coefficients, per unit of its sample weight
GRAZING_COS, FULL_WEIGHT_COS = 0.2, 0.6  # a vertex's weight in a photo, by the cosine to the view direction
DEPTH_TOLERANCE = 0.3  # model units (cm) a vertex may lie behind the depth buffer and still count as seen
PLAIN_SKIN = 0.5  # "lighting_fit" weight from which a vertex is sampled
LANDMARKS = 468  # FaceMesh points without the irises


@dataclass(frozen=True)
class ShadingHeadModel:
    """What the refinement needs of the head model."""

    neutral: np.ndarray  # (N, 3)
    identity_basis: np.ndarray  # (I, N, 3)
    expression_basis: np.ndarray  # (E, N, 3)
    landmarks: LandmarkBasis  # the FaceMesh landmarks the fit used


def refine_identity_by_shading(images: list[np.ndarray], fits: list[LandmarkFit], landmarks_px: list[np.ndarray],
                               model: ShadingHeadModel, topology: ReferenceTopology) -> np.ndarray:
    """(I,) the identity of ``fits`` (one joint fit, :func:`fit_landmarks_multiview`) refined by the shading of
    the skin across ``images`` ((H, W, 3) uint8 RGB, one per fit; ``landmarks_px`` their (≥ 468, 2|3) detections).
    Fewer than two photos: the identity unchanged."""
    identity = fits[0].identity.astype(np.float64)
    if len(images) < 2:
        return identity
    import torch

    regions = face_regions(topology)
    samples = np.flatnonzero(regions.get("lighting_fit", topology.num_points) > PLAIN_SKIN)  # (S,)
    if samples.size < 100:
        return identity
    triangles, face_of = topology.triangles()
    used = np.zeros(topology.num_points, bool)
    used[samples] = True
    near = triangles[used[triangles].any(axis=1)]  # (T, 3) the triangles around the samples: their normals
    vertices, local = np.unique(near, return_inverse=True)  # the vertices evaluated, and the triangles in them
    local_triangles = torch.from_numpy(local.reshape(-1, 3).astype(np.int64))
    sample_rows = torch.from_numpy(np.searchsorted(vertices, samples))

    count = min(COMPONENTS, model.identity_basis.shape[0])
    start = model.neutral[vertices] + np.tensordot(identity, model.identity_basis[:, vertices], axes=1)  # (M, 3)
    weights = _visibility_weights(fits, identity, model, topology, triangles, face_of)[:, samples]  # (V, S)
    linear_images = [[srgb8_to_linear(image[:, :, c]) for c in range(3)] for image in images]  # 3 × (H, W) each
    weights *= _hair_weights(linear_images, fits, landmarks_px, model.neutral[samples] + np.tensordot(
        identity, model.identity_basis[:, samples], axes=1), model.expression_basis[:, samples])
    weights *= (weights > 0).sum(axis=0) >= 2

    with torch.no_grad():
        basis = torch.from_numpy(model.identity_basis[:count, vertices].astype(np.float64))  # (C, M, 3)
        views = [_View(planes, fit, lm, model, vertices, start, identity, count, torch)
                 for planes, fit, lm in zip(linear_images, fits, landmarks_px)]
    weight = torch.from_numpy(weights.astype(np.float64))  # (V, S)
    prior_centre = torch.from_numpy(identity[:count])
    offset = torch.zeros(count, dtype=torch.float64, requires_grad=True)  # (C,) added to the leading modes
    for sigma, iterations in SCALES:
        for view in views:
            view.blur(sigma)
        groups = [([offset], LEARNING_RATE)]
        if REFINE_POSE:
            groups += [([view.turn for view in views], POSE_LEARNING_RATES[0]),
                       ([view.shift for view in views], POSE_LEARNING_RATES[1])]
        optimiser = _Adam(groups, torch)
        for _ in range(iterations):
            optimiser.zero_grad()
            delta = torch.einsum("c,cmx->mx", offset, basis)  # (M, 3)
            luminance, harmonics, landmark_misfit = [], [], 0.0
            for view in views:
                lum, sh, misfit = view.observe(delta, offset, local_triangles, sample_rows)
                luminance.append(lum)
                harmonics.append(sh)
                landmark_misfit = landmark_misfit + misfit
            misfit = _shading_misfit(torch.stack(luminance), torch.stack(harmonics), weight, torch)  # (V, S), (V, S, 9)
            loss = (PHOTO_WEIGHT * misfit + LANDMARK_WEIGHT * landmark_misfit / len(views)
                    + PRIOR_WEIGHT * ((prior_centre + offset) ** 2).sum())
            loss.backward()
            optimiser.step()
    refined = identity.copy()
    refined[:count] += offset.detach().numpy()
    return refined


class _Adam:
    """Adam (Kingma & Ba; torch.optim.Adam's defaults) over (tensors, learning rate) groups. Written out because
    constructing torch.optim.Adam imports torch._dynamo, 2.8 s on the 2-core box: more than the whole refinement."""

    def __init__(self, groups, torch, betas=(0.9, 0.999), eps=1e-8):
        self.groups, self.torch, self.betas, self.eps, self.steps = groups, torch, betas, eps, 0
        self.moments = [[(torch.zeros_like(p), torch.zeros_like(p)) for p in params] for params, _ in groups]

    def zero_grad(self) -> None:
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    def step(self) -> None:
        self.steps += 1
        b1, b2 = self.betas
        with self.torch.no_grad():
            for (params, rate), moments in zip(self.groups, self.moments):
                for p, (m, v) in zip(params, moments):
                    m.mul_(b1).add_(p.grad, alpha=1 - b1)
                    v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    denominator = (v / (1 - b2 ** self.steps)).sqrt_().add_(self.eps)
                    p.addcdiv_(m, denominator, value=-rate / (1 - b1 ** self.steps))


def keep_landmarks() -> np.ndarray:
    """(468,) bool: the landmarks the anchor term uses — not the outline's, which slide with the pose (the fit
    handles them)."""
    keep = np.ones(LANDMARKS, bool)
    keep[FACE_OVAL] = False
    return keep


class _View:
    """One photo: its luminance at the work scale, its camera, its expression and its detected landmarks."""

    def __init__(self, linear_planes, fit: LandmarkFit, landmarks_px, model: ShadingHeadModel, vertices, start, identity,
                 count: int, torch):
        self.torch = torch
        points = np.asarray(landmarks_px, np.float64)[:LANDMARKS, :2]
        iod = float(np.linalg.norm(points[EYE_CORNERS[0]] - points[EYE_CORNERS[1]]))
        self.scale = WORK_IOD_PX / max(iod, 1e-6)
        height, width = linear_planes[0].shape
        image_scale = np.array([width, height], np.float64) / np.array(fit.image_size, np.float64)
        photo_luminance = rec709_luminance(linear_planes, axis=0)  # (H, W)
        size = (max(8, round(width * self.scale / image_scale[0])), max(8, round(height * self.scale / image_scale[1])))
        interpolation = cv2.INTER_AREA if self.scale < 1.0 else cv2.INTER_LINEAR
        self.luminance = cv2.resize(photo_luminance, size, interpolation=interpolation).astype(np.float32)  # (h, w)
        self.planes = None
        expression = np.tensordot(fit.expression.astype(np.float64), model.expression_basis[:, vertices], axes=1)
        self.posed = torch.from_numpy(start + expression)  # (M, 3) the starting head with this photo's expression
        self.rotation = torch.from_numpy(fit.rotation.astype(np.float64))
        self.translation = torch.from_numpy(fit.translation.astype(np.float64))
        self.turn = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # axis-angle correction of the rotation
        self.shift = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # correction of the translation
        self.focal = fit.focal_length_px * self.scale
        self.centre = torch.tensor(fit.principal_point_px, dtype=torch.float64) * self.scale
        keep = keep_landmarks()
        basis = model.landmarks
        start_landmarks = (basis.neutral[:LANDMARKS] + basis.identity[:LANDMARKS] @ identity
                           + basis.expression[:LANDMARKS] @ fit.expression.astype(np.float64))[keep]  # (L, 3)
        self.landmarks = torch.from_numpy(start_landmarks)
        self.landmark_basis = torch.from_numpy(basis.identity[:LANDMARKS, :, :count][keep])  # (L, 3, C)
        self.detected = torch.from_numpy(points[keep] * self.scale / image_scale)  # (L, 2) work pixels

    def blur(self, sigma: float) -> None:
        blurred = cv2.GaussianBlur(self.luminance, (0, 0), sigma)
        self.planes = self.torch.from_numpy(blurred.astype(np.float64))[None, None]  # (1, 1, h, w)

    def project(self, points):
        """(P, 3) head points → (P, 2) work pixels, and the camera-frame points (OpenCV: y down, z forward)."""
        camera = points @ (_rotation(self.turn, self.torch) @ self.rotation).T + self.translation + self.shift
        return camera[:, :2] / camera[:, 2:3] * self.focal + self.centre, camera

    def observe(self, delta, offset, triangles, sample_rows):
        """The luminance (S,) at the samples, their (S, 9) SH basis of camera-frame normals and the landmark misfit."""
        torch = self.torch
        posed = self.posed + delta
        landmarks = self.landmarks + self.landmark_basis @ offset
        xy, camera = self.project(posed)  # (M, 2), (M, 3)
        corners = camera[triangles]  # (T, 3, 3)
        face_normals = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1)  # (T, 3)
        normals = torch.zeros_like(camera)
        for k in range(3):
            normals = normals.index_add(0, triangles[:, k], face_normals)
        normals = normals[sample_rows]
        normals = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-12)  # (S, 3)
        normals = normals * torch.tensor([1.0, -1.0, -1.0], dtype=normals.dtype)  # facing the camera: +z
        height, width = self.planes.shape[2:]
        at = xy[sample_rows]
        grid = torch.stack([2.0 * at[:, 0] / width - 1.0, 2.0 * at[:, 1] / height - 1.0], dim=1)[None, None]
        luminance = torch.nn.functional.grid_sample(self.planes, grid, align_corners=False,
                                                    padding_mode="border")[0, 0, 0]  # (S,)
        landmarks, _ = self.project(landmarks)
        misfit = (((landmarks - self.detected) / LANDMARK_SIGMA_PX) ** 2).sum(dim=1).mean()
        return luminance, _sh9(normals, torch), misfit


def _rotation(axis_angle, torch):
    """(3,) axis-angle → (3, 3) rotation (Rodrigues; differentiable at zero)."""
    angle2 = (axis_angle * axis_angle).sum()
    x, y, z = axis_angle.unbind()
    zero = torch.zeros((), dtype=axis_angle.dtype)
    k = torch.stack([torch.stack([zero, -z, y]), torch.stack([z, zero, -x]), torch.stack([-y, x, zero])])  # [a]×
    # sin(θ)/θ and (1 − cos θ)/θ² by their series: the corrections are small
    return torch.eye(3, dtype=axis_angle.dtype) + (1 - angle2 / 6) * k + (0.5 - angle2 / 24) * (k @ k)


def _sh9(normals, torch):
    """(S, 3) unit normals → (S, 9) real spherical-harmonic basis up to order 2 (unnormalised)."""
    x, y, z = normals[:, 0], normals[:, 1], normals[:, 2]
    return torch.stack([torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3.0 * z * z - 1.0], dim=1)


def _shading_misfit(luminance, harmonics, weight, torch):
    """luminance (V, S), harmonics (V, S, 9), weight (V, S) → the misfit of one albedo per sample times each
    photo's SH shading, relative to the luminance's weighted energy; albedo and lights solved in closed form."""
    albedo = torch.full_like(luminance[0], float(((weight * luminance).sum() / weight.sum()).detach()))  # (S,)
    ridge = RIDGE * torch.eye(9, dtype=luminance.dtype) * weight.sum(dim=1)[:, None, None]  # (V, 9, 9)
    root = weight.sqrt()
    target = (luminance * root)[:, :, None]  # (V, S, 1)
    for _ in range(3):
        design = harmonics * (albedo * root)[:, :, None]  # (V, S, 9)
        transposed = design.transpose(1, 2)  # (V, 9, S)
        light = torch.linalg.solve(transposed @ design + ridge, transposed @ target)  # (V, 9, 1)
        shading = (harmonics @ light)[:, :, 0]  # (V, S)
        albedo = (weight * luminance * shading).sum(dim=0) / ((weight * shading * shading).sum(dim=0) + 1e-9)
    return (weight * (luminance - albedo * shading) ** 2).sum() / (weight * luminance * luminance).sum()


def _hair_weights(linear_images, fits: list[LandmarkFit], landmarks_px, points, expression_basis) -> np.ndarray:
    """(V, S) 0 where a sample ((S, 3) ``points`` with each fit's expression, ``expression_basis`` (E, S, 3)) looks
    at hair above the brows in that photo (:mod:`~topos_server.texture.hair_mask`: a fringe has no skin's
    shading), else 1."""
    out = np.ones((len(fits), len(points)), np.float32)
    for k, (planes, fit, landmarks) in enumerate(zip(linear_images, fits, landmarks_px)):
        mask = hair_mask(planes, landmarks, fit.image_size)
        if mask is None:
            continue
        posed = points + np.tensordot(fit.expression.astype(np.float64), expression_basis, axes=1)  # (S, 3)
        xy = fit.to_camera().project(posed) * (np.array(planes[0].shape[::-1]) / np.array(fit.image_size))
        out[k] = mask.weight_at(xy.T)
    return out


def _visibility_weights(fits: list[LandmarkFit], identity, model: ShadingHeadModel, topology: ReferenceTopology,
                        triangles, face_of) -> np.ndarray:
    """(V, N) how squarely each photo sees each vertex of the starting head (0 where hidden)."""
    occluders = triangles[occluding_triangles(topology, face_of)]
    out = []
    for fit in fits:
        points = model.neutral + np.tensordot(identity, model.identity_basis, axes=1) + np.tensordot(
            fit.expression.astype(np.float64), model.expression_basis, axes=1)  # (N, 3)
        camera = fit.to_camera()
        cam_points = camera.to_camera(points)  # (N, 3) looking down −Z
        depth_map, depth_scale = depth_buffer(cam_points, occluders, camera)
        depth = -cam_points[:, 2]
        xy = camera.project(points) * depth_scale  # (N, 2)
        rows = np.clip(xy[:, 1].astype(int), 0, depth_map.shape[0] - 1)
        cols = np.clip(xy[:, 0].astype(int), 0, depth_map.shape[1] - 1)
        seen = depth <= depth_map[rows, cols] + DEPTH_TOLERANCE
        normals = vertex_normals(cam_points, triangles)
        cos_view = -(normals * cam_points).sum(axis=1) / np.maximum(np.linalg.norm(cam_points, axis=1), 1e-12)
        out.append(seen * np.clip((cos_view - GRAZING_COS) / (FULL_WEIGHT_COS - GRAZING_COS), 0.0, 1.0))
    return np.stack(out).astype(np.float32)
