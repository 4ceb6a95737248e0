"""Meshes of a head asset: one ``UsdGeom.Mesh`` per mesh part of the reference topology.

Each mesh carries points in reference-vertex order, the part's connectivity (identical for every
head), ``primvars:st`` (faceVarying, indexed, ``Maya:name = map1``), ``primvars:topos:vertexId``
(global reference vertex ids), the topology id and the part layout in ``customData``, and
``GeomSubset``s per material (``materialBind``) and per sub-mesh (``part``) when a mesh holds several.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
from pxr import Sdf, Tf, Usd, UsdGeom, Vt

from ..topology import MaterialRange, MeshPart, ReferenceTopology, SubMesh
from . import layout


def prim_name(name: str) -> str:
    return Tf.MakeValidIdentifier(name)


def mesh_path(root: Sdf.Path, part_name: str) -> Sdf.Path:
    return root.AppendChild(layout.GEOM_SCOPE).AppendChild(prim_name(part_name))


def material_subset_name(material: str) -> str:
    return prim_name(material)


def uv_owners(topology: ReferenceTopology, parts: list[MeshPart]) -> list[np.ndarray]:
    """Global uv ids each part writes as its ``st`` values: the ones it uses, sorted; uv values no
    face uses go with the first part so the reader restores the topology's uv array exactly."""
    if topology.uv_values is None:
        return [np.zeros(0, np.int32) for _ in parts]
    offsets = topology.face_offsets
    owned = [np.unique(topology.uv_indices[offsets[p.face_start]:offsets[p.face_stop]]).astype(np.int32) for p in parts]
    used = np.zeros(len(topology.uv_values), bool)
    for ids in owned:
        used[ids] = True
    if not used.all() and owned:
        owned[0] = np.concatenate([owned[0], np.flatnonzero(~used).astype(np.int32)])
    return owned


def define_mesh(stage: Usd.Stage, path: Sdf.Path, topology: ReferenceTopology, part: MeshPart,
                points: np.ndarray, st_value_ids: np.ndarray) -> UsdGeom.Mesh:
    """Author one mesh part; ``points`` is the (part vertex count, 3) float32 slice of the head."""
    mesh = UsdGeom.Mesh.Define(stage, path)
    offsets = topology.face_offsets
    lo, hi = int(offsets[part.face_start]), int(offsets[part.face_stop])
    counts = topology.face_vertex_counts[part.face_start:part.face_stop]  # (F_part,)
    indices = topology.face_vertex_indices[lo:hi] - part.vertex_start  # (corners,) local
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(points, np.float32)))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.ascontiguousarray(counts, np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.ascontiguousarray(indices, np.int32)))
    mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    mesh.CreateSubdivisionSchemeAttr(part.subdivision_scheme)
    mesh.CreateExtentAttr(extent_of(points))
    mesh.CreateDoubleSidedAttr(False)

    primvars = UsdGeom.PrimvarsAPI(mesh)
    if topology.uv_values is not None:
        remap = np.full(len(topology.uv_values), -1, np.int32)
        remap[st_value_ids] = np.arange(len(st_value_ids), dtype=np.int32)
        st = primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying)
        st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(topology.uv_values[st_value_ids])))
        st.SetIndices(Vt.IntArray.FromNumpy(remap[topology.uv_indices[lo:hi]]))
        st.GetAttr().SetCustomDataByKey("Maya:name", Vt.Token("map1"))
        ids_attr = mesh.GetPrim().CreateAttribute(layout.ST_VALUE_IDS_ATTR, Sdf.ValueTypeNames.IntArray,
                                                  custom=True, variability=Sdf.VariabilityUniform)
        ids_attr.Set(Vt.IntArray.FromNumpy(np.ascontiguousarray(st_value_ids, np.int32)))
    vertex_id = primvars.CreatePrimvar(layout.VERTEX_ID_PRIMVAR, Sdf.ValueTypeNames.IntArray, UsdGeom.Tokens.vertex)
    vertex_id.Set(Vt.IntArray.FromNumpy(np.arange(part.vertex_start, part.vertex_stop, dtype=np.int32)))

    prim = mesh.GetPrim()
    prim.SetCustomDataByKey(layout.TOPOLOGY_ID_KEY, topology.topology_id)
    prim.SetCustomDataByKey(layout.MESH_NAME_KEY, part.name)
    prim.SetCustomDataByKey(layout.VERTEX_START_KEY, int(part.vertex_start))
    prim.SetCustomDataByKey(layout.FACE_START_KEY, int(part.face_start))
    prim.SetCustomDataByKey(layout.SUBMESHES_KEY, json.dumps([asdict(s) for s in part.submeshes]))
    if topology.uv_values is not None:
        prim.SetCustomDataByKey(layout.UV_COUNT_KEY, int(len(topology.uv_values)))

    _define_subsets(mesh, part)
    return mesh


