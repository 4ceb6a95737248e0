"""The openings in the photographed face — the inner mouth and both eye openings — as a soft mask over the
photo, made from its FaceMesh landmarks; the baker multiplies its observation weights by it.

The fitted mesh seldom opens its lips and lids exactly as far as the photo does: on a smile, lip texels along
the lips' inner edge project onto teeth and the inside of the mouth, and where the eyes' fit is off, lid texels
onto the sclera. The skin-colour test (:mod:`skin_colour`) misses such texels when they are in shadow or near
the skin's colour. The landmarks outline the openings in the photo itself: MediaPipe's inner-lip ring
(``INNER_LIP_RING``) and each eye's lid contour (``EYE_LIDS`` of the landmark fit). Each outline is filled at
photo resolution (``cv2.fillPoly``, sub-pixel), grown by ``MARGIN`` × the face's size (landmark error, the
dark rim along an opening; at least a pixel) and blurred with a third of that, so a texel's weight goes from 0
on the outline to 1 at twice the margin outside it instead of stepping. Only a window around the openings is
stored; everywhere else the weight is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from topos_sdk.errors import InvalidInputError
from topos_server.fit.landmark_fit import EYE_LIDS

# MediaPipe FaceMesh inner-lip loop, mouth corner 78 → upper lip → corner 308 → lower lip. Checked against
# ../shared/mediapipe/canonical_face_model.obj: consecutive points share a mesh edge, and the 18 triangles
# with all three corners on the loop are the ones that close the mouth.
INNER_LIP_RING = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95])
FACE_MESH_POINTS = 468  # the face mesh proper; 478 adds the two irises (468–477)
EYE_CORNERS = (33, 263)  # MediaPipe's outer eye corners: the face's scale (IOD) for the photo-space masks
MARGIN = 0.01  # × face size (diagonal of the landmarks' bounding box): how far an opening's mask is grown
_SUBPIXEL_BITS = 4  # cv2.fillPoly's fractional bits for the outline's corners


@dataclass(frozen=True)
class FaceOpenings:
    """How much the photo shows skin, near the face's openings: 0 inside them, 1 away from them."""

    keep: np.ndarray  # (h, w) float32 in [0, 1] over a window of the photo
    origin: tuple[int, int]  # (x, y) photo pixel of keep[0, 0]

    def weight_at(self, xy: np.ndarray) -> np.ndarray:
        """(2, K) photo pixel coordinates (pixel centres at +½) → (K,) float32: ``keep`` at the pixel under each
        point (1 outside the window)."""
        height, width = self.keep.shape
        col = np.floor(xy[0]).astype(np.int32) - np.int32(self.origin[0])  # (K,)
        row = np.floor(xy[1]).astype(np.int32) - np.int32(self.origin[1])
        inside = np.flatnonzero((col >= 0) & (col < width) & (row >= 0) & (row < height))
        out = np.ones(xy.shape[1], np.float32)
        out[inside] = np.take(self.keep.reshape(-1), np.take(row, inside) * width + np.take(col, inside))
        return out


