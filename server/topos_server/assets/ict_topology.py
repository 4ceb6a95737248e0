"""The ICT Face Model Light as a TOPOS :class:`ReferenceTopology`.

Built once by ``topos assets import`` from ``generic_neutral_mesh.obj(.xz)`` and ``vertex_indices.json``
(ICT-FaceKit, MIT, © 2020 USC Institute for Creative Technologies) and stored in the asset cache as
``ict/topology.npz``.

- Sub-meshes: the 17 parts of the ICT README, with its vertex and polygon ranges (inclusive there,
  half-open here).
- Output meshes: the face, head/neck, mouth socket and both eye sockets share vertices (their faces
  index the face's vertices), so they form one vertex-closed mesh ``"skin"``; every other part is
  closed on its own and becomes a mesh of its own name.
- Subdivision: ``catmullClark`` for the smooth organic surfaces (skin, gums/tongue, teeth, eyeballs),
  ``none`` for the thin cards and shells (lacrimal fluid, eye blend, eye occlusion, eyelashes), whose
  shape would shrink under subdivision. The SDK authors normals only on ``none`` meshes.
- Materials: the OBJ's ``usemtl`` runs (``M_Face``, ``M_BackHead``, ``M_GumsTongue``, …).
- Landmarks: ``"multipie68"`` (the README's 68 vertex ids, iBUG order: subject's right first);
  ``"mediapipe"`` is added by the importer from the MediaPipe correspondence.
- Vertex groups from ``vertex_indices.json``: ``fitting``, ``rigid``, ``lap_rigid``, ``landmarks``,
  ``rigid_landmarks`` (vertex ids of the 9 rigid landmarks), the jawlines and ``narrow_face``.
- Symmetry: mirror x → the matching vertex of the same part (or of its left/right partner), an
  involution; vertices on the mid-plane map to themselves. See :func:`compute_symmetry`.

Units cm, +Y up, the face looks down +Z, the subject's left is +X.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from topos_sdk.obj_reader import ObjMesh, read_obj
from topos_sdk.topology import LandmarkSet, MaterialRange, ReferenceTopology, SubMesh

ICT_NUM_VERTICES = 26719
ICT_NUM_FACES = 26384
ICT_NAME = "ict_face_model_light"

# (name, first vertex, last vertex, first polygon, last polygon) — inclusive, as in the ICT README
ICT_SUBMESH_RANGES = [
    ("face", 0, 9408, 0, 9229),
    ("head_neck", 9409, 11247, 9230, 11143),
    ("mouth_socket", 11248, 13293, 11144, 13225),
    ("eye_socket_left", 13294, 13677, 13226, 13629),
    ("eye_socket_right", 13678, 14061, 13630, 14033),
    ("gums_tongue", 14062, 17038, 14034, 17005),
    ("teeth", 17039, 21450, 17006, 21495),
    ("eyeball_left", 21451, 23020, 21496, 23093),
    ("eyeball_right", 23021, 24590, 23094, 24691),
    ("lacrimal_fluid_left", 24591, 24794, 24692, 24854),
    ("lacrimal_fluid_right", 24795, 24998, 24855, 25017),
    ("eye_blend_left", 24999, 25022, 25018, 25032),
    ("eye_blend_right", 25023, 25046, 25033, 25047),
    ("eye_occlusion_left", 25047, 25198, 25048, 25175),
    ("eye_occlusion_right", 25199, 25350, 25176, 25303),
    ("eyelashes_left", 25351, 26034, 25304, 25843),
    ("eyelashes_right", 26035, 26718, 25844, 26383),
]

SKIN_PARTS = ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right")
SMOOTH_PARTS = SKIN_PARTS + ("gums_tongue", "teeth", "eyeball_left", "eyeball_right")

# iBUG / Multi-PIE 68 markup; "right" is the subject's right (−X)
MULTIPIE68_NAMES = (
    [f"jaw{i:02d}" for i in range(17)]
    + [f"brow_right{i}" for i in range(5)] + [f"brow_left{i}" for i in range(5)]
    + [f"nose_bridge{i}" for i in range(4)] + [f"nose_base{i}" for i in range(5)]
    + [f"eye_right{i}" for i in range(6)] + [f"eye_left{i}" for i in range(6)]
    + [f"lip_outer{i:02d}" for i in range(12)] + [f"lip_inner{i}" for i in range(8)]
)

# from the ICT README ("Facial Landmarks")
JAWLINE_RIGHT = [1278, 1272, 12, 1834, 243, 781, 2199, 1447]
JAWLINE_LEFT = [3661, 4390, 3022, 2484, 4036, 2253, 3490, 3496]
JAWLINE_RIGHT_EXTENDED = [1280, 1278, 1275, 1272, 1248, 12, 820, 1834, 1902, 243, 844, 781, 1673, 2199, 801, 1447, 800]
JAWLINE_LEFT_EXTENDED = [3041, 3661, 3042, 4390, 3880, 3022, 3085, 2484, 4102, 4036, 3061, 2253, 3466, 3490, 3493, 3496, 3498]
NARROW_FACE_VERTEX_STOP = 6706  # "Narrow face area" [0:6705]

# vertices this close to the mid-plane (cm) are their own mirror image
MIDPLANE_TOLERANCE_CM = 1e-3


def ict_submeshes() -> list[SubMesh]:
    out = []
    for name, v0, v1, f0, f1 in ICT_SUBMESH_RANGES:
        out.append(SubMesh(
            name=name, vertex_start=v0, vertex_stop=v1 + 1, face_start=f0, face_stop=f1 + 1,
            mesh="skin" if name in SKIN_PARTS else None,
            subdivision_scheme="catmullClark" if name in SMOOTH_PARTS else "none",
        ))
    return out


def mirror_partner(name: str) -> str:
    """The sub-mesh a part mirrors into: its left/right twin, or itself."""
    if name.endswith("_left"):
        return name[: -len("_left")] + "_right"
    if name.endswith("_right"):
        return name[: -len("_right")] + "_left"
    return name


# ---- symmetry -------------------------------------------------------------------------------------
def _pair_mirrored(points_a: np.ndarray, points_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs (i in a, j in b) with mirror(a_i) ≈ b_j.

    Mutual nearest neighbours first; the rest by an optimal assignment on mirrored distances.
    Returns (P,) index arrays into a and b; vertices left over (unequal counts) are not paired.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    flip = np.array([-1.0, 1.0, 1.0])
    a_mirrored = points_a * flip  # (A, 3)
    _, nn_ab = cKDTree(points_b).query(a_mirrored)  # (A,) nearest b of each mirrored a
    _, nn_ba = cKDTree(a_mirrored).query(points_b)  # (B,) nearest mirrored a of each b
    ia = np.arange(len(points_a))
    mutual = nn_ba[nn_ab] == ia
    pairs_a, pairs_b = [ia[mutual]], [nn_ab[mutual]]
    rest_a = ia[~mutual]
    rest_b = np.setdiff1d(np.arange(len(points_b)), nn_ab[mutual])
    if len(rest_a) and len(rest_b):
        cost = np.linalg.norm(a_mirrored[rest_a, None, :] - points_b[None, rest_b, :], axis=-1)  # (Ra, Rb)
        ra, rb = linear_sum_assignment(cost)
        pairs_a.append(rest_a[ra])
        pairs_b.append(rest_b[rb])
    return np.concatenate(pairs_a), np.concatenate(pairs_b)


def compute_symmetry(points: np.ndarray, submeshes: list[SubMesh],
                     midplane_tolerance: float = MIDPLANE_TOLERANCE_CM) -> np.ndarray:
    """(N,) int32 ``symmetry[i]`` = the vertex mirroring ``i`` across x = 0; an involution.

    A part with a ``_left``/``_right`` twin pairs with the twin; any other part pairs its −X half
    with its +X half, and its mid-plane vertices (|x| ≤ tolerance) map to themselves. Vertices that
    find no partner (unequal halves) also map to themselves. Sub-meshes sharing a vertex range
    (none in ICT) are handled once.
    """
    points = np.asarray(points, np.float64)
    symmetry = np.arange(len(points), dtype=np.int32)
    by_name = {sm.name: sm for sm in submeshes}
    done: set[str] = set()
    for sm in submeshes:
        if sm.name in done:
            continue
        twin = by_name.get(mirror_partner(sm.name), sm)
        done.update({sm.name, twin.name})
        ids_a = np.arange(sm.vertex_start, sm.vertex_stop)
        if twin is sm:
            x = points[ids_a, 0]
            ids_b = ids_a[x > midplane_tolerance]
            ids_a = ids_a[x < -midplane_tolerance]
        else:
            ids_b = np.arange(twin.vertex_start, twin.vertex_stop)
        if not len(ids_a) or not len(ids_b):
            continue
        pa, pb = _pair_mirrored(points[ids_a], points[ids_b])
        symmetry[ids_a[pa]] = ids_b[pb]
        symmetry[ids_b[pb]] = ids_a[pa]
    return symmetry


def symmetry_mismatch(points: np.ndarray, symmetry: np.ndarray) -> np.ndarray:
    """(N,) distance between each vertex's mirror image and its symmetric vertex (same units)."""
    points = np.asarray(points, np.float64)
    return np.linalg.norm(points * np.array([-1.0, 1.0, 1.0]) - points[symmetry], axis=1)


