"""Test helpers: a real head asset (written by ``topos_sdk.usd.write_head_asset``) and a stand-in for
``generate_head`` that writes it, so the DCC shims can be driven end to end without an engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from topos_sdk import HeadResult, TextureMap
from topos_sdk.errors import InvalidInputError

BLENDSHAPES = ("jawOpen", "mouthSmile")
EXPRESSION = {"jawOpen": 0.25, "mouthSmile": 0.5}  # the portrait's expression: the head is posed by these


def head_result(topology, seed: int = 0) -> HeadResult:
    """A head on ``topology``: rest points moved a little, two sparse blendshapes posed by ``EXPRESSION``,
    one-tile albedo (sRGB), normal and roughness (raw) maps."""
    rng = np.random.default_rng(seed)
    n = len(topology.rest_points)
    points = topology.rest_points + rng.normal(0, 0.01, (n, 3)).astype(np.float32)       # (N, 3)
    deltas = np.zeros((len(BLENDSHAPES), n, 3), np.float32)                               # (K, N, 3)
    moved = rng.choice(n, size=max(1, n // 4), replace=False)
    deltas[:, moved] = rng.normal(0, 0.1, (len(BLENDSHAPES), len(moved), 3))
    textures = {
        "albedo": TextureMap("albedo", {1001: rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)}),
        "normal": TextureMap("normal", {1001: np.full((16, 16, 3), (128, 128, 255), np.uint8)}, "raw"),
        "roughness": TextureMap("roughness", {1001: np.full((16, 16, 1), 140, np.uint8)}, "raw"),
    }
    return HeadResult(points=points, topology=topology, textures=textures, expression_weights=dict(EXPRESSION),
                      blendshape_names=list(BLENDSHAPES), blendshape_deltas=deltas)


class FakeGenerateHead:
    """Replaces ``topos_sdk.generate.generate_head``: reports progress, then writes ``result`` as the asset.

    ``fail`` makes it raise instead; ``steps``/``step_s`` make it slow enough to cancel.
    """

    def __init__(self, result: HeadResult, fail: Exception | None = None, steps: int = 3, step_s: float = 0.0):
        self.result, self.fail, self.steps, self.step_s = result, fail, steps, step_s
        self.calls: list[dict] = []

    def __call__(self, image, out_dir, *, server=None, engine="classic", seed=0, texture_size=1024, name=None,
                 usdz=False, overwrite=False, token=None, on_progress=None, **extra) -> Path:
        from topos_sdk.generate import asset_name_for
        from topos_sdk.usd import write_head_asset

        self.calls.append(dict(image=image, out_dir=out_dir, server=server, engine=engine, seed=seed,
                               texture_size=texture_size, name=name, on_progress=on_progress))
        if not os.path.isfile(image):
            raise InvalidInputError(f"{image}: no such file")
        for i in range(self.steps):
            if on_progress:
                on_progress("fitting", 0.9 * i / self.steps)
            time.sleep(self.step_s)
        if self.fail is not None:
            raise self.fail
        name = name or asset_name_for(image)
        if on_progress:
            on_progress("writing", 0.95)
        path = write_head_asset(self.result, out_dir, name=name, thumbnail=False, overwrite=overwrite)
        if on_progress:
            on_progress("done", 1.0)
        return path


def importer_problems(usda_path, result: HeadResult) -> list[str]:
    """What mayaUSDImport / Houdini need from the layer a shim handed over; empty = all there.

    ``st`` indexed faceVarying named ``map1`` for Maya; normals (when authored) faceVarying on meshes
    with subdivision ``none``; points in reference order (``primvars:topos:vertexId`` contiguous, the
    meshes together covering 0..N-1, points equal to the result's); the blendshapes bound.
    """
    from pxr import Usd, UsdGeom, UsdSkel

    stage = Usd.Stage.Open(os.fspath(usda_path))
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    problems, all_ids, bound_shapes = [], [], set()
    if not meshes:
        return ["no UsdGeom.Mesh in the layer"]
    for mesh in meshes:
        where = str(mesh.GetPath())
        primvars = UsdGeom.PrimvarsAPI(mesh)
        st = primvars.GetPrimvar("st")
        if not st or not st.HasValue():
            problems.append(f"{where}: no st")
        else:
            if st.GetAttr().GetCustomDataByKey("Maya:name") != "map1":
                problems.append(f"{where}: st customData Maya:name is not map1")
            if st.GetInterpolation() != UsdGeom.Tokens.faceVarying or not st.IsIndexed():
                problems.append(f"{where}: st is not indexed faceVarying")
        normals = primvars.GetPrimvar("normals")
        authored = [a for a in (mesh.GetNormalsAttr(), normals.GetAttr() if normals else None)
                    if a and a.HasAuthoredValue()]
        if authored:
            interpolation = normals.GetInterpolation() if normals else mesh.GetNormalsInterpolation()
            if interpolation != UsdGeom.Tokens.faceVarying:
                problems.append(f"{where}: normals are {interpolation}, not faceVarying")
            if mesh.GetSubdivisionSchemeAttr().Get() != UsdGeom.Tokens.none:
                problems.append(f"{where}: normals authored on a subdivided mesh")
        ids = np.asarray(primvars.GetPrimvar("topos:vertexId").Get(), np.int64)
        if len(ids) == 0 or not np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids))):
            problems.append(f"{where}: topos:vertexId is not a contiguous range")
            continue
        all_ids.append(ids)
        points = np.asarray(mesh.GetPointsAttr().Get(), np.float32)
        if not np.allclose(points, result.points[ids], atol=1e-5):
            problems.append(f"{where}: points are not the result's points in reference order")
        binding = UsdSkel.BindingAPI(mesh)
        names = binding.GetBlendShapesAttr().Get() or []
        targets = binding.GetBlendShapeTargetsRel().GetTargets()
        for name, target in zip(names, targets):
            shape = UsdSkel.BlendShape(stage.GetPrimAtPath(target))
            if shape and len(shape.GetOffsetsAttr().Get() or []) > 0:
                bound_shapes.add(name)
    covered = np.sort(np.concatenate(all_ids)) if all_ids else np.zeros(0)
    if not np.array_equal(covered, np.arange(result.num_points)):
        problems.append(f"meshes cover {len(covered)} vertex ids, not 0..{result.num_points - 1} once each")
    if result.blendshape_names and bound_shapes != set(result.blendshape_names):
        problems.append(f"blendshapes bound: {sorted(bound_shapes)}, expected {sorted(result.blendshape_names)}")
    return problems