def face_openings(landmarks, photo_size: tuple[int, int], landmark_image_size: tuple[int, int]) -> FaceOpenings:
    """The mask of the inner mouth and both eye openings over a photo of ``photo_size`` (width, height).

    landmarks: (468 | 478, 2 | 3) FaceMesh points, x and y in pixels of an image of ``landmark_image_size``
    (width, height): the same picture as the photo, possibly at another resolution (z, when given, is unused).
    """
    points = check_landmarks(landmarks)[:, :2]
    points *= np.array(photo_size, np.float64) / np.array(landmark_image_size, np.float64)  # (L, 2) photo pixels
    face_size = float(np.linalg.norm(np.ptp(points[:FACE_MESH_POINTS], axis=0)))
    radius = max(1, int(round(MARGIN * face_size)))  # px
    sigma = radius / 3.0  # the blur does not reach into the opening itself: that stays 0
    outlines = [points[INNER_LIP_RING]] + [_around_centre(points[lids]) for lids in EYE_LIDS]  # (P, 2) each

    # the window: the outlines' bounding box, widened by how far growing and blurring reach
    reach = 2 * radius + 2
    corners = np.concatenate(outlines)
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - reach, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + reach, np.array(photo_size) - 1)
    if x1 < x0 or y1 < y0:  # the openings lie outside the photo
        return FaceOpenings(np.ones((1, 1), np.float32), (0, 0))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    for outline in outlines:  # one at a time: fillPoly leaves where several contours overlap unfilled
        # a pixel is inside when its centre (+½) is: fillPoly's integer coordinates are pixel centres
        corners_fixed = np.rint((outline - (x0 + 0.5, y0 + 0.5)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillPoly(mask, [corners_fixed], 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    opening = cv2.GaussianBlur(mask.astype(np.float32) * np.float32(1.0 / 255), (0, 0), sigma,
                               borderType=cv2.BORDER_REPLICATE)
    # in 1/255 steps: exactly 1 where the blur's tail is negligible (those weights stay bit for bit) and exactly
    # 0 deep inside (those texels are not sampled at all)
    keep = np.rint(np.clip(1.0 - opening, 0.0, 1.0) * 255) / np.float32(255)
    return FaceOpenings(keep.astype(np.float32), (int(x0), int(y0)))


def check_landmarks(landmarks) -> np.ndarray:
    """(468 | 478, 2 | 3) finite FaceMesh points as float64, or an InvalidInputError that says what is wrong."""
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError("landmarks must be a (478, 2|3) array of pixel positions, "
                                f"got {type(landmarks).__name__}") from None
    if (points.ndim != 2 or points.shape[0] not in (FACE_MESH_POINTS, FACE_MESH_POINTS + 10)
            or points.shape[1] not in (2, 3)):
        raise InvalidInputError(f"landmarks must be FaceMesh points, (478 or 468, 2 or 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise InvalidInputError("landmarks contain NaN or infinity")
    return points


def _around_centre(outline: np.ndarray) -> np.ndarray:
    """(P, 2) points of a closed contour in any order → the same points in order of their angle around their
    mean (right for an eye opening, which every lid point sees from its middle)."""
    offset = outline - outline.mean(axis=0)
    return outline[np.argsort(np.arctan2(offset[:, 1], offset[:, 0]), kind="stable")]


@dataclass
class FaceWorkView:
    """A photo looked at with at most ``work_iod_px`` pixels between the outer eye corners (a photo-space mask smooth
    at the face's scale need not be computed at full resolution), and its FaceMesh points there."""

    planes: list[np.ndarray]  # three (h, w) float32 linear planes at the work scale
    points: np.ndarray  # (468, 2) work pixels
    iod: float  # work pixels between the outer eye corners (EYE_CORNERS)
    scale: float  # work pixels per photo pixel, ≤ 1
    photo_size: tuple[int, int]  # (width, height) of the photo

    @classmethod
    def of(cls, photo_planes: list[np.ndarray], landmarks, landmark_image_size: tuple[int, int],
           work_iod_px: float) -> "FaceWorkView":
        """photo_planes: three (H, W) float32 linear planes; landmarks: (468 | 478, 2 | 3) FaceMesh points in pixels of
        an image of ``landmark_image_size`` (width, height), the same picture as the photo."""
        height, width = photo_planes[0].shape
        points = check_landmarks(landmarks)[:FACE_MESH_POINTS, :2]
        points *= np.array((width, height), np.float64) / np.array(landmark_image_size, np.float64)
        iod = float(np.linalg.norm(points[EYE_CORNERS[0]] - points[EYE_CORNERS[1]]))
        scale = min(1.0, work_iod_px / max(iod, 1e-6))
        if scale < 1.0:
            photo_planes = [cv2.resize(plane, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                            for plane in photo_planes]
            points, iod = points * scale, iod * scale
        return cls(list(photo_planes), points, iod, scale, (width, height))

    def mask(self, keep: np.ndarray, top: int) -> FaceOpenings:
        """(r, w) keep weights over work rows ``top``… → the mask over the photo's pixels, in 1/255 steps as the
        openings' (skin keeps exactly 1: its texels' weights stay bit for bit; what is not skin exactly 0). A window
        that reaches the work image's bottom reaches the photo's."""
        if self.scale < 1.0:
            width, height = self.photo_size
            bottom = top + keep.shape[0]
            top_row = int(np.floor(top / self.scale))
            bottom_row = height if bottom >= self.planes[0].shape[0] else min(height, int(np.ceil(bottom / self.scale)))
            keep = cv2.resize(keep, (width, bottom_row - top_row), interpolation=cv2.INTER_LINEAR)
            top = top_row
        return FaceOpenings((np.rint(keep * 255) / np.float32(255)).astype(np.float32), (0, top))
