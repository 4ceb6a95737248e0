"""ReferenceTopology: mesh parts, local arrays, triangulation, save/load, topology id stability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_quad_grid
from topos_sdk import LandmarkSet, MaterialRange, ReferenceTopology, SubMesh

ICT_NEUTRAL = Path(__file__).resolve().parents[1].parent / "shared/ict-facekit/FaceXModel/generic_neutral_mesh.obj.xz"


def test_mesh_parts_group_submeshes_sharing_vertices(quad_topology):
    parts = quad_topology.mesh_parts()
    assert [p.name for p in parts] == ["skin"]
    skin = parts[0]
    assert (skin.vertex_start, skin.vertex_stop) == (0, quad_topology.num_points)
    assert [s.name for s in skin.submeshes] == ["left", "right"]
    assert [m.name for m in skin.materials] == ["M_Left", "M_Right"]


def test_submesh_arrays_are_local_and_compact():
    two = ReferenceTopology(
        name="two", rest_points=np.zeros((7, 3)), face_vertex_counts=[4, 3],
        face_vertex_indices=[0, 1, 2, 3, 4, 5, 6], uv_values=np.arange(14).reshape(7, 2), uv_indices=[6, 5, 4, 3, 2, 1, 0],
        submeshes=[SubMesh("a", 0, 4, 0, 1), SubMesh("b", 4, 7, 1, 2)])
    part_b = two.mesh_parts()[1]
    arrays = two.submesh_arrays(part_b)
    np.testing.assert_array_equal(arrays["face_vertex_indices"], [0, 1, 2])
    np.testing.assert_array_equal(arrays["uv_values"][arrays["uv_indices"]], two.uv_values[[2, 1, 0]])


def test_parts_that_share_vertices_must_be_one_mesh():
    grid = make_quad_grid()
    half = grid.num_faces // 2
    split = ReferenceTopology(name="bad", rest_points=grid.rest_points, face_vertex_counts=grid.face_vertex_counts,
                              face_vertex_indices=grid.face_vertex_indices,
                              submeshes=[SubMesh("left", 0, 20, 0, half), SubMesh("right", 15, grid.num_points, half, grid.num_faces)])
    with pytest.raises(ValueError, match="outside"):
        split.mesh_parts()


def test_fan_triangulation_covers_each_face(quad_topology):
    tri, face_of = quad_topology.triangles()
    assert tri.shape == (2 * quad_topology.num_faces, 3)
    np.testing.assert_array_equal(np.bincount(face_of), np.full(quad_topology.num_faces, 2))
    quads = quad_topology.face_vertex_indices.reshape(-1, 4)
    np.testing.assert_array_equal(tri[0::2], quads[:, [0, 1, 2]])
    np.testing.assert_array_equal(tri[1::2], quads[:, [0, 2, 3]])
    assert quad_topology.uv_triangles().shape == tri.shape


def test_save_load_round_trip(tmp_path, quad_topology):
    topo = quad_topology
    topo.vertex_groups["fitting"] = np.array([1, 2, 3])
    topo.landmarks["tips"] = LandmarkSet(["a", "b"], np.array([[0, 1, 2], [3, 3, 3]]), np.array([[0.2, 0.3, 0.5], [1, 0, 0]]))
    topo.symmetry = np.arange(topo.num_points)[::-1].astype(np.int32)
    path = topo.save(tmp_path / "grid.topology.npz")
    back = ReferenceTopology.load(path)
    assert back.topology_id == topo.topology_id
    for name in ("rest_points", "face_vertex_counts", "face_vertex_indices", "uv_values", "uv_indices", "symmetry"):
        np.testing.assert_array_equal(getattr(back, name), getattr(topo, name))
    assert back.submeshes == topo.submeshes and back.materials == topo.materials
    np.testing.assert_array_equal(back.vertex_groups["fitting"], [1, 2, 3])
    np.testing.assert_allclose(back.landmarks["tips"].evaluate(back.rest_points), topo.landmarks["tips"].evaluate(topo.rest_points))
    assert [p.name for p in tmp_path.iterdir()] == ["grid.topology.npz"]  # atomic: no temp file left


def test_load_rejects_a_tampered_file(tmp_path, quad_topology):
    path = quad_topology.save(tmp_path / "t.npz")
    with np.load(path) as data:
        arrays = dict(data)
    arrays["face_vertex_indices"] = arrays["face_vertex_indices"][::-1].copy()
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="does not match"):
        ReferenceTopology.load(path)


def test_topology_id_depends_on_connectivity_and_uvs_only():
    a, b = make_quad_grid(), make_quad_grid()
    assert a.topology_id == b.topology_id  # stable across builds
    moved = ReferenceTopology(name="other name", rest_points=a.rest_points + 1, face_vertex_counts=a.face_vertex_counts,
                              face_vertex_indices=a.face_vertex_indices, uv_values=a.uv_values, uv_indices=a.uv_indices)
    assert moved.topology_id == a.topology_id  # rest shape and names are not identity
    uv = a.uv_values.copy()
    uv[0, 0] += 1e-3
    changed_uv = ReferenceTopology(name="g", rest_points=a.rest_points, face_vertex_counts=a.face_vertex_counts,
                                   face_vertex_indices=a.face_vertex_indices, uv_values=uv, uv_indices=a.uv_indices)
    idx = a.face_vertex_indices.copy()
    idx[[0, 1]] = idx[[1, 0]]
    changed_idx = ReferenceTopology(name="g", rest_points=a.rest_points, face_vertex_counts=a.face_vertex_counts,
                                    face_vertex_indices=idx, uv_values=a.uv_values, uv_indices=a.uv_indices)
    ids = {a.topology_id, changed_uv.topology_id, changed_idx.topology_id, make_quad_grid(nx=4).topology_id}
    assert len(ids) == 4


def test_inconsistent_arrays_are_rejected():
    with pytest.raises(ValueError, match="at least 3"):
        ReferenceTopology(name="x", rest_points=np.zeros((3, 3)), face_vertex_counts=[2], face_vertex_indices=[0, 1])
    with pytest.raises(ValueError, match="out of range"):
        ReferenceTopology(name="x", rest_points=np.zeros((3, 3)), face_vertex_counts=[3], face_vertex_indices=[0, 1, 3])
    with pytest.raises(ValueError, match="face-varying"):
        ReferenceTopology(name="x", rest_points=np.zeros((3, 3)), face_vertex_counts=[3], face_vertex_indices=[0, 1, 2],
                          uv_values=np.zeros((3, 2)), uv_indices=[0, 1])


@pytest.mark.skipif(not ICT_NEUTRAL.is_file(), reason="ICT-FaceKit data not present")
def test_ict_neutral_from_obj():
    topo = ReferenceTopology.from_obj(ICT_NEUTRAL)
    assert (topo.num_points, topo.num_faces) == (26719, 26384)
    assert set(np.unique(topo.face_vertex_counts).tolist()) == {3, 4}
    assert topo.materials[0] == MaterialRange("M_Face", 0, topo.materials[0].face_stop)
    assert [m.name for m in topo.materials][:2] == ["M_Face", "M_BackHead"]
    assert topo.topology_id == ReferenceTopology.from_obj(ICT_NEUTRAL).topology_id
