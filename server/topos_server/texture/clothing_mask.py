"""Clothing around the neck in the photo — a white collar, a shirt, a blouse, a scarf, pearls — as a soft mask over
the photo, from its FaceMesh landmarks and the portrait's own skin colour; the baker multiplies its observation
weights by it, as by the openings (:mod:`face_openings`) and the hair (:mod:`hair_mask`).

Why not the bake's skin-colour test (:mod:`skin_colour`): its spreads come from every plain-skin texel, shading and
dark, noisy pixels included; on real portraits its chromaticity spread is 5–6 times its floor, and a white shirt is
only about 3.6 of those spreads from the skin. Here the question is narrower, and asked only where clothing can be:

- **where**: outside the face oval (FaceMesh's silhouette landmarks) and below the mouth corners — the jaw line, the
  neck and what lies beside them;
- **skin**: discs of ``SKIN_RADIUS`` × the inter-ocular distance (IOD) on the cheeks and the chin; its chromaticity
  ``(r, g) / (r + g + b)`` as their luminance-weighted mean, its spread the luminance-weighted RMS distance to it
  (bright pixels carry the colour; dark ones mostly their noise), floored at ``MIN_SPREAD``;
- **not skin**: a chromaticity more than ``TOLERANCE`` spreads from the skin's — the spread widened in pixels darker
  than the skin's median (their chromaticity is noisier: by the square root of the luminance ratio), so a neck in
  shadow stays skin — or a luminance more than ``BRIGHT_MARGIN`` (natural log) above the skin's brightest
  (``BRIGHT_QUANTILE``): a white shirt is brighter than lit skin.

A pixel loses weight over one unit beyond either limit (soft), blurred by ``BLUR`` × IOD; what keeps less than
``KEEP_FLOOR`` keeps nothing. Dark suits are left to the skin-colour test: a neck in shadow is as dark. Background
beside the neck is masked too (it is not skin either). A beard the colour of skin stays.
Measured on held-out portraits in ``bench/texture_eval.py --clothing`` (BENCHMARKS.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from topos_server.fit.landmark_fit import FACE_OVAL
from topos_server.texture.face_openings import FaceOpenings, FaceWorkView
from topos_server.texture.skin_colour import colour_features

CHIN = 152
MOUTH_CORNERS = (61, 291)
SKIN_POINTS = (205, 425, 199)  # the cheeks and the chin
SKIN_RADIUS = 0.2  # × IOD
MIN_SPREAD = 0.015  # chromaticity spread floor (as skin_colour's)
TOLERANCE = 3.0  # chromaticity spreads from the skin's within which a pixel is skin
BRIGHT_QUANTILE = 0.98
BRIGHT_MARGIN = 0.3  # natural log of luminance above the skin's BRIGHT_QUANTILE
BLUR = 0.03  # × IOD
KEEP_FLOOR = 0.2
MIN_SAMPLES = 100
WORK_IOD_PX = 64.0  # a photo whose eyes are farther apart is reduced to this for the mask


def clothing_mask(photo_planes: list[np.ndarray], landmarks, landmark_image_size: tuple[int, int]
                  ) -> FaceOpenings | None:
    """The mask of what is not skin around the neck over the photo (a :class:`FaceOpenings`: 1 on skin, → 0 on
    clothing), or None when the photo shows too little skin or nothing below the mouth outside the face.

    photo_planes: three (H, W) float32 linear planes of the photo; landmarks: (468 | 478, 2 | 3) FaceMesh points in
    pixels of an image of ``landmark_image_size`` (width, height), the same picture as the photo.
    """
    view = FaceWorkView.of(photo_planes, landmarks, landmark_image_size, WORK_IOD_PX)
    photo_planes, points, iod = view.planes, view.points, view.iod
    height, width = photo_planes[0].shape
    up = points[FACE_OVAL[0]] - points[CHIN]  # towards the top of the head, in the image
    if iod < 4.0 or np.linalg.norm(up) < 1e-6:
        return None
    up /= np.linalg.norm(up)
    mouth_rise = float((points[list(MOUTH_CORNERS)].mean(axis=0) - points[CHIN]) @ up)  # px above the chin
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32) + np.float32(0.5)  # pixel centres
    rise = (cols - points[CHIN, 0]) * up[0] + (rows - points[CHIN, 1]) * up[1]  # (H, W) px above the chin
    below = np.flatnonzero((rise < mouth_rise).any(axis=1))
    if below.size == 0:
        return None
    y0 = int(below[0])

    skin_pixels = np.zeros((height, width), bool)
    for point in SKIN_POINTS:
        skin_pixels |= np.hypot(cols - points[point, 0], rows - points[point, 1]) < SKIN_RADIUS * iod
    if skin_pixels.sum() < MIN_SAMPLES:
        return None
    planes = np.stack(photo_planes)  # (3, H, W)
    chroma, log_lum = colour_features(planes[:, skin_pixels])  # (2, K), (K,)
    weight = np.exp(log_lum)
    weight /= weight.sum()
    centre = chroma @ weight  # (2,)
    spread = max(float(np.sqrt(weight @ ((chroma - centre[:, None]) ** 2).sum(axis=0))), MIN_SPREAD)
    median_log_lum = float(np.median(log_lum))
    brightest = float(np.quantile(log_lum, BRIGHT_QUANTILE))

    window = planes[:, y0:].reshape(3, -1)
    chroma, log_lum = colour_features(window)  # (2, P), (P,)
    local_spread = spread * np.exp(0.5 * np.maximum(median_log_lum - log_lum, 0.0))  # darker: noisier chromaticity
    distance = np.hypot(chroma[0] - centre[0], chroma[1] - centre[1]) / local_spread
    not_skin = np.clip(np.maximum(distance - TOLERANCE, (log_lum - brightest) / BRIGHT_MARGIN), 0.0, 1.0)
    not_skin = not_skin.reshape(height - y0, width).astype(np.float32)
    outside_face = np.ones((height, width), np.uint8)
    cv2.fillPoly(outside_face, [np.round(points[FACE_OVAL]).astype(np.int32)], 0)
    not_skin *= (outside_face[y0:] > 0) & (rise[y0:] < mouth_rise)
    keep = cv2.GaussianBlur(1.0 - not_skin, (0, 0), max(0.5, BLUR * iod), borderType=cv2.BORDER_REPLICATE)
    keep = np.clip((keep - KEEP_FLOOR) / (1.0 - KEEP_FLOOR), 0.0, 1.0)
    return view.mask(keep, y0)
