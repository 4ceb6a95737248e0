"""The source portrait's camera as a ``UsdGeom.Camera``: looking through it, the head overlays the photo.

Lens values use a 36 mm-wide film back (USD lens units are tenths of a scene unit: mm for a cm
stage): ``horizontalAperture = 36``, ``focalLength = f_px · 36 / width``, vertical aperture and
aperture offsets (from the principal point) scaled the same way. The transform is
``camera_to_world``. The exact pinhole numbers are kept in ``customData["topos:camera"]`` so the
reader restores the ``Camera`` bit for bit.
"""

from __future__ import annotations

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom

from ..errors import AssetError
from ..head_result import Camera
from . import layout

FILM_BACK_MM = 36.0


def define_camera(stage: Usd.Stage, path: Sdf.Path, camera: Camera, points: np.ndarray | None = None) -> UsdGeom.Camera:
    usd_cam = UsdGeom.Camera.Define(stage, path)
    width, height = camera.image_size
    mm_per_px = FILM_BACK_MM / width
    cx, cy = camera.principal_point_px
    usd_cam.CreateProjectionAttr(UsdGeom.Tokens.perspective)
    usd_cam.CreateFocalLengthAttr(float(camera.focal_length_px * mm_per_px))
    usd_cam.CreateHorizontalApertureAttr(float(width * mm_per_px))
    usd_cam.CreateVerticalApertureAttr(float(height * mm_per_px))
    # the film window moves opposite to where the optical axis lands in the picture
    usd_cam.CreateHorizontalApertureOffsetAttr(float(-(cx - width / 2.0) * mm_per_px))
    usd_cam.CreateVerticalApertureOffsetAttr(float((cy - height / 2.0) * mm_per_px))
    if points is not None and len(points):
        depth = -camera.to_camera(points.astype(np.float64))[:, 2]
        near = max(float(depth.min()) * 0.5, 0.1)
        far = max(float(depth.max()) * 2.0, near * 10.0)
        usd_cam.CreateClippingRangeAttr(Gf.Vec2f(near, far))
    # USD matrices are row-vector (p · M): the transpose of our column-vector camera_to_world
    usd_cam.AddTransformOp().Set(Gf.Matrix4d(camera.camera_to_world.T.tolist()))
    usd_cam.GetPrim().SetCustomDataByKey(layout.CAMERA_KEY, {
        "focalLengthPx": float(camera.focal_length_px),
        "principalPointPx": Gf.Vec2d(*camera.principal_point_px),
        "imageSize": Gf.Vec2i(*camera.image_size),
        "worldToCamera": Gf.Matrix4d(camera.world_to_camera.tolist()),  # column-vector convention, as Camera
    })
    return usd_cam


def read_camera(prim: Usd.Prim) -> Camera:
    """The exact ``Camera`` stored in customData."""
    data = prim.GetCustomDataByKey(layout.CAMERA_KEY)
    if not data:
        raise AssetError(f"camera {prim.GetPath()} has no {layout.CAMERA_KEY} customData (not written by TOPOS)")
    return Camera(
        focal_length_px=float(data["focalLengthPx"]),
        principal_point_px=tuple(data["principalPointPx"]),
        image_size=tuple(data["imageSize"]),
        world_to_camera=np.array(data["worldToCamera"], np.float64).reshape(4, 4),
    )


def projection_through_usd_camera(prim: Usd.Prim, points: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N, 3) world points → (N, 2) pixels using only the USD camera (``Gf.Frustum``): what a DCC sees."""
    gf = UsdGeom.Camera(prim).GetCamera(Usd.TimeCode.Default())
    frustum = gf.frustum
    view = np.array(frustum.ComputeViewMatrix(), np.float64)  # row-vector world → camera
    proj = np.array(frustum.ComputeProjectionMatrix(), np.float64)
    homo = np.concatenate([points.astype(np.float64), np.ones((len(points), 1))], axis=1) @ view @ proj  # (N, 4)
    ndc = homo[:, :2] / homo[:, 3:4]
    width, height = image_size
    return np.stack([(ndc[:, 0] + 1) * 0.5 * width, (1 - ndc[:, 1]) * 0.5 * height], axis=1)

