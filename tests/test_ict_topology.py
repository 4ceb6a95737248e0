"""The ICT reference topology built by ``topos assets import``, checked against the ICT-FaceKit files."""

import json
import re

import numpy as np
import pytest
from conftest import ICT_SOURCE
from topos_server.assets.ict_topology import (
    ICT_SUBMESH_RANGES,
    MULTIPIE68_NAMES,
    SKIN_PARTS,
    compute_symmetry,
    mirror_partner,
    symmetry_mismatch,
)

from topos_sdk.obj_reader import read_obj
from topos_sdk.topology import ReferenceTopology, SubMesh

MODEL = ICT_SOURCE / "FaceXModel"


@pytest.fixture(scope="module")
def topology(ict_cache) -> ReferenceTopology:
    return ict_cache.ict_topology()


@pytest.fixture(scope="module")
def neutral_obj():
    return read_obj(MODEL / "generic_neutral_mesh.obj.xz")


@pytest.fixture(scope="module")
def vertex_indices() -> dict:
    return json.loads((MODEL / "vertex_indices.json").read_text())


def readme_geometry_table() -> list[tuple[str, int, int, int, int]]:
    """(name, v0, v1, f0, f1) rows #0..#16 of the README's "Face Model Topology" table."""
    text = (ICT_SOURCE / "README.md").read_text()
    table = text.split("### Face Model Topology", 1)[1].split("###", 1)[0]
    rows = re.findall(r"\|\s*#(\d+)\s*\|\s*([^|]+?)\s*\|\s*\[(\d+):(\d+)\]\s*\|\s*\[(\d+):(\d+)\]", table)
    return [(name, int(v0), int(v1), int(f0), int(f1)) for _, name, v0, v1, f0, f1 in rows]


def test_counts_and_connectivity_equal_the_obj(topology, neutral_obj):
    assert topology.num_points == 26719
    assert topology.num_faces == 26384
    # quads (and the few triangles) exactly as in the OBJ, same order, same UVs
    np.testing.assert_array_equal(topology.face_vertex_counts, neutral_obj.face_vertex_counts)
    np.testing.assert_array_equal(topology.face_vertex_indices, neutral_obj.face_vertex_indices)
    np.testing.assert_array_equal(topology.uv_indices, neutral_obj.uv_indices)
    np.testing.assert_array_equal(topology.uv_values, neutral_obj.uv_values)
    np.testing.assert_array_equal(topology.rest_points, neutral_obj.points)
    assert (topology.face_vertex_counts == 4).sum() > 0.97 * topology.num_faces
    assert topology.units == "cm"


def test_seventeen_submeshes_with_the_readme_ranges(topology):
    table = readme_geometry_table()
    assert len(table) == 17
    assert [sm.name for sm in topology.submeshes] == [name for name, *_ in ICT_SUBMESH_RANGES]
    for sm, (readme_name, v0, v1, f0, f1) in zip(topology.submeshes, table):
        assert sm.name.split("_") == [w for w in readme_name.lower().split() if w != "and"]
        assert (sm.vertex_start, sm.vertex_stop, sm.face_start, sm.face_stop) == (v0, v1 + 1, f0, f1 + 1)
    # together they tile the whole mesh
    assert sum(sm.vertex_count for sm in topology.submeshes) == topology.num_points
    assert sum(sm.face_count for sm in topology.submeshes) == topology.num_faces


def test_output_meshes_are_vertex_closed(topology):
    parts = {p.name: p for p in topology.mesh_parts()}
    assert [s.name for s in parts["skin"].submeshes] == list(SKIN_PARTS)
    assert len(parts) == 17 - len(SKIN_PARTS) + 1
    offsets = topology.face_offsets
    for part in parts.values():
        used = topology.face_vertex_indices[offsets[part.face_start]:offsets[part.face_stop]]
        # closed and every vertex of the range used by a face of the part
        assert np.array_equal(np.unique(used), np.arange(part.vertex_start, part.vertex_stop)), part.name
    assert [m.name for m in parts["skin"].materials] == ["M_Face", "M_BackHead"]
    assert [m.name for m in parts["eyeball_left"].materials] == ["M_ScleraLeft", "M_IrisLeft"]
    assert parts["skin"].subdivision_scheme == "catmullClark"
    assert parts["eyelashes_left"].subdivision_scheme == "none"


