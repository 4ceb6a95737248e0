"""Hair over the forehead and scalp in the photo — a fringe, the hairline, hair on the top of the head — as a
soft mask over the photo, from its FaceMesh landmarks and the portrait's own colours; the baker multiplies its
observation weights by it, as by the mouth and eye openings (:mod:`face_openings`).

The skin-colour test (:mod:`skin_colour`) asks "is this far from skin?" with a tolerance that must let shading
through; a fringe in the shade of the person's hair is often within it. Here the question is "is this nearer
the person's hair or their skin?", with both colours measured in the photo:

- **skin**: the cheeks (a disc of ``CHEEK_RADIUS`` × the inter-ocular distance (IOD) around MediaPipe's cheek
  points 205 and 425) and the forehead just above the brows (``LOWER_FOREHEAD``);
- **hair**: a band above the top of the face oval (landmark 10), ``HAIR_BAND`` × IOD above it, as wide as the
  forehead — where the hair or, on a bald head, the scalp is;
- both as robust colour models (:func:`~topos_server.texture.skin_colour.fit_skin_colour`: median chromaticity
  and log-luminance with spreads from the median absolute deviation).

Where a pixel may lose weight: above the brows' upper edge (from ``START`` × IOD above it, in full from ``FULL``
× IOD; the brows themselves keep theirs), across the whole width of the head. There it loses weight by how sure
the two colour models are that it shows hair — the odds of the two distances, each in its own model's spreads,
from ``SURE`` (all kept) to ½ (none kept): hair thinning over skin is mostly hair; within ``SKIN_TOLERANCE`` skin
spreads of the skin it is skin — and a pixel left with less than ``KEEP_FLOOR`` keeps nothing: a little weight on
hair is still all the fill has to spread over a forehead nothing else saw.

No mask when the band's colour is less than ``MIN_SEPARATION`` spreads from the skin's, or from the forehead's just
above the brows alone (a bald head, hair the colour of the skin, a high forehead filling the band, a fringe down
to the brows), or a sample is too small (the top of the head cropped off).
Measured on held-out portraits in ``bench/texture_eval.py --hair`` (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from topos_server.texture.face_openings import FaceOpenings, FaceWorkView
from topos_server.texture.skin_colour import SkinColour, colour_features, fit_skin_colour

FOREHEAD_TOP, CHIN = 10, 152  # MediaPipe: the face oval's top and bottom on the midline
CHEEKS = (205, 425)
BROWS = np.array([70, 63, 105, 66, 107, 336, 296, 334, 293, 300])  # the brows' upper edges
CHEEK_RADIUS = 0.25  # × IOD
HAIR_BAND = (0.1, 0.4)  # × IOD above the oval's top
HAIR_BAND_HALF_WIDTH = 0.8  # × IOD either side of the midline
LOWER_FOREHEAD = (0.04, 0.14)  # × IOD above the brows' upper edge: skin unless a fringe reaches the brows
LOWER_FOREHEAD_HALF_WIDTH = 0.5  # × IOD either side of the midline
START, FULL = 0.03, 0.12  # × IOD above the highest brow point: the mask starts / applies in full
SURE = 0.1  # hair posterior below which a pixel keeps its weight; from 0.5 it has none
SKIN_TOLERANCE = 1.5  # skin spreads from the cheeks' colour within which a pixel is skin whatever the hair's
MIN_SEPARATION = 3.0  # skin spreads between the hair's and the skin's colour below which there is no mask
MIN_SAMPLES = 100  # pixels each colour needs
BLUR = 0.02  # × IOD
KEEP_FLOOR = 0.2  # a pixel kept less than this keeps nothing
WORK_IOD_PX = 64.0  # a photo whose eyes are farther apart is reduced to this for the mask


@dataclass(frozen=True)
class HairColours:
    skin: SkinColour
    hair: SkinColour

    @property
    def separation(self) -> float:
        """Distance of the hair's median colour from the skin's, in skin spreads."""
        chroma = np.hypot(*(self.hair.chroma - self.skin.chroma)) / self.skin.chroma_spread
        luminance = (self.hair.log_luminance - self.skin.log_luminance) / self.skin.log_luminance_spread
        return float(np.hypot(chroma, luminance))

    def hair_probability(self, linear_rgb: np.ndarray) -> np.ndarray:
        """(3, K) linear colours → (K,) float32 posterior that each shows the hair rather than the skin."""
        chroma, log_lum = colour_features(linear_rgb)

        def distance2(model: SkinColour) -> np.ndarray:
            return (((chroma[0] - model.chroma[0]) ** 2 + (chroma[1] - model.chroma[1]) ** 2) / model.chroma_spread ** 2
                    + ((log_lum - model.log_luminance) / model.log_luminance_spread) ** 2)

        to_skin = distance2(self.skin)
        # each in its own spreads, without the Gaussians' normalisers: a broad "hair" sample (background in it, a
        # turned head) must not take skin lit unlike the cheeks; within SKIN_TOLERANCE of the skin it is skin
        log_ratio = 0.5 * (to_skin - distance2(self.hair))
        probability = 1.0 / (1.0 + np.exp(-np.clip(log_ratio, -50.0, 50.0)))
        probability[to_skin < SKIN_TOLERANCE ** 2] = 0.0
        return probability.astype(np.float32)


def hair_mask(photo_planes: list[np.ndarray], landmarks, landmark_image_size: tuple[int, int]) -> FaceOpenings | None:
    """The mask of the hair above the brows over the photo (a :class:`FaceOpenings`: 1 on skin,
    → 0 on hair), or None when the portrait's hair and skin cannot be told apart.

    photo_planes: three (H, W) float32 linear planes of the photo; landmarks: (468 | 478, 2 | 3) FaceMesh points in
    pixels of an image of ``landmark_image_size`` (width, height), the same picture as the photo.
    """
    view = FaceWorkView.of(photo_planes, landmarks, landmark_image_size, WORK_IOD_PX)
    photo_planes, points, iod = view.planes, view.points, view.iod
    height, width = photo_planes[0].shape
    up = points[FOREHEAD_TOP] - points[CHIN]  # towards the top of the head, in the image
    if iod < 4.0 or np.linalg.norm(up) < 1e-6:
        return None
    up /= np.linalg.norm(up)
    across = np.array([-up[1], up[0]])
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32) + np.float32(0.5)  # pixel centres
    rise = ((cols - points[CHIN, 0]) * up[0] + (rows - points[CHIN, 1]) * up[1]) / np.float32(iod)  # (H, W) IODs
    side = ((cols - points[FOREHEAD_TOP, 0]) * across[0]
            + (rows - points[FOREHEAD_TOP, 1]) * across[1]) / np.float32(iod)  # (H, W) IODs from the midline
    top = float((points[FOREHEAD_TOP] - points[CHIN]) @ up) / iod
    band = (rise > top + HAIR_BAND[0]) & (rise < top + HAIR_BAND[1]) & (np.abs(side) < HAIR_BAND_HALF_WIDTH)
    # the brows' upper edge as a line across the face (rise against side, both in IODs)
    brow_side = ((points[BROWS] - points[FOREHEAD_TOP]) @ across) / iod
    brow_rise = ((points[BROWS] - points[CHIN]) @ up) / iod
    order = np.argsort(brow_side)
    brow_line = np.interp(side, brow_side[order], brow_rise[order]).astype(np.float32)  # (H, W)
    above_brows = ((rise > brow_line + LOWER_FOREHEAD[0]) & (rise < brow_line + LOWER_FOREHEAD[1])
                   & (np.abs(side) < LOWER_FOREHEAD_HALF_WIDTH))
    cheeks = np.zeros((height, width), bool)
    for cheek in CHEEKS:
        cheeks |= np.hypot(cols - points[cheek, 0], rows - points[cheek, 1]) < CHEEK_RADIUS * iod
    if min(band.sum(), cheeks.sum(), above_brows.sum()) < MIN_SAMPLES:
        return None
    planes = np.stack(photo_planes)  # (3, H, W)
    hair = fit_skin_colour(planes[:, band], np.ones(int(band.sum()), np.float32))
    forehead = fit_skin_colour(planes[:, above_brows], np.ones(int(above_brows.sum()), np.float32))
    skin_pixels = cheeks | above_brows
    skin = fit_skin_colour(planes[:, skin_pixels], np.ones(int(skin_pixels.sum()), np.float32))
    # the band must look unlike the skin of the cheeks and unlike the forehead just above the brows: a high
    # hairline puts forehead skin, lit unlike the cheeks, in the band
    if (skin is None or hair is None or forehead is None or HairColours(skin, hair).separation < MIN_SEPARATION
            or HairColours(forehead, hair).separation < MIN_SEPARATION):
        return None
    ramp = np.clip((rise - brow_line - START) / (FULL - START), 0.0, 1.0)  # (H, W)
    window = np.flatnonzero(ramp.any(axis=1))
    if window.size == 0:
        return None
    y0, y1 = int(window[0]), int(window[-1])
    probability = HairColours(skin, hair).hair_probability(planes[:, y0:y1 + 1].reshape(3, -1))
    sure = np.clip((probability.reshape(y1 - y0 + 1, width) - SURE) / (0.5 - SURE), 0.0, 1.0)
    keep = cv2.GaussianBlur((1.0 - ramp[y0:y1 + 1] * sure).astype(np.float32), (0, 0), max(0.5, BLUR * iod),
                            borderType=cv2.BORDER_REPLICATE)
    # a little weight left on hair is all the fill has to spread where nothing else was seen: none below KEEP_FLOOR
    keep = np.clip((keep - KEEP_FLOOR) / (1.0 - KEEP_FLOOR), 0.0, 1.0)
    return view.mask(keep, y0)
