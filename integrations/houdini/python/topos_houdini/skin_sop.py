"""The ``topos::skin::1.0`` SOP: a TOPOS head asset's meshes as Houdini polygons.

Point attribute ``id`` = ``primvars:topos:vertexId`` (the reference-vertex index, the same on every head),
vertex attribute ``uv`` from ``primvars:st``, primitive attribute ``name`` = the USD mesh name. With all
meshes selected, point number == ``id``; with some, points keep reference order.

*Posed* (default, what the TOPOS Head LOP and Karma show): the portrait's expression applied, i.e. the
asset's UsdSkel blendshape weights evaluated by UsdSkel itself; off: the neutral points as stored.
"""

from __future__ import annotations

import fnmatch

import hou
import numpy as np

VERTEX_ID = "primvars:topos:vertexId"


def cook(node) -> None:
    from pxr import Usd, UsdGeom

    asset_file = node.parm("asset_file").evalAsString().strip()
    if not asset_file:
        raise hou.NodeWarning("no asset: point Asset File at a TOPOS head (NAME.usda)")
    stage = Usd.Stage.Open(asset_file)
    if stage is None:
        raise hou.NodeError(f"cannot open {asset_file}")
    patterns = node.parm("meshes").evalAsString().split() or ["*"]
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse()
              if p.IsA(UsdGeom.Mesh) and any(fnmatch.fnmatchcase(p.GetName(), pat) for pat in patterns)]
    if not meshes:
        raise hou.NodeError(f"no mesh named {' or '.join(patterns)} in {asset_file}")
    posed = bool(node.evalParm("posed"))
    parts = [read_mesh(m, posed) for m in meshes]
    scale = UsdGeom.GetStageMetersPerUnit(stage) if node.evalParm("to_meters") else 1.0
    write_geometry(node.geometry(), parts, scale)


def read_mesh(mesh, posed: bool = False) -> dict:
    from pxr import UsdGeom

    prim = mesh.GetPrim()
    vertex_id = prim.GetAttribute(VERTEX_ID)
    if not vertex_id or not vertex_id.HasValue():
        raise hou.NodeError(f"{prim.GetPath()} has no {VERTEX_ID}: not a TOPOS head asset")
    st = UsdGeom.PrimvarsAPI(prim).GetPrimvar("st")
    uv = np.asarray(st.ComputeFlattened(), np.float32) if st and st.HasValue() else None  # (sum counts, 2)
    if uv is not None and st.GetInterpolation() != UsdGeom.Tokens.faceVarying:
        raise hou.NodeError(f"{prim.GetPath()}: st is {st.GetInterpolation()}, expected faceVarying")
    return {
        "name": prim.GetName(),
        "points": posed_points(mesh) if posed else np.asarray(mesh.GetPointsAttr().Get(), np.float32),  # (n, 3)
        "ids": np.asarray(vertex_id.Get(), np.int64),                              # (n,)
        "counts": np.asarray(mesh.GetFaceVertexCountsAttr().Get(), np.int64),      # (f,)
        "indices": np.asarray(mesh.GetFaceVertexIndicesAttr().Get(), np.int64),    # (sum counts,)
        "uv": uv,
        "left_handed": mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded,
    }


def posed_points(mesh) -> np.ndarray:
    """(n, 3) points of ``mesh`` with its bound blendshapes at the SkelAnimation's weights (UsdSkel's own
    evaluation); the stored points when the mesh has no blendshapes."""
    from pxr import Usd, UsdSkel, Vt

    prim = mesh.GetPrim()
    points = Vt.Vec3fArray(mesh.GetPointsAttr().Get())
    skel_root = UsdSkel.Root.Find(prim)
    if not skel_root:
        return np.asarray(points, np.float32)
    cache = UsdSkel.Cache()
    cache.Populate(skel_root, Usd.TraverseInstanceProxies())
    skinning = cache.GetSkinningQuery(prim)
    skeleton = UsdSkel.BindingAPI(prim).GetInheritedSkeleton()
    if not skinning or not skinning.HasBlendShapes() or not skeleton:
        return np.asarray(points, np.float32)
    animation = cache.GetSkelQuery(skeleton).GetAnimQuery()
    if not animation:
        return np.asarray(points, np.float32)
    weights = skinning.GetBlendShapeMapper().Remap(animation.ComputeBlendShapeWeights(Usd.TimeCode.Default()))
    shapes = UsdSkel.BlendShapeQuery(UsdSkel.BindingAPI(prim))
    sub_weights, shape_indices, sub_indices = shapes.ComputeSubShapeWeights(weights)
    shapes.ComputeDeformedPoints(sub_weights, shape_indices, sub_indices, shapes.ComputeBlendShapePointIndices(),
                                 shapes.ComputeSubShapePointOffsets(), points)
    return np.asarray(points, np.float32)


def reversed_winding(counts: np.ndarray) -> np.ndarray:
    """Permutation of face-vertex slots that reverses each face (Houdini winds opposite to right-handed USD)."""
    ends = np.cumsum(counts)                                    # (f,)
    starts = ends - counts
    slot = np.arange(ends[-1] if len(ends) else 0)              # (sum counts,)
    return np.repeat(ends - 1, counts) - (slot - np.repeat(starts, counts))


def write_geometry(geo, parts: list[dict], scale: float = 1.0) -> None:
    ids = np.concatenate([p["ids"] for p in parts])                                   # (n,)
    order = np.unique(ids)                                                            # reference order
    points = np.zeros((len(order), 3), np.float32)
    points[np.searchsorted(order, ids)] = np.concatenate([p["points"] for p in parts]) * scale
    polygons, uvs, names = [], [], []
    for p in parts:
        perm = slice(None) if p["left_handed"] else reversed_winding(p["counts"])
        corners = np.searchsorted(order, p["ids"][p["indices"]])[perm]                # (sum counts,)
        polygons += np.split(corners, np.cumsum(p["counts"])[:-1])
        uv = p["uv"] if p["uv"] is not None else np.zeros((len(corners), 2), np.float32)
        uvs.append(uv[perm])
        names += [p["name"]] * len(p["counts"])
    geo.createPoints(points.tolist())
    geo.createPolygons([tuple(face.tolist()) for face in polygons], True)
    uv3 = np.concatenate(uvs)                                                           # (sum counts, 2)
    uv3 = np.concatenate([uv3, np.zeros((len(uv3), 1), np.float32)], axis=1)            # (sum counts, 3)
    geo.addAttrib(hou.attribType.Vertex, "uv", (0.0, 0.0, 0.0))
    geo.setVertexFloatAttribValuesFromString("uv", uv3.astype(np.float32).tobytes())
    geo.addAttrib(hou.attribType.Point, "id", 0)
    geo.setPointIntAttribValuesFromString("id", order.astype(np.int32).tobytes())
    geo.addAttrib(hou.attribType.Prim, "name", "")
    geo.setPrimStringAttribValues("name", names)
