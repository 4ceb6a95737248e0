"""Expression blendshapes as UsdSkel: SkelRoot ``Geom``, a one-joint ``Skeleton``, a ``SkelAnimation``
holding the expression weights, and per mesh one ``BlendShape`` per shape that moves any of its
vertices (sparse: ``pointIndices`` = the vertices the shape moves, ``offsets`` their deltas).

The single ``root`` joint (identity transforms, every vertex bound to it with weight 1) is there so
DCC importers that expect a skinned skeleton (Maya's blendShape + skinCluster import) accept it;
it does not move anything.
"""

from __future__ import annotations

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom, UsdSkel, Vt

from . import layout
from .geometry import prim_name


_BLEND_SHAPE_TYPE = Usd.SchemaRegistry.GetSchemaTypeName(UsdSkel.BlendShape)


def define_skeleton(stage: Usd.Stage, skel_root_path: Sdf.Path, names: list[str], weights: np.ndarray):
    """Skeleton + animation under the SkelRoot; ``weights`` (K,) float32 in ``names`` order."""
    skeleton = UsdSkel.Skeleton.Define(stage, skel_root_path.AppendChild(layout.SKELETON_PRIM))
    skeleton.CreateJointsAttr(Vt.TokenArray([layout.ROOT_JOINT]))
    identity = Vt.Matrix4dArray([Gf.Matrix4d(1.0)])
    skeleton.CreateBindTransformsAttr(identity)
    skeleton.CreateRestTransformsAttr(identity)
    anim = UsdSkel.Animation.Define(stage, skel_root_path.AppendChild(layout.ANIMATION_PRIM))
    anim.CreateJointsAttr(Vt.TokenArray([layout.ROOT_JOINT]))
    anim.CreateTranslationsAttr(Vt.Vec3fArray([Gf.Vec3f(0.0)]))
    anim.CreateRotationsAttr(Vt.QuatfArray([Gf.Quatf(1.0)]))
    anim.CreateScalesAttr(Vt.Vec3hArray([Gf.Vec3h(1.0)]))
    anim.CreateBlendShapesAttr(Vt.TokenArray(list(names)))
    anim.CreateBlendShapeWeightsAttr(Vt.FloatArray.FromNumpy(np.ascontiguousarray(weights, np.float32)))
    binding = UsdSkel.BindingAPI.Apply(skeleton.GetPrim())
    binding.CreateAnimationSourceRel().SetTargets([anim.GetPath()])
    return skeleton, anim


def bind_mesh_blendshapes(mesh: UsdGeom.Mesh, skeleton: UsdSkel.Skeleton, names: list[str],
                          deltas: np.ndarray) -> int:
    """Author the BlendShapes of one mesh; ``deltas`` (K, V_mesh, 3) float32. Returns how many."""
    binding = UsdSkel.BindingAPI.Apply(mesh.GetPrim())
    binding.CreateSkeletonRel().SetTargets([skeleton.GetPath()])
    joint_indices = binding.CreateJointIndicesPrimvar(constant=True, elementSize=1)
    joint_indices.Set(Vt.IntArray([0]))
    joint_weights = binding.CreateJointWeightsPrimvar(constant=True, elementSize=1)
    joint_weights.Set(Vt.FloatArray([1.0]))
    binding.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))

    # (K, V_mesh) which vertices each shape moves (three compares: numpy's any() over an axis of 3 is ~4× slower)
    moves = (deltas[..., 0] != 0) | (deltas[..., 1] != 0) | (deltas[..., 2] != 0)
    used_names, targets = [], []
    taken = {c.GetName() for c in mesh.GetPrim().GetChildren()}  # the shapes' prim names must not clash
    edit_target = mesh.GetPrim().GetStage().GetEditTarget()
    layer = edit_target.GetLayer()
    # written as layer specs in one change block: what UsdSkel.BlendShape.Define and its Create*Attr author,
    # without a stage recomposition per shape (hundreds of shapes, ~0.3 s of every generate)
    with Sdf.ChangeBlock():
        for k in np.flatnonzero(moves.any(axis=1)):
            child = prim_name(names[k])
            while child in taken:
                child += "_"
            taken.add(child)
            path = mesh.GetPath().AppendChild(child)
            spec = Sdf.CreatePrimInLayer(layer, edit_target.MapToSpecPath(path))
            spec.specifier = Sdf.SpecifierDef
            spec.typeName = _BLEND_SHAPE_TYPE
            moved = np.flatnonzero(moves[k]).astype(np.int32)
            Sdf.AttributeSpec(spec, UsdSkel.Tokens.pointIndices, Sdf.ValueTypeNames.IntArray,
                              Sdf.VariabilityUniform).default = Vt.IntArray.FromNumpy(moved)
            Sdf.AttributeSpec(spec, UsdSkel.Tokens.offsets, Sdf.ValueTypeNames.Vector3fArray,
                              Sdf.VariabilityUniform).default = Vt.Vec3fArray.FromNumpy(
                np.ascontiguousarray(deltas[k, moved]))
            used_names.append(names[k])
            targets.append(path)
    binding.CreateBlendShapesAttr(Vt.TokenArray(used_names))
    binding.CreateBlendShapeTargetsRel().SetTargets(targets)
    return len(used_names)


def read_blendshapes(stage: Usd.Stage, meshes: list[tuple[Usd.Prim, int, int]], num_points: int):
    """(names, (K, N, 3) float32 deltas, (K,) weights) or ``(None, None, None)`` when there are none.

    ``meshes`` = (prim, vertex_start, vertex_count) of every head mesh.
    """
    anim = next((UsdSkel.Animation(p) for p in stage.Traverse() if p.IsA(UsdSkel.Animation)), None)
    if anim is None:
        return None, None, None
    names = list(anim.GetBlendShapesAttr().Get() or [])
    weights = np.asarray(anim.GetBlendShapeWeightsAttr().Get() or [], np.float32)
    index = {n: i for i, n in enumerate(names)}
    deltas = np.zeros((len(names), num_points, 3), np.float32)
    for prim, v0, _count in meshes:
        binding = UsdSkel.BindingAPI(prim)
        shape_names = binding.GetBlendShapesAttr().Get() or []
        targets = binding.GetBlendShapeTargetsRel().GetTargets()
        for shape_name, target in zip(shape_names, targets):
            shape = UsdSkel.BlendShape(stage.GetPrimAtPath(target))
            offsets = np.asarray(shape.GetOffsetsAttr().Get(), np.float32).reshape(-1, 3)
            point_indices = shape.GetPointIndicesAttr().Get()
            rows = np.asarray(point_indices, np.int64) if point_indices is not None else np.arange(len(offsets))
            deltas[index[shape_name], v0 + rows] = offsets
    return names, deltas, weights