def _define_subsets(mesh: UsdGeom.Mesh, part: MeshPart) -> None:
    n_faces = part.face_stop - part.face_start
    by_material: dict[str, list[np.ndarray]] = {}
    for m in part.materials:
        by_material.setdefault(m.name, []).append(np.arange(m.face_start, m.face_stop, dtype=np.int32) - part.face_start)
    covered = 0
    for name, runs in by_material.items():
        faces = np.concatenate(runs)
        covered += faces.size
        subset = UsdGeom.Subset.Define(mesh.GetPrim().GetStage(), mesh.GetPath().AppendChild(material_subset_name(name)))
        subset.CreateElementTypeAttr(UsdGeom.Tokens.face)
        subset.CreateFamilyNameAttr(layout.MATERIAL_FAMILY)
        subset.CreateIndicesAttr(Vt.IntArray.FromNumpy(faces))
        subset.GetPrim().SetCustomDataByKey(layout.MATERIAL_NAME_KEY, name)
    if by_material:
        family_type = UsdGeom.Tokens.partition if covered == n_faces else UsdGeom.Tokens.nonOverlapping
        UsdGeom.Subset.SetFamilyType(mesh, layout.MATERIAL_FAMILY, family_type)
    if len(part.submeshes) > 1:
        for sm in part.submeshes:
            subset = UsdGeom.Subset.Define(mesh.GetPrim().GetStage(),
                                           mesh.GetPath().AppendChild(prim_name(layout.PART_SUBSET_PREFIX + sm.name)))
            subset.CreateElementTypeAttr(UsdGeom.Tokens.face)
            subset.CreateFamilyNameAttr(layout.PART_FAMILY)
            subset.CreateIndicesAttr(Vt.IntArray.FromNumpy(
                np.arange(sm.face_start - part.face_start, sm.face_stop - part.face_start, dtype=np.int32)))
        UsdGeom.Subset.SetFamilyType(mesh, layout.PART_FAMILY, UsdGeom.Tokens.partition)


def extent_of(points: np.ndarray) -> Vt.Vec3fArray:
    if len(points) == 0:
        return Vt.Vec3fArray.FromNumpy(np.zeros((2, 3), np.float32))
    return Vt.Vec3fArray.FromNumpy(np.stack([points.min(0), points.max(0)]).astype(np.float32))


# ---- reading ---------------------------------------------------------------------------------

def head_meshes(stage: Usd.Stage) -> list[Usd.Prim]:
    """Mesh prims written by the SDK (those that carry a topology id), in face order."""
    prims = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh) and p.GetCustomDataByKey(layout.TOPOLOGY_ID_KEY)]
    return sorted(prims, key=lambda p: int(p.GetCustomDataByKey(layout.FACE_START_KEY) or 0))


