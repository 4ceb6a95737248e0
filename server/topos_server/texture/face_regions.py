"""Soft facial regions per vertex (lips, eyes, brows, nose, forehead, …) from the 68 landmarks.

Used by the texture baker: the lighting fit keeps to plain skin (no eyes, brows, lips), and the
roughness map takes its priors from the regions.

How the regions are made: the ``"multipie68"`` landmarks (iBUG order, subject's right first) are
evaluated on the topology's *rest* points and drawn as filled polygons / thick polylines on a frontal
canvas (x right, y up, looking down −Z at a face that looks down +Z, as ICT does). The canvas is
blurred (soft edges), sampled at every vertex's (x, y), and gated to the *frontal surface*: a vertex
only takes a region if it lies on the surface seen from the front (an orthographic depth buffer of
the rest mesh), so the back of the head, the mouth socket and the ear backs get none. Sizes are in
units of the inter-ocular distance (IOD, between the eye centres), so any head scale works.

Weights are in [0, 1] per vertex; they move with the mesh (they are vertex attributes), so the same
regions apply to every posed head in the topology.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from topos_sdk.raster import rasterize
from topos_sdk.topology import ReferenceTopology
from topos_server.texture.disk_cache import bake_cache_dir, load_arrays, save_arrays

LANDMARK_SET = "multipie68"
CANVAS_FACE_WIDTH_PX = 256  # canvas pixels across the jaw-line width

JAW = list(range(0, 17))
BROW_RIGHT, BROW_LEFT = list(range(17, 22)), list(range(22, 27))
NOSE_BRIDGE, NOSE_BASE = list(range(27, 31)), list(range(31, 36))
EYE_RIGHT, EYE_LEFT = list(range(36, 42)), list(range(42, 48))
LIPS_OUTER = list(range(48, 60))

REGIONS_VERSION = "face-regions/1"  # bump when the regions change (their disk cache is keyed by it)
REGION_NAMES = ("face", "lips", "eyes", "brows", "nose", "forehead", "t_zone", "lighting_fit", "neck")
CHIN = 8


@dataclass
class FaceRegions:
    """Per-vertex soft weights, each (N,) float32 in [0, 1]; empty when the topology has no landmarks."""

    weights: dict[str, np.ndarray]

    def get(self, name: str, num_points: int) -> np.ndarray:
        w = self.weights.get(name)
        return np.zeros(num_points, np.float32) if w is None else w

    @property
    def available(self) -> bool:
        return bool(self.weights)


_CACHE: dict[str, FaceRegions] = {}


def face_regions(topology: ReferenceTopology) -> FaceRegions:
    """Regions of ``topology`` (cached per topology id in memory, and on disk: :mod:`disk_cache`);
    empty without ``multipie68`` landmarks."""
    key = topology.topology_id + ":" + str(sorted(topology.landmarks))
    if key not in _CACHE:
        _CACHE[key] = _cached_regions(topology)
    return _CACHE[key]


def _cached_regions(topology: ReferenceTopology) -> FaceRegions:
    landmarks = topology.landmarks.get(LANDMARK_SET)
    if landmarks is None or len(landmarks) != 68:
        return FaceRegions({})
    digest = hashlib.sha256(REGIONS_VERSION.encode() + topology.topology_id.encode())
    for array in (topology.rest_points, landmarks.vertices, landmarks.weights):
        digest.update(np.ascontiguousarray(array).tobytes())
    path = bake_cache_dir() / f"face-regions-{digest.hexdigest()[:20]}.npz"
    loaded = load_arrays(path, list(REGION_NAMES))
    if loaded is not None and all(w.shape == (topology.num_points,) and w.dtype == np.float32 for w in loaded.values()):
        return FaceRegions(loaded)
    regions = _compute_regions(topology)
    save_arrays(path, regions.weights)
    return regions


def _compute_regions(topology: ReferenceTopology) -> FaceRegions:
    landmarks = topology.landmarks.get(LANDMARK_SET)
    if landmarks is None or len(landmarks) != 68:
        return FaceRegions({})
    rest = topology.rest_points  # (N, 3)
    lm = landmarks.evaluate(rest).astype(np.float64)  # (68, 3)

    face_width = float(np.ptp(lm[JAW, 0]))
    scale = CANVAS_FACE_WIDTH_PX / face_width  # canvas px per world unit
    margin = 0.6 * face_width
    x0, x1 = lm[:, 0].min() - margin, lm[:, 0].max() + margin
    y0, y1 = lm[:, 1].min() - margin, lm[:, 1].max() + margin
    width, height = int(np.ceil((x1 - x0) * scale)), int(np.ceil((y1 - y0) * scale))

    def to_canvas(p: np.ndarray) -> np.ndarray:  # (..., ≥2) world → (..., 2) canvas px (x right, y down)
        return np.stack([(p[..., 0] - x0) * scale, (y1 - p[..., 1]) * scale], axis=-1)

    lm2 = to_canvas(lm)  # (68, 2)
    eye_r, eye_l = lm2[EYE_RIGHT].mean(axis=0), lm2[EYE_LEFT].mean(axis=0)
    iod = float(np.linalg.norm(eye_l - eye_r))
    up = np.array([0.0, -1.0])  # canvas direction towards the top of the head

    def canvas() -> np.ndarray:
        return np.zeros((height, width), np.float32)

    def poly(points: np.ndarray, dilate: float = 0.0) -> np.ndarray:
        img = canvas()
        cv2.fillPoly(img, [np.round(points).astype(np.int32)], 1.0, lineType=cv2.LINE_8)
        if dilate > 0:
            r = max(1, int(round(dilate * iod)))
            img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        return img

    def polyline(points: np.ndarray, thickness: float) -> np.ndarray:
        img = canvas()
        cv2.polylines(img, [np.round(points).astype(np.int32)], False, 1.0,
                      thickness=max(1, int(round(thickness * iod))), lineType=cv2.LINE_8)
        return img

    brow_line = lm2[BROW_RIGHT + BROW_LEFT]  # (10, 2) subject's right → left
    masks = {
        "lips": poly(lm2[LIPS_OUTER], dilate=0.03),
        "eyes": np.maximum(poly(lm2[EYE_RIGHT], dilate=0.12), poly(lm2[EYE_LEFT], dilate=0.12)),
        "brows": np.maximum(polyline(lm2[BROW_RIGHT] + 0.03 * iod * up, 0.2),
                            polyline(lm2[BROW_LEFT] + 0.03 * iod * up, 0.2)),
        "nose": poly(cv2.convexHull(lm2[NOSE_BRIDGE + NOSE_BASE].astype(np.float32))[:, 0], dilate=0.1),
        "forehead": poly(np.concatenate([brow_line + 0.15 * iod * up, (brow_line + 0.9 * iod * up)[::-1]])),
        "face": poly(np.concatenate([lm2[JAW], (brow_line + 0.5 * iod * up)[::-1]])),
    }
    centre_x = 0.5 * (eye_r[0] + eye_l[0])
    columns = np.arange(width, dtype=np.float32)
    central_band = np.clip(1.0 - np.abs(columns - centre_x) / (0.7 * iod), 0.0, 1.0)[None, :]  # (1, W)
    masks["t_zone"] = np.maximum(masks["forehead"] * central_band, masks["nose"])
    blur = 0.06 * iod
    soft = {name: cv2.GaussianBlur(m, (0, 0), blur) for name, m in masks.items()}
    soft["lighting_fit"] = np.clip(
        soft["face"] - soft["eyes"] - soft["brows"] - soft["lips"], 0.0, 1.0)
    soft["lighting_fit"] *= cv2.GaussianBlur(masks["face"], (0, 0), 2 * blur)  # stay clear of the contour

    # sample at the vertices, gated to the surface seen from the front
    vertex_xy = to_canvas(rest.astype(np.float64)).astype(np.float32)  # (N, 2)
    frontal = _frontal_surface(topology, to_canvas, width, height, tolerance=0.05 * iod / scale)
    weights = {}
    for name, img in soft.items():
        sampled = _sample(img, vertex_xy)
        weights[name] = np.clip(sampled * frontal, 0.0, 1.0).astype(np.float32)
    # below the chin, where collars and scarves cover the neck in portraits: not gated to the front
    # (the sides of the neck are covered just as often); 0 at the chin → 1 half an IOD lower
    world_iod = iod / scale
    weights["neck"] = np.clip((lm[CHIN, 1] - rest[:, 1]) / (0.5 * world_iod), 0.0, 1.0).astype(np.float32)
    return FaceRegions(weights)


def _frontal_surface(topology: ReferenceTopology, to_canvas, width: int, height: int, tolerance: float) -> np.ndarray:
    """(N,) 1 where a vertex lies on the rest mesh's surface seen from the front (+Z), else 0."""
    rest = topology.rest_points.astype(np.float64)
    tri, _ = topology.triangles()
    xy = to_canvas(rest)  # (N, 2)
    triangle_id, bary = rasterize(xy[tri], width, height, tri_depth=-rest[tri, 2])
    front_z = np.full((height, width), -np.inf, np.float32)
    covered = triangle_id >= 0
    front_z[covered] = np.einsum("pc,pc->p", bary[covered], rest[tri[triangle_id[covered]], 2]).astype(np.float32)
    # a vertex sits between canvas pixels: take the nearest surface among the 3×3 around it
    front_z = cv2.dilate(front_z, np.ones((3, 3), np.uint8))
    cols = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, height - 1)
    return (rest[:, 2] >= front_z[rows, cols] - tolerance).astype(np.float32)


def _sample(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear sample of a (H, W) image at (N, 2) pixel positions (pixel centres at +0.5); 0 outside."""
    n = xy.shape[0]
    cols = 1024
    rows = -(-n // cols)
    pad = rows * cols - n
    map_x = np.pad(xy[:, 0] - 0.5, (0, pad)).reshape(rows, cols).astype(np.float32)
    map_y = np.pad(xy[:, 1] - 0.5, (0, pad)).reshape(rows, cols).astype(np.float32)
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return out.reshape(-1)[:n]
