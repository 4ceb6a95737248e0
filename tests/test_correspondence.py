"""MediaPipe FaceMesh ↔ ICT correspondence, checked on the real meshes from ../shared."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from topos_server.assets import correspondence as corr
from topos_server.geometry.registration import TriangleSurface, closest_point_barycentrics, umeyama, vertex_normals

from conftest import MEDIAPIPE_CANONICAL, MEDIAPIPE_WITH_IRIS, needs_ict_and_mediapipe
from topos_sdk.errors import ToposError
from topos_sdk.topology import SubMesh

EYEBALL_VERTICES = (21451, 24591)
MM_PER_CM = 10.0

# MediaPipe's eye and lip contours (subject's right to left); test_contours_are_mesh_paths checks
# each is a path of edges of the canonical mesh
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
UPPER_OUTER_LIP = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LOWER_OUTER_LIP = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
RIGHT_UPPER_LID = [33, 246, 161, 160, 159, 158, 157, 173, 133]
RIGHT_LOWER_LID = [33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_UPPER_LID = [362, 398, 384, 385, 386, 387, 388, 466, 263]
LEFT_LOWER_LID = [362, 382, 381, 380, 374, 373, 390, 249, 263]
CONTOURS = [UPPER_INNER_LIP, LOWER_INNER_LIP, UPPER_OUTER_LIP, LOWER_OUTER_LIP,
            RIGHT_UPPER_LID, RIGHT_LOWER_LID, LEFT_UPPER_LID, LEFT_LOWER_LID]

pytestmark = needs_ict_and_mediapipe


@pytest.fixture(scope="module")
def canonical():
    return corr.read_canonical_face(MEDIAPIPE_CANONICAL, MEDIAPIPE_WITH_IRIS)


def ict68(topology):
    return topology.rest_points.astype(np.float64)[corr.ICT_MULTIPIE68_VERTICES]


# ---- geometry primitives ---------------------------------------------------------------------
def test_closest_point_barycentrics_are_exact():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(300, 3)) for _ in range(3))
    queries = rng.normal(size=(300, 3)) * 2.0
    bary = closest_point_barycentrics(queries, a, b, c)
    assert (bary >= 0).all() and np.allclose(bary.sum(1), 1.0)
    exact = np.linalg.norm(bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c - queries, axis=1)
    # brute force over a fine barycentric grid: never closer than the exact answer, and close to it
    s, t = np.meshgrid(np.linspace(0, 1, 121), np.linspace(0, 1, 121))
    keep = s + t <= 1
    grid = np.stack([1 - s[keep] - t[keep], s[keep], t[keep]], 1)  # (G, 3)
    samples = np.einsum("gk,qkx->qgx", grid, np.stack([a, b, c], 1))
    brute = np.linalg.norm(samples - queries[:, None], axis=-1).min(1)
    assert (brute >= exact - 1e-9).all()
    assert np.abs(brute - exact).max() < 0.05
    # the vertex, edge and face regions all occur in this sample
    zeros = (bary < 1e-12).sum(1)
    assert {0, 1, 2} <= set(zeros.tolist())


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))
    source = rng.normal(size=(40, 3))
    target = 1.7 * source @ rotation.T + np.array([3.0, -2.0, 0.5])
    sim = umeyama(source, target)
    assert sim.scale == pytest.approx(1.7)
    assert np.allclose(sim.rotation, rotation) and np.allclose(sim.apply(source), target)


def test_closest_point_queries_match_brute_force_on_the_ict_skin(ict_neutral, mediapipe_registration):
    surface = TriangleSurface(ict_neutral.rest_points, corr.skin_triangles(ict_neutral))
    rng = np.random.default_rng(2)
    queries = mediapipe_registration.fitted[:468:12] + rng.normal(scale=0.3, size=(39, 3))  # near and off the skin
    hits = surface.closest(queries)
    corners = surface.points[surface.triangles]  # (T, 3, 3)
    for chunk in np.array_split(np.arange(len(queries)), 3):
        bary = closest_point_barycentrics(queries[chunk, None], corners[None, :, 0], corners[None, :, 1], corners[None, :, 2])
        brute = np.linalg.norm(np.einsum("qtk,tkx->qtx", bary, corners) - queries[chunk, None], axis=-1).min(1)
        assert np.allclose(hits.distance[chunk], brute, atol=1e-9)
    assert np.allclose(np.linalg.norm(hits.points - queries, axis=1), hits.distance)


def test_ray_cast_hits_the_front_of_a_surface(ict_neutral):
    eyeballs = corr.eyeball_triangles(ict_neutral)
    surface = TriangleSurface(ict_neutral.rest_points, eyeballs)
    centre = ict_neutral.rest_points[EYEBALL_VERTICES[0]:EYEBALL_VERTICES[1]].mean(0)
    hits, hit = surface.ray_cast(np.array([[centre[0] + 3.2, centre[1], 50.0]]), np.array([0.0, 0.0, -1.0]))
    assert hit.all()
    # the first hit from the front is the front-most surface point on that line
    assert hits.points[0, 2] == pytest.approx(ict_neutral.rest_points[eyeballs].reshape(-1, 3)[:, 2].max(), abs=0.3)


# ---- MediaPipe tables ------------------------------------------------------------------------
def test_mirror_map_is_recomputed_from_the_canonical_mesh(canonical):
    mirror = corr.mirror_map(canonical.points)
    assert np.array_equal(mirror, corr.MEDIAPIPE_MIRROR)
    assert np.array_equal(mirror[mirror], np.arange(478))
    assert mirror[468] == 473 and mirror[1] == 1  # iris centres; nose tip on the mid-line
    assert np.abs(canonical.points[mirror] * [-1, 1, 1] - canonical.points).max() < 1e-4


def test_contours_are_mesh_paths(canonical):
    edges = {tuple(sorted(e)) for tri in canonical.triangles.tolist() for e in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0]))}
    for contour in CONTOURS:
        assert all(tuple(sorted(pair)) in edges for pair in zip(contour[:-1], contour[1:])), contour
    upper = canonical.points[UPPER_INNER_LIP[1:-1], 1]
    lower = canonical.points[LOWER_INNER_LIP[1:-1], 1]
    assert (upper > lower).all()


def test_multipie68_mapping_matches_the_ict_landmarks_geometrically(canonical, ict_neutral):
    mapping = corr.MEDIAPIPE_TO_MULTIPIE68
    assert mapping.shape == (68,) and len(set(mapping.tolist())) == 68
    targets = ict68(ict_neutral)
    # mirror-consistent: the mirror partner of point i maps to the mirror partner of its MediaPipe point
    ibug_mirror = cKDTree(targets).query(targets * [-1, 1, 1])[1]
    assert np.array_equal(corr.MEDIAPIPE_MIRROR[mapping], mapping[ibug_mirror])
    inner = np.arange(17, 68)
    sim = umeyama(canonical.points[mapping[inner]], targets[inner])
    aligned = sim.apply(canonical.points[:468])
    distance = np.linalg.norm(aligned[mapping] - targets, axis=1)
    _, nearest3 = cKDTree(aligned).query(targets, k=3)
    features = np.arange(17, 60)  # brows, nose, eyes, outer lips
    assert all(mapping[i] in nearest3[i] for i in features), [i for i in features if mapping[i] not in nearest3[i]]
    inner_lips = np.arange(60, 68)
    assert distance[inner_lips].max() < 0.6
    assert set(mapping[inner_lips]) <= set(UPPER_INNER_LIP + LOWER_INNER_LIP)
    # jaw: points of MediaPipe's face oval, i.e. the canonical mesh's outline
    tri = canonical.triangles
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1)
    unique, counts = np.unique(e, axis=0, return_counts=True)
    outline = set(unique[counts == 1].ravel().tolist())
    assert set(mapping[:17].tolist()) <= outline


# ---- the embedding ---------------------------------------------------------------------------
def test_embedding_is_478_valid_barycentric_points_on_the_skin(ict_neutral, mediapipe_registration):
    lm = mediapipe_registration.landmarks
    assert lm.names == [f"mp{i:03d}" for i in range(478)]
    assert lm.vertices.shape == (478, 3) and lm.weights.shape == (478, 3)
    assert lm.vertices.dtype == np.int32 and lm.weights.dtype == np.float32
    assert (lm.weights >= 0).all() and (lm.weights <= 1).all()
    assert np.allclose(lm.weights.sum(1), 1.0, atol=1e-6)
    skin = corr.skin_triangles(ict_neutral)
    skin_rows = {tuple(t) for t in skin.tolist()}
    assert all(tuple(t) in skin_rows for t in lm.vertices[:468].tolist())  # each a real skin triangle
    assert ((lm.vertices[468:] >= EYEBALL_VERTICES[0]) & (lm.vertices[468:] < EYEBALL_VERTICES[1])).all()
    points = lm.evaluate(ict_neutral.rest_points.astype(np.float64))
    on_skin = TriangleSurface(ict_neutral.rest_points, skin).closest(points[:468])
    assert on_skin.distance.max() < 1e-5
    assert np.abs(points - mediapipe_registration.surface_points).max() < 1e-5
    # the fitted canonical face already lay on the skin: the projection moved it little
    moved = np.linalg.norm(mediapipe_registration.fitted[:468] - points[:468], axis=1)
    print(f"\nfit → skin projection: median {np.median(moved) * MM_PER_CM:.2f} mm, max {moved.max() * MM_PER_CM:.2f} mm")
    assert np.median(moved) < 0.05 and moved.max() < 0.3


def test_without_the_iris_file_the_468_face_points_are_the_same(ict_neutral, mediapipe_registration):
    lm = corr.embed_mediapipe_landmarks(ict_neutral, MEDIAPIPE_CANONICAL)
    assert len(lm) == 468 and lm.names[-1] == "mp467"
    assert np.array_equal(lm.vertices, mediapipe_registration.landmarks.vertices[:468])
    assert np.allclose(lm.weights, mediapipe_registration.landmarks.weights[:468])


def test_named_submeshes_give_the_same_embedding(ict_neutral, mediapipe_registration):
    named = dataclasses.replace(ict_neutral, submeshes=[
        SubMesh("face", 0, 9409, 0, 9230, mesh="skin"), SubMesh("head_neck", 9409, 11248, 9230, 11144, mesh="skin"),
        SubMesh("rest", 11248, 21451, 11144, 21496),
        SubMesh("eyeball_left", 21451, 23021, 21496, 23094), SubMesh("eyeball_right", 23021, 24591, 23094, 24692),
        SubMesh("extras", 24591, 26719, 24692, 26384)])
    lm = corr.embed_mediapipe_landmarks(named, MEDIAPIPE_CANONICAL, MEDIAPIPE_WITH_IRIS)
    assert np.array_equal(lm.vertices, mediapipe_registration.landmarks.vertices)
    assert np.allclose(lm.weights, mediapipe_registration.landmarks.weights)


def test_mirrored_landmarks_land_on_mirrored_points(ict_neutral, mediapipe_registration):
    points = mediapipe_registration.landmarks.evaluate(ict_neutral.rest_points.astype(np.float64))
    mismatch = np.linalg.norm(points[corr.MEDIAPIPE_MIRROR] * [-1, 1, 1] - points, axis=1) * MM_PER_CM
    print(f"\nmirror mismatch: max {mismatch.max():.3f} mm, mean {mismatch.mean():.4f} mm")
    assert mismatch.max() <= 2.0


def test_ict_landmarks_match_their_mediapipe_counterparts(ict_neutral, mediapipe_registration):
    points = mediapipe_registration.landmarks.evaluate(ict_neutral.rest_points.astype(np.float64))
    targets = ict68(ict_neutral)
    distance = np.linalg.norm(points[corr.MEDIAPIPE_TO_MULTIPIE68] - targets, axis=1) * MM_PER_CM
    rigid = np.linalg.norm(mediapipe_registration.aligned[corr.MEDIAPIPE_TO_MULTIPIE68] - targets, axis=1) * MM_PER_CM
    inner, jaw = distance[17:], distance[:17]
    print(f"\n68 landmarks on the neutral: inner (17–67) mean {inner.mean():.2f} mm, max {inner.max():.2f} mm; "
          f"jaw (0–16) mean {jaw.mean():.1f} mm; after the similarity alone: inner {rigid[17:].mean():.2f} mm")
    assert inner.mean() < 1.5 and inner.max() < 3.0
    assert inner.mean() < 0.5 * rigid[17:].mean()
    assert jaw.mean() < 15.0


def test_lips_and_eyelids_land_on_their_own_side(ict_neutral, mediapipe_registration):
    rest = ict_neutral.rest_points.astype(np.float64)
    points = mediapipe_registration.landmarks.evaluate(rest)
    # lips: the ICT mouth is closed (lips 0.8 mm apart), so check along the skin, which goes
    # around the mouth corner between the lips: nearer the ICT upper or lower inner-lip landmark?
    skin = corr.skin_triangles(ict_neutral)
    e = np.concatenate([skin[:, [0, 1]], skin[:, [1, 2]], skin[:, [2, 0]]])
    graph = csr_matrix((np.linalg.norm(rest[e[:, 0]] - rest[e[:, 1]], axis=1), (e[:, 0], e[:, 1])), shape=(len(rest),) * 2)
    upper_lip, lower_lip = corr.ICT_MULTIPIE68_VERTICES[[62, 66]]
    along_skin = dijkstra(graph.maximum(graph.T), indices=[upper_lip, lower_lip])  # (2, N)
    lm = mediapipe_registration.landmarks
    to_upper = (along_skin[0][lm.vertices] * lm.weights).sum(1)
    to_lower = (along_skin[1][lm.vertices] * lm.weights).sum(1)
    assert (to_upper < to_lower)[UPPER_INNER_LIP[1:-1]].all()
    assert (to_lower < to_upper)[LOWER_INNER_LIP[1:-1]].all()
    # eyelids: the ICT eyes are open; upper-lid points above the corner-to-corner line, lower below
    targets = ict68(ict_neutral)
    for (outer, inner), upper, lower in (((36, 39), RIGHT_UPPER_LID, RIGHT_LOWER_LID),
                                         ((42, 45), LEFT_UPPER_LID, LEFT_LOWER_LID)):
        a, b = targets[outer], targets[inner]

        def above_chord(ids):
            t = (points[ids, 0] - a[0]) / (b[0] - a[0])
            return points[ids, 1] > a[1] + t * (b[1] - a[1])

        assert above_chord(upper[1:-1]).all() and not above_chord(lower[1:-1]).any()
    # contours stay in order from the subject's right to left
    for contour in CONTOURS:
        assert (np.diff(points[contour, 0]) > 0).all(), contour


def test_fit_does_not_fold_the_canonical_mesh(canonical, mediapipe_registration):
    tri = canonical.triangles

    def face_normals(points):
        c = points[tri]
        n = np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    agreement = (face_normals(mediapipe_registration.aligned[:468]) * face_normals(mediapipe_registration.fitted[:468])).sum(1)
    assert (agreement > 0).all()
    assert vertex_normals(mediapipe_registration.fitted[:468], tri)[1, 2] > 0.9  # nose tip still faces +Z


def test_iris_points_sit_on_the_cornea_of_their_eye(ict_neutral, mediapipe_registration):
    points = mediapipe_registration.landmarks.evaluate(ict_neutral.rest_points.astype(np.float64))
    iris = points[468:].reshape(2, 5, 3)  # (eye, centre + 4 rim points, xyz)
    mp_iris = mediapipe_registration.aligned[468:].reshape(2, 5, 3)
    assert (np.sign(iris[:, :, 0]) == np.sign(mp_iris[:, :, 0])).all()  # each on its own side
    eyeballs = ict_neutral.rest_points[EYEBALL_VERTICES[0]:EYEBALL_VERTICES[1]].astype(np.float64)
    for eye in range(2):
        ball = eyeballs[np.sign(eyeballs[:, 0]) == np.sign(iris[eye, 0, 0])]
        # the centre is the front-most point of the eyeball (the cornea's apex), within 0.5 mm
        assert iris[eye, 0, 2] == pytest.approx(ball[:, 2].max(), abs=0.05)
        radius = np.linalg.norm(iris[eye, 1:, :2] - iris[eye, 0, :2], axis=1)
        mp_radius = np.linalg.norm(mp_iris[eye, 1:, :2] - mp_iris[eye, 0, :2], axis=1)
        assert np.allclose(radius, mp_radius, atol=0.01)  # the rim keeps MediaPipe's iris size
        assert (iris[eye, 1:, 2] < iris[eye, 0, 2]).all()  # the rim lies behind the apex


def test_runtime_fits_inside_the_import(ict_neutral):
    start = time.perf_counter()
    corr.embed_mediapipe_landmarks(ict_neutral, MEDIAPIPE_CANONICAL, MEDIAPIPE_WITH_IRIS)
    elapsed = time.perf_counter() - start
    print(f"\nembed_mediapipe_landmarks: {elapsed:.2f} s")
    assert elapsed < 20.0


# ---- bad input ---------------------------------------------------------------------------------
def test_wrong_files_raise_one_clear_error(ict_neutral, tmp_path):
    with pytest.raises(ToposError, match="468 vertices"):
        corr.embed_mediapipe_landmarks(ict_neutral, MEDIAPIPE_WITH_IRIS)
    with pytest.raises(ToposError, match="478 vertices"):
        corr.embed_mediapipe_landmarks(ict_neutral, MEDIAPIPE_CANONICAL, MEDIAPIPE_CANONICAL)
    shifted = tmp_path / "shifted_iris.obj"
    shifted.write_text("".join(
        f"v {x + 1.0} {y} {z}\n" for x, y, z in corr.read_canonical_face(MEDIAPIPE_CANONICAL, MEDIAPIPE_WITH_IRIS).points)
        + "f 1 2 3\n")
    with pytest.raises(ToposError, match="differ"):
        corr.embed_mediapipe_landmarks(ict_neutral, MEDIAPIPE_CANONICAL, shifted)


def test_topology_without_face_or_landmarks_is_refused(quad_topology):
    with pytest.raises(ToposError, match="multipie68"):
        corr.embed_mediapipe_landmarks(quad_topology, MEDIAPIPE_CANONICAL)
