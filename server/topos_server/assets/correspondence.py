"""Dense MediaPipe FaceMesh ↔ reference-topology correspondence.

Every one of MediaPipe's 478 FaceMesh landmarks (468 face points + 2×5 iris points) becomes a
barycentric point on the reference head, so a head fitted to detected landmarks can be compared with
the detections point for point. Built once per topology (``topos assets import`` stores it in the ICT
topology as landmark set ``"mediapipe"``), in about a second.

How (:func:`register_mediapipe`):

1. Similarity (Umeyama) from MediaPipe's canonical face (cm, +Y up, looking down +Z, subject's left
   at +X — the same frame as ICT) to the reference neutral, on the 51 inner Multi-PIE landmarks
   (brows, nose, eyes, mouth: :data:`MEDIAPIPE_TO_MULTIPIE68` [17:] ↔ the topology's ``multipie68``).
   The 17 jaw points are left out: they are a 2D face-outline convention, not fixed surface points.
2. Non-rigid fit of the canonical mesh onto the reference skin (:func:`~topos_server.geometry.registration.fit_mesh_to_surface`):
   Laplacian-regularised least squares with closest-point (point-to-plane) terms and the same 51
   landmark terms, stiffness relaxed over five rounds (:data:`MEDIAPIPE_FIT`: the landmark weight and
   the last stiffness are the stiffest that keep every fitted triangle unfolded).
3. Each fitted face point (0–467) → the closest point on the skin triangles (exact point–triangle
   distance) → triangle + barycentrics.
4. Iris points (468–477), MediaPipe's iris centre and four rim points as seen from the camera: per
   eye, the centre moves to the reference's iris centre seen from the front (ICT materials
   ``M_IrisLeft``/``M_IrisRight``), the rim keeps MediaPipe's radius, and all five are cast along the
   viewing direction onto the front of the eyeball (sub-meshes ``eyeball_left/right``: the cornea over
   the iris). A topology without eyeballs gets them on the skin.

MediaPipe canonical meshes: Apache-2.0, © The MediaPipe Authors. ICT-FaceKit: MIT, © 2020 USC ICT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_sdk.errors import ToposError
from topos_sdk.obj_reader import read_obj
from topos_sdk.topology import LandmarkSet, ReferenceTopology
from topos_server.geometry.registration import (
    FitSchedule,
    Similarity,
    TriangleSurface,
    fit_mesh_to_surface,
    inverse_distance_displacement,
    umeyama,
)

# bump when the method or its tables change, so that imported asset caches embed the landmarks again
CORRESPONDENCE_VERSION = "1"

NUM_FACE_POINTS = 468
NUM_POINTS_WITH_IRIS = 478

# MediaPipe FaceMesh index of each of the 68 Multi-PIE (iBUG) points, in iBUG order (subject's
# right first). The widely used mapping, checked against the ICT 68 landmark vertices after the
# similarity alignment (tests/test_correspondence.py) and corrected where the geometry disagrees:
# nose bridge 29 is 195 (not 5) and the nostril ends 31/35 are 98/327 (not 75/305, 8 mm off, which
# folded the fitted mesh around the nostrils). Every brow/nose/eye/outer-lip point is among the
# 3 MediaPipe vertices nearest its ICT counterpart; the inner-lip points sit on MediaPipe's inner lip
# line, within 6 mm (the canonical mouth is modelled half open). The mapping is mirror-consistent.
# The jaw points (0–16) are points of MediaPipe's face oval (the canonical mesh's outline), a
# silhouette convention (2D-trained 68 sets mark the visible outline), not fixed surface points.
MEDIAPIPE_TO_MULTIPIE68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw 0–16
    71, 63, 105, 66, 107,  # right brow 17–21
    336, 296, 334, 293, 301,  # left brow 22–26
    168, 197, 195, 4,  # nose bridge 27–30
    98, 97, 2, 326, 327,  # nose base 31–35
    33, 160, 158, 133, 153, 144,  # right eye 36–41
    362, 385, 387, 263, 373, 380,  # left eye 42–47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48–59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60–67
], dtype=np.int32)

# The 68 Multi-PIE landmark vertices of the ICT Face Model (its README, "Facial Landmarks"); used
# when a topology of ICT's size carries no "multipie68" landmark set (a bare from_obj topology).
ICT_MULTIPIE68_VERTICES = np.array([
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443,
    268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147,
    4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081,
    0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966,
], dtype=np.int32)
ICT_NUM_VERTICES = 26719
ICT_SKIN_FACES = (0, 11144)  # face [0, 9230) + head/neck [9230, 11144)
ICT_EYEBALL_FACES = (21496, 24692)  # eyeball left + right (sclera and iris)

# MEDIAPIPE_MIRROR[i]: the landmark that mirrors landmark i across the mid-plane (x → −x). Computed
# from the canonical mesh (mirror x, nearest vertex: ≤ 2e-6 cm off everywhere; an involution; the
# 28 mid-line points map to themselves); tests recompute it from the file. Iris: centre 468 ↔ 473,
# rim points 469–472 ↔ 476, 475, 474, 477.
MEDIAPIPE_MIRROR = np.array([
    0, 1, 2, 248, 4, 5, 6, 249, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
    250, 251, 252, 253, 254, 255, 256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269,
    270, 271, 272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287, 288, 289,
    290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309,
    310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 323, 94, 324, 325, 326, 327, 328,
    329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 341, 342, 343, 344, 345, 346, 347, 348,
    349, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 360, 361, 362, 363, 364, 365, 366, 367, 368,
    369, 370, 371, 372, 373, 374, 375, 376, 377, 378, 379, 151, 152, 380, 381, 382, 383, 384, 385, 386,
    387, 388, 389, 390, 164, 391, 392, 393, 168, 394, 395, 396, 397, 398, 399, 175, 400, 401, 402, 403,
    404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 195, 419, 197, 420, 199,
    200, 421, 422, 423, 424, 425, 426, 427, 428, 429, 430, 431, 432, 433, 434, 435, 436, 437, 438, 439,
    440, 441, 442, 443, 444, 445, 446, 447, 448, 449, 450, 451, 452, 453, 454, 455, 456, 457, 458, 459,
    460, 461, 462, 463, 464, 465, 466, 467, 3, 7, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69,
    70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89,
    90, 91, 92, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110,
    111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130,
    131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150,
    153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 165, 166, 167, 169, 170, 171, 172, 173, 174,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 196,
    198, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219,
    220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 473, 476, 475, 474, 477, 468, 471, 470, 469, 472,
], dtype=np.int32)

MEDIAPIPE_FIT = FitSchedule(stiffness=(100.0, 30.0, 10.0, 5.0, 3.0), landmark=3.0)

MULTIPIE68_INNER = slice(17, 68)
MULTIPIE68_JAW = slice(0, 17)


@dataclass
class CanonicalFace:
    points: np.ndarray  # (468 | 478, 3) float64, cm
    triangles: np.ndarray  # (898, 3) int, the face mesh (iris triangles left out)


def read_canonical_face(canonical_obj: str | Path, iris_obj: str | Path | None = None) -> CanonicalFace:
    """MediaPipe's canonical face (468 points), with the 10 iris points from ``iris_obj`` when given."""
    canonical = read_obj(canonical_obj)
    if len(canonical.points) != NUM_FACE_POINTS:
        raise ToposError(f"{canonical_obj}: expected MediaPipe's canonical face with {NUM_FACE_POINTS} vertices, "
                         f"got {len(canonical.points)}")
    if (canonical.face_vertex_counts != 3).any():
        raise ToposError(f"{canonical_obj}: MediaPipe's canonical face is all triangles; this file is not")
    points = canonical.points.astype(np.float64)
    if iris_obj is not None:
        with_iris = read_obj(iris_obj)
        if len(with_iris.points) != NUM_POINTS_WITH_IRIS:
            raise ToposError(f"{iris_obj}: expected MediaPipe's face model with iris ({NUM_POINTS_WITH_IRIS} vertices), "
                             f"got {len(with_iris.points)}")
        offset = np.abs(with_iris.points[:NUM_FACE_POINTS] - canonical.points).max()
        if offset > 1e-3:
            raise ToposError(f"{iris_obj}: its first {NUM_FACE_POINTS} vertices differ from {canonical_obj} "
                             f"(up to {offset:.3g} cm); not the matching MediaPipe face model")
        points = with_iris.points.astype(np.float64)
    return CanonicalFace(points, canonical.face_vertex_indices.reshape(-1, 3).astype(np.int64))