def test_landmarks_and_groups_from_vertex_indices(topology, vertex_indices):
    lm = topology.landmarks["multipie68"]
    assert lm.names == MULTIPIE68_NAMES and len(set(lm.names)) == 68
    np.testing.assert_array_equal(lm.vertices[:, 0], vertex_indices["idx_to_landmark_verts"])
    readme = (ICT_SOURCE / "README.md").read_text().split("Multi-PIE 68 point facial landmarks indices:", 1)[1]
    readme_ids = [int(x) for x in re.search(r"\n\s+([\d,\s]+)\n", readme).group(1).replace(",", " ").split()]
    np.testing.assert_array_equal(lm.vertices[:, 0], readme_ids)
    points = lm.evaluate(topology.rest_points)  # (68, 3)
    # iBUG order: the subject's right (−X) first; eyes at the sides, nose tip in front
    assert points[0, 0] < 0 < points[16, 0]
    assert points[36:42, 0].mean() < 0 < points[42:48, 0].mean()
    assert points[30, 2] == points[:, 2].max()
    for group, key in (("fitting", "idx_to_fitting_verts"), ("rigid", "idx_to_rigid_verts"),
                       ("lap_rigid", "idx_to_lap_rigid_verts")):
        np.testing.assert_array_equal(topology.vertex_groups[group], vertex_indices[key])
    assert set(topology.vertex_groups["rigid_landmarks"]) <= set(topology.vertex_groups["landmarks"])


def test_mediapipe_landmarks_are_stored_when_facemesh_was_imported(ict_cache, topology):
    if ict_cache.manifest("facemesh") is None:
        pytest.skip("MediaPipe files not imported into this cache")
    mp = topology.landmarks["mediapipe"]
    assert len(mp) == 478 and mp.names[0] == "mp000" and mp.names[-1] == "mp477"
    np.testing.assert_allclose(mp.weights.sum(1), 1.0, atol=1e-5)


def test_symmetry_is_an_involution_within_partner_submeshes(topology):
    sym = topology.symmetry
    n = topology.num_points
    assert sym.shape == (n,)
    np.testing.assert_array_equal(sym[sym], np.arange(n))
    owner = np.empty(n, object)
    for sm in topology.submeshes:
        owner[sm.vertex_start:sm.vertex_stop] = sm.name
    assert all(mirror_partner(a) == b for a, b in zip(owner, owner[sym]))
    midplane = np.abs(topology.rest_points[:, 0]) < 1e-4
    assert midplane.sum() > 100
    np.testing.assert_array_equal(sym[midplane], np.flatnonzero(midplane))
    assert (sym != np.arange(n)).sum() > 0.95 * n


def test_symmetry_mismatch_on_the_neutral_is_below_half_a_millimetre(topology):
    mismatch = symmetry_mismatch(topology.rest_points, topology.symmetry)  # cm
    skin = slice(0, topology.submesh("eye_socket_right").vertex_stop)
    print(f"skin symmetry mismatch: max {mismatch[skin].max() * 10:.4f} mm, mean {mismatch[skin].mean() * 10:.5f} mm; "
          f"all parts max {mismatch.max() * 10:.4f} mm")
    assert mismatch[skin].max() <= 0.05
    assert mismatch.max() <= 0.05
    # the landmark pairs of the jaw mirror each other through the map too
    lm = topology.landmarks["multipie68"].vertices[:, 0]
    jaw_mirror = topology.rest_points[topology.symmetry[lm[0]]]
    assert np.linalg.norm(jaw_mirror - topology.rest_points[lm[16]]) < 1.0


def test_compute_symmetry_resolves_ambiguous_neighbours():
    """A shuffled, noisy mirror pair where plain nearest neighbours collide still gives an involution."""
    rng = np.random.default_rng(3)
    right = rng.uniform([0.5, -1, -1], [2, 1, 1], size=(300, 3))
    right[1] = right[0] + [0.004, 0, 0]  # two close points: their mirrors compete for one neighbour
    left = right * [-1, 1, 1] + rng.normal(0, 0.002, size=right.shape)
    order = rng.permutation(300)
    middle = np.stack([np.zeros(5), np.linspace(-1, 1, 5), np.zeros(5)], 1)
    points = np.concatenate([right, left[order], middle])
    sym = compute_symmetry(points, [SubMesh("all", 0, len(points), 0, 0)])
    np.testing.assert_array_equal(sym[sym], np.arange(len(points)))
    np.testing.assert_array_equal(sym[600:], np.arange(600, 605))
    expected = np.empty(300, int)
    expected[order] = np.arange(300)  # right i ↔ left position of i
    assert (sym[:300] - 300 == expected).mean() > 0.99


def test_saved_topology_round_trips(topology, tmp_path):
    back = ReferenceTopology.load(topology.save(tmp_path / "ict.npz"))
    assert back.topology_id == topology.topology_id
    np.testing.assert_array_equal(back.symmetry, topology.symmetry)
    assert back.submeshes == topology.submeshes and back.materials == topology.materials
    assert set(back.landmarks) == set(topology.landmarks)