# ---- building -------------------------------------------------------------------------------------
def check_ict_mesh(mesh: ObjMesh, where: str) -> None:
    """Raise ``ValueError`` unless the mesh has the ICT Face Model Light counts."""
    n, f = len(mesh.points), len(mesh.face_vertex_counts)
    if (n, f) != (ICT_NUM_VERTICES, ICT_NUM_FACES):
        raise ValueError(f"{where}: {n} vertices / {f} faces; the ICT Face Model Light has "
                         f"{ICT_NUM_VERTICES} / {ICT_NUM_FACES}")
    if mesh.uv_values is None:
        raise ValueError(f"{where}: has no texture coordinates")


def build_ict_topology(neutral: ObjMesh | str | os.PathLike, vertex_indices: dict | str | os.PathLike,
                       symmetry: bool = True) -> ReferenceTopology:
    """The ICT ReferenceTopology from the neutral OBJ (or its parsed mesh) and ``vertex_indices.json``."""
    mesh = neutral if isinstance(neutral, ObjMesh) else read_obj(neutral)
    check_ict_mesh(mesh, str(neutral) if not isinstance(neutral, ObjMesh) else "neutral mesh")
    if not isinstance(vertex_indices, dict):
        vertex_indices = json.loads(Path(vertex_indices).read_text())

    submeshes = ict_submeshes()
    landmark_ids = np.asarray(vertex_indices["idx_to_landmark_verts"], np.int32)  # (68,)
    if landmark_ids.shape != (68,):
        raise ValueError(f"vertex_indices.json: idx_to_landmark_verts has {landmark_ids.size} entries, expected 68")
    groups = {
        "fitting": vertex_indices["idx_to_fitting_verts"],
        "rigid": vertex_indices["idx_to_rigid_verts"],
        "lap_rigid": vertex_indices["idx_to_lap_rigid_verts"],
        "landmarks": landmark_ids,
        "rigid_landmarks": landmark_ids[np.asarray(vertex_indices["idx_to_rigid_landmark_idx"], np.int64)],
        "jawline_right": JAWLINE_RIGHT,
        "jawline_left": JAWLINE_LEFT,
        "jawline_right_extended": JAWLINE_RIGHT_EXTENDED,
        "jawline_left_extended": JAWLINE_LEFT_EXTENDED,
        "narrow_face": np.arange(NARROW_FACE_VERTEX_STOP),
    }
    groups = {k: np.asarray(v, np.int32) for k, v in groups.items()}
    for name, ids in groups.items():
        if ids.size and (ids.min() < 0 or ids.max() >= ICT_NUM_VERTICES):
            raise ValueError(f"vertex_indices.json: group {name!r} has vertex ids out of range")

    topology = ReferenceTopology(
        name=ICT_NAME,
        rest_points=mesh.points,
        face_vertex_counts=mesh.face_vertex_counts,
        face_vertex_indices=mesh.face_vertex_indices,
        uv_values=mesh.uv_values,
        uv_indices=mesh.uv_indices,
        submeshes=submeshes,
        materials=[MaterialRange(n, f0, f1) for n, f0, f1 in mesh.face_groups("usemtl")],
        vertex_groups=groups,
        landmarks={"multipie68": LandmarkSet.from_vertex_ids(MULTIPIE68_NAMES, landmark_ids)},
        symmetry=compute_symmetry(mesh.points, submeshes) if symmetry else None,
        units="cm",
        info={
            "source": "ICT-FaceKit, ICT Face Model Light",
            "license": "MIT, Copyright (c) 2020 USC Institute for Creative Technologies",
            "up_axis": "Y",
            "front": "+Z",
            "expressions": list(vertex_indices.get("expressions", [])),
        },
    )
    topology.mesh_parts()  # raises if an output mesh is not vertex-closed
    return topology