def mirror_map(points: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """(V,) index of each point's mirror image (x → −x, nearest point); raises if that is not exact."""
    from scipy.spatial import cKDTree

    distance, partner = cKDTree(points).query(points * np.array([-1.0, 1.0, 1.0]))
    if distance.max() > tolerance or (partner[partner] != np.arange(len(points))).any():
        raise ToposError(f"points are not left/right symmetric (worst mirror mismatch {distance.max():.3g})")
    return partner.astype(np.int32)


def _faces_triangles(topology: ReferenceTopology, face_ranges: list[tuple[int, int]]) -> np.ndarray:
    triangles, face_of = topology.triangles()
    keep = np.zeros(len(face_of), bool)
    for start, stop in face_ranges:
        keep |= (face_of >= start) & (face_of < stop)
    return triangles[keep]


def skin_triangles(topology: ReferenceTopology) -> np.ndarray:
    """(T, 3) vertex ids of the skin: sub-meshes ``face`` + ``head_neck`` (ICT's ranges for a bare ICT mesh)."""
    named = {sm.name: sm for sm in topology.submeshes}
    ranges = [(named[n].face_start, named[n].face_stop) for n in ("face", "head_neck") if n in named]
    if not ranges:
        if topology.num_points != ICT_NUM_VERTICES:
            raise ToposError(f"topology {topology.name!r} has no 'face' sub-mesh to put the MediaPipe landmarks on")
        ranges = [ICT_SKIN_FACES]
    return _faces_triangles(topology, ranges)


def iris_triangles(topology: ReferenceTopology) -> np.ndarray | None:
    """(T, 3) vertex ids of the faces whose material names an iris (ICT: ``M_IrisLeft/Right``), or None."""
    ranges = [(m.face_start, m.face_stop) for m in topology.materials if "iris" in m.name.lower()]
    return _faces_triangles(topology, ranges) if ranges else None


def eyeball_triangles(topology: ReferenceTopology) -> np.ndarray | None:
    """(T, 3) vertex ids of the eyeballs (sub-meshes ``eyeball*``; ICT's range for a bare ICT mesh), or None."""
    ranges = [(sm.face_start, sm.face_stop) for sm in topology.submeshes if sm.name.startswith("eyeball")]
    if not ranges and topology.num_points == ICT_NUM_VERTICES:
        ranges = [ICT_EYEBALL_FACES]
    return _faces_triangles(topology, ranges) if ranges else None


def multipie68_points(topology: ReferenceTopology) -> np.ndarray:
    """(68, 3) the topology's Multi-PIE landmarks on its rest shape."""
    points = topology.rest_points.astype(np.float64)
    if "multipie68" in topology.landmarks:
        landmarks = topology.landmarks["multipie68"]
        if len(landmarks) != 68:
            raise ToposError(f"topology {topology.name!r}: landmark set 'multipie68' has {len(landmarks)} points, not 68")
        return landmarks.evaluate(points)
    if topology.num_points == ICT_NUM_VERTICES:
        return points[ICT_MULTIPIE68_VERTICES]
    raise ToposError(f"topology {topology.name!r} has no 'multipie68' landmark set to register MediaPipe's face to")


@dataclass
class MediapipeRegistration:
    """The result of :func:`register_mediapipe`, with the intermediate shapes for checks and plots."""

    landmarks: LandmarkSet  # mp000.. on the reference, barycentric
    similarity: Similarity  # canonical → reference frame
    aligned: np.ndarray  # (V, 3) canonical points after the similarity
    fitted: np.ndarray  # (V, 3) after the non-rigid fit (iris points moved along)
    surface_points: np.ndarray  # (V, 3) the embedded points on the reference rest shape
    on_iris: np.ndarray  # (V,) bool: embedded on the iris surface rather than the skin


def register_mediapipe(topology: ReferenceTopology, canonical_obj: str | Path,
                       iris_obj: str | Path | None = None,
                       schedule: FitSchedule = MEDIAPIPE_FIT, offsets: np.ndarray | None = None) -> MediapipeRegistration:
    """Register MediaPipe's canonical face to ``topology``'s rest shape; see the module notes.

    ``offsets`` (≥ 468, 3) cm in the topology's frame: where the detector's points really lie relative to
    the registered ones (:mod:`~topos_server.assets.landmark_offsets`, fitted on ICT heads); each face
    point moves by its offset and is snapped onto the skin again. Iris points take none."""
    face = read_canonical_face(canonical_obj, iris_obj)
    rest = topology.rest_points.astype(np.float64)
    targets68 = multipie68_points(topology)  # (68, 3)

    inner_ids = MEDIAPIPE_TO_MULTIPIE68[MULTIPIE68_INNER]
    inner_targets = targets68[MULTIPIE68_INNER]
    similarity = umeyama(face.points[inner_ids], inner_targets)
    aligned = similarity.apply(face.points)  # (V, 3)

    skin = TriangleSurface(rest, skin_triangles(topology))
    mesh_points = aligned[:NUM_FACE_POINTS]
    fitted_face = fit_mesh_to_surface(mesh_points, face.triangles, skin, inner_ids, inner_targets, schedule)
    hits = skin.closest(fitted_face)
    triangle, barycentric, on_skin = hits.triangle, hits.barycentric, hits.points
    if offsets is not None:
        face_offsets = np.asarray(offsets, np.float64)[:NUM_FACE_POINTS]  # (468, 3)
        moved = np.linalg.norm(face_offsets, axis=1) > 0
        moved_hits = skin.closest(on_skin[moved] + face_offsets[moved])
        triangle, barycentric, on_skin = triangle.copy(), barycentric.copy(), on_skin.copy()
        triangle[moved], barycentric[moved], on_skin[moved] = (moved_hits.triangle, moved_hits.barycentric,
                                                               moved_hits.points)
    triangle_vertices = [skin.triangles[triangle]]  # (468, 3)
    weights = [barycentric]
    surface_points = [on_skin]
    fitted = [fitted_face]

    if len(face.points) > NUM_FACE_POINTS:
        iris_hits = _embed_iris(topology, aligned, fitted_face, similarity)
        triangle_vertices.append(iris_hits[0])
        weights.append(iris_hits[1])
        surface_points.append(iris_hits[2])
        fitted.append(iris_hits[3])

    weights_f32 = np.concatenate(weights).astype(np.float32)
    weights_f32 /= weights_f32.sum(1, keepdims=True)
    names = [f"mp{i:03d}" for i in range(len(face.points))]
    landmarks = LandmarkSet(names, np.concatenate(triangle_vertices).astype(np.int32), weights_f32)
    on_iris = np.arange(len(face.points)) >= NUM_FACE_POINTS
    return MediapipeRegistration(landmarks, similarity, aligned, np.concatenate(fitted),
                                 np.concatenate(surface_points), on_iris)


def _embed_iris(topology: ReferenceTopology, aligned: np.ndarray, fitted_face: np.ndarray, similarity: Similarity):
    """Iris points 468–477 → (triangle vertex ids, barycentrics, surface points, moved points).

    Per eye, the five points (centre, then four rim points) move together: the centre goes to the
    centre of the reference's iris as seen from the front (the mean of its iris vertices there) or,
    without an iris material, moves with the fitted face around it; the rim keeps MediaPipe's
    radius (×scale). All five are then cast along the viewing direction onto the eyeball's front
    surface (the cornea over the iris).
    """
    rest = topology.rest_points.astype(np.float64)
    forward = similarity.rotation @ np.array([0.0, 0.0, 1.0])  # the canonical face looks down +Z
    iris_points = aligned[NUM_FACE_POINTS:]  # (10, 3)
    centres = iris_points[[0, 5]]  # (2, 3)
    moved_centres = centres + inverse_distance_displacement(aligned[:NUM_FACE_POINTS], fitted_face - aligned[:NUM_FACE_POINTS], centres)
    iris_ids = iris_triangles(topology)
    if iris_ids is not None:
        iris_vertices = rest[np.unique(iris_ids)]  # (I, 3)
        offsets = iris_vertices[None] - moved_centres[:, None]  # (2, I, 3)
        across = offsets - (offsets @ forward)[..., None] * forward  # offsets in the view plane
        near = np.linalg.norm(across, axis=-1) < 1.5 * similarity.scale  # (2, I): that eye's iris
        for eye in range(2):
            if near[eye].any():
                moved_centres[eye] += across[eye][near[eye]].mean(0)
    moved = iris_points + np.repeat(moved_centres - centres, 5, axis=0)  # (10, 3)
    eyeball_ids = eyeball_triangles(topology)
    surface = TriangleSurface(rest, eyeball_ids if eyeball_ids is not None else skin_triangles(topology))
    reach = 2.0 * np.ptp(rest, axis=0).max()
    hits, _ = surface.ray_cast(moved + reach * forward, -forward)
    return surface.triangles[hits.triangle], hits.barycentric, hits.points, moved


def embed_mediapipe_landmarks(topology: ReferenceTopology, canonical_obj: str | Path,
                              iris_obj: str | Path | None = None, offsets: np.ndarray | None = None) -> LandmarkSet:
    """MediaPipe's landmarks ``mp000``..``mp467`` (..``mp477`` with ``iris_obj``) as barycentric
    points on ``topology``'s skin (iris points on its irises), moved by ``offsets`` (see :func:`register_mediapipe`)."""
    return register_mediapipe(topology, canonical_obj, iris_obj, offsets=offsets).landmarks