def mesh_arrays(prim: Usd.Prim) -> dict:
    """Everything the reader and the verifier need from one mesh, as numpy arrays."""
    mesh = UsdGeom.Mesh(prim)
    primvars = UsdGeom.PrimvarsAPI(prim)
    out = {
        "name": prim.GetCustomDataByKey(layout.MESH_NAME_KEY) or prim.GetName(),
        "topology_id": prim.GetCustomDataByKey(layout.TOPOLOGY_ID_KEY),
        "vertex_start": int(prim.GetCustomDataByKey(layout.VERTEX_START_KEY) or 0),
        "face_start": int(prim.GetCustomDataByKey(layout.FACE_START_KEY) or 0),
        "uv_count": prim.GetCustomDataByKey(layout.UV_COUNT_KEY),
        "submeshes": json.loads(prim.GetCustomDataByKey(layout.SUBMESHES_KEY) or "[]"),
        "points": _np(mesh.GetPointsAttr().Get(), np.float32, (-1, 3)),
        "face_vertex_counts": _np(mesh.GetFaceVertexCountsAttr().Get(), np.int32),
        "face_vertex_indices": _np(mesh.GetFaceVertexIndicesAttr().Get(), np.int32),
        "subdivision_scheme": mesh.GetSubdivisionSchemeAttr().Get(),
        "orientation": mesh.GetOrientationAttr().Get(),
        "vertex_id": None, "st_values": None, "st_indices": None, "st_value_ids": None, "st_interpolation": None,
        "st_maya_name": None,
    }
    vid = primvars.GetPrimvar(layout.VERTEX_ID_PRIMVAR)
    if vid and vid.HasValue():
        out["vertex_id"] = _np(vid.Get(), np.int32)
    st = primvars.GetPrimvar("st")
    if st and st.HasValue():
        out["st_values"] = _np(st.Get(), np.float32, (-1, 2))
        out["st_indices"] = _np(st.GetIndices(), np.int32) if st.IsIndexed() else None
        out["st_interpolation"] = st.GetInterpolation()
        out["st_maya_name"] = st.GetAttr().GetCustomDataByKey("Maya:name")
        ids = prim.GetAttribute(layout.ST_VALUE_IDS_ATTR)
        out["st_value_ids"] = _np(ids.Get(), np.int32) if ids and ids.HasValue() else None
    out["material_subsets"] = []
    for subset in UsdGeom.Subset.GetGeomSubsets(mesh, UsdGeom.Tokens.face, layout.MATERIAL_FAMILY):
        name = subset.GetPrim().GetCustomDataByKey(layout.MATERIAL_NAME_KEY) or subset.GetPrim().GetName()
        out["material_subsets"].append((name, _np(subset.GetIndicesAttr().Get(), np.int32)))
    return out


def _np(value, dtype, shape=None) -> np.ndarray:
    arr = np.asarray(value if value is not None else [], dtype=dtype)
    return arr.reshape(shape) if shape is not None else arr


def rebuild_topology(meshes: list[dict], name: str, points: np.ndarray) -> ReferenceTopology:
    """The ``ReferenceTopology`` a set of written meshes came from (rest points = ``points``)."""
    meshes = sorted(meshes, key=lambda m: m["face_start"])
    counts = np.concatenate([m["face_vertex_counts"] for m in meshes]) if meshes else np.zeros(0, np.int32)
    indices = np.concatenate([m["face_vertex_indices"] + m["vertex_start"] for m in meshes]) if meshes else np.zeros(0, np.int32)
    uv_values = uv_indices = None
    if meshes and all(m["st_values"] is not None and m["st_value_ids"] is not None for m in meshes):
        uv_count = int(meshes[0]["uv_count"] or 1 + max(int(m["st_value_ids"].max(initial=-1)) for m in meshes))
        uv_values = np.zeros((uv_count, 2), np.float32)
        parts = []
        for m in meshes:
            uv_values[m["st_value_ids"]] = m["st_values"]
            local = m["st_indices"] if m["st_indices"] is not None else np.arange(len(m["st_values"]), dtype=np.int32)
            parts.append(m["st_value_ids"][local])
        uv_indices = np.concatenate(parts)
    submeshes, materials = [], []
    for m in meshes:
        submeshes += [SubMesh(**s) for s in m["submeshes"]]
        for mat_name, local_faces in m["material_subsets"]:
            faces = np.sort(local_faces) + m["face_start"]
            breaks = np.flatnonzero(np.diff(faces) != 1) + 1
            for run in np.split(faces, breaks):
                if run.size:
                    materials.append(MaterialRange(mat_name, int(run[0]), int(run[-1]) + 1))
    materials.sort(key=lambda r: r.face_start)
    return ReferenceTopology(name=name, rest_points=points, face_vertex_counts=counts, face_vertex_indices=indices,
                             uv_values=uv_values, uv_indices=uv_indices, submeshes=submeshes, materials=materials,
                             info={"rest_points": "the head's own points (the asset does not store the reference rest shape)"})
