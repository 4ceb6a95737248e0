"""Checking head assets: ``validate_asset`` (USD validators + TOPOS rules) and ``verify_topology``.

``validate_asset`` runs every validator in ``pxr.UsdValidation``'s registry on the composed stage
and reports each error (warnings too when asked). One exception: USD builds without MaterialX
support (the ``usd-core`` wheels) know no ``ND_*`` MaterialX node in their shader registry, so
``ShaderSdrCompliance`` flags the MaterialX network as unknown shader ids; those findings are
dropped only when the registry holds no MaterialX node at all (Maya's and Houdini's USD do).
Likewise ``NormalMapTextureValidator`` cannot open a UDIM pattern (``normal.<UDIM>.png``) and says
"InvalidFile"; that finding is dropped and the TOPOS check below verifies each tile exists instead.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from pxr import Sdf, Sdr, Usd, UsdGeom, UsdShade, UsdValidation

from ..topology import ReferenceTopology
from . import layout
from .asset_reader import open_stage, root_asset_info
from .geometry import head_meshes, mesh_arrays, uv_owners

MATERIALX_ID_PREFIX = "ND_"


def sdr_knows_materialx() -> bool:
    return any(i.startswith(MATERIALX_ID_PREFIX) for i in Sdr.Registry().GetShaderNodeIdentifiers())


def usd_validation_errors(stage: Usd.Stage, include_warnings: bool = False) -> list[str]:
    """Every registered ``UsdValidation`` validator on ``stage``, one line per finding."""
    registry = UsdValidation.ValidationRegistry()
    context = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators())
    kinds = {UsdValidation.ValidationErrorType.Error}
    if include_warnings:
        kinds.add(UsdValidation.ValidationErrorType.Warn)
    skip_mtlx_ids = not sdr_knows_materialx()
    lines = []
    for error in context.Validate(stage):
        if error.GetType() not in kinds:
            continue
        if skip_mtlx_ids and error.GetName() == "MissingShaderIdInRegistry" and _is_materialx_shader_error(error):
            continue
        if error.GetName() == "InvalidFile" and layout.UDIM_TOKEN in error.GetMessage():
            continue  # the normal-map check cannot open UDIM patterns; our own check finds every tile
        lines.append(f"{error.GetValidator().GetMetadata().name}: {error.GetMessage()}")
    return lines


def _is_materialx_shader_error(error) -> bool:
    for site in error.GetSites():
        prim = site.GetPrim() if site.IsPrim() else (site.GetProperty().GetPrim() if site.IsProperty() else None)
        if prim and prim.IsA(UsdShade.Shader):
            shader_id = UsdShade.Shader(prim).GetShaderId() or ""
            if shader_id.startswith(MATERIALX_ID_PREFIX):
                return True
    return False


def validate_asset(path: str | os.PathLike, include_warnings: bool = False) -> list[str]:
    """USD validation errors and TOPOS rule violations, one line each (empty = clean)."""
    with open_stage(path) as (root_file, stage):
        problems = usd_validation_errors(stage, include_warnings)
        problems += topos_rule_violations(root_file, stage)
    return problems


def topos_rule_violations(root_file: Path, stage: Usd.Stage) -> list[str]:
    out = []
    info = root_asset_info(stage)
    topology_id = info.get(layout.TOPOLOGY_ID_KEY)
    if not topology_id:
        out.append(f"assetInfo has no {layout.TOPOLOGY_ID_KEY}")
    if UsdGeom.GetStageUpAxis(stage) != layout.UP_AXIS:
        out.append(f"upAxis is {UsdGeom.GetStageUpAxis(stage)}, expected {layout.UP_AXIS}")
    if UsdGeom.GetStageMetersPerUnit(stage) != layout.METERS_PER_UNIT:
        out.append(f"metersPerUnit is {UsdGeom.GetStageMetersPerUnit(stage)}, expected {layout.METERS_PER_UNIT}")
    prims = head_meshes(stage)
    if not prims:
        out.append(f"no head meshes (Mesh prims with customData {layout.TOPOLOGY_ID_KEY})")
    for prim in prims:
        m = mesh_arrays(prim)
        where = f"mesh {m['name']}"
        if topology_id and m["topology_id"] != topology_id:
            out.append(f"{where}: {layout.TOPOLOGY_ID_KEY} is {m['topology_id']}, assetInfo says {topology_id}")
        if m["orientation"] != UsdGeom.Tokens.rightHanded:
            out.append(f"{where}: orientation is {m['orientation']}, expected rightHanded")
        if not UsdGeom.Mesh(prim).GetSubdivisionSchemeAttr().HasAuthoredValue():
            out.append(f"{where}: subdivisionScheme is not authored")
        if m["vertex_id"] is None or len(m["vertex_id"]) != len(m["points"]):
            out.append(f"{where}: primvars:{layout.VERTEX_ID_PRIMVAR} missing or not one per point")
        if m["st_values"] is not None:
            if m["st_maya_name"] != "map1":
                out.append(f"{where}: primvars:st has Maya:name {m['st_maya_name']!r}, expected 'map1'")
            if m["st_interpolation"] != UsdGeom.Tokens.faceVarying or m["st_indices"] is None:
                out.append(f"{where}: primvars:st must be faceVarying and indexed")
        normals = UsdGeom.Mesh(prim).GetNormalsAttr()
        if normals.HasAuthoredValue() and (m["subdivision_scheme"] != UsdGeom.Tokens.none
                                           or UsdGeom.Mesh(prim).GetNormalsInterpolation() != UsdGeom.Tokens.faceVarying):
            out.append(f"{where}: normals are authored but the mesh is not faceVarying/subdivisionScheme none")
    out += _asset_path_problems(root_file, stage)
    return out


def _asset_path_problems(root_file: Path, stage: Usd.Stage) -> list[str]:
    """Every asset path in the layers is relative and names an existing file (UDIM: every tile)."""
    out = []
    members = None
    if root_file.suffix.lower() == ".usdz":
        with zipfile.ZipFile(root_file) as package:
            members = set(package.namelist())
    for layer in stage.GetUsedLayers():
        if layer.anonymous:
            continue
        layer_dir = Path(layer.realPath).parent if layer.realPath else root_file.parent
        for asset_path in _layer_asset_paths(layer):
            if os.path.isabs(asset_path) or "://" in asset_path:
                out.append(f"{Path(layer.identifier).name}: asset path {asset_path!r} is not relative")
                continue
            if members is not None:
                continue  # inside a usdz the packager already resolved every dependency
            if layout.UDIM_TOKEN in asset_path:
                prefix, suffix = (layer_dir / asset_path).name.split(layout.UDIM_TOKEN)
                tiles = list((layer_dir / asset_path).parent.glob(f"{prefix}1[0-9][0-9][0-9]{suffix}"))
                if not tiles:
                    out.append(f"{Path(layer.identifier).name}: no UDIM tile for {asset_path!r}")
            elif not (layer_dir / asset_path).is_file():
                out.append(f"{Path(layer.identifier).name}: {asset_path!r} does not exist")
    return out


def _layer_asset_paths(layer: Sdf.Layer) -> list[str]:
    paths = list(layer.subLayerPaths)
    def visit(spec_path):
        spec = layer.GetObjectAtPath(spec_path)
        if isinstance(spec, Sdf.PrimSpec):
            for arc in spec.payloadList.GetAddedOrExplicitItems() + spec.referenceList.GetAddedOrExplicitItems():
                if arc.assetPath:
                    paths.append(arc.assetPath)
            for key in ("assetInfo", "customData"):
                paths.extend(_assets_in(spec.GetInfo(key)) if spec.HasInfo(key) else [])
        elif isinstance(spec, Sdf.AttributeSpec) and spec.typeName in (Sdf.ValueTypeNames.Asset, Sdf.ValueTypeNames.AssetArray):
            value = spec.default
            paths.extend(_assets_in(value))
    layer.Traverse(Sdf.Path.absoluteRootPath, visit)
    return [p for p in paths if p]


def _assets_in(value) -> list[str]:
    if isinstance(value, Sdf.AssetPath):
        return [value.path]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _assets_in(v)]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "AssetPathArray":
        return [p for v in value for p in _assets_in(v)]
    return []


def verify_topology(path: str | os.PathLike, topology: ReferenceTopology) -> list[str]:
    """What differs between the asset's meshes and ``topology``, one precise line each (empty = match)."""
    with open_stage(path) as (_, stage):
        written = {m["name"]: m for m in (mesh_arrays(p) for p in head_meshes(stage))}
    out = []
    parts = topology.mesh_parts()
    for part, st_ids in zip(parts, uv_owners(topology, parts)):
        m = written.pop(part.name, None)
        where = f"mesh {part.name}"
        if m is None:
            out.append(f"{where}: missing from the asset")
            continue
        if m["topology_id"] != topology.topology_id:
            out.append(f"{where}: {layout.TOPOLOGY_ID_KEY} is {m['topology_id']}, topology has {topology.topology_id}")
        arrays = topology.submesh_arrays(part)
        n_points = part.vertex_stop - part.vertex_start
        if len(m["points"]) != n_points:
            out.append(f"{where}: {len(m['points'])} points, topology has {n_points}")
        out += _compare(where, "faceVertexCounts", m["face_vertex_counts"], arrays["face_vertex_counts"])
        out += _compare(where, "faceVertexIndices", m["face_vertex_indices"], arrays["face_vertex_indices"])
        if m["vertex_id"] is not None:
            out += _compare(where, f"primvars:{layout.VERTEX_ID_PRIMVAR}", m["vertex_id"],
                            np.arange(part.vertex_start, part.vertex_stop, dtype=np.int32))
        if topology.uv_values is not None:
            if m["st_values"] is None:
                out.append(f"{where}: primvars:st missing")
            else:
                offsets = topology.face_offsets
                corner_uvs = topology.uv_values[topology.uv_indices[offsets[part.face_start]:offsets[part.face_stop]]]
                local = m["st_indices"] if m["st_indices"] is not None else np.arange(len(m["st_values"]))
                if len(local) != len(corner_uvs) or local.size and (local.min() < 0 or local.max() >= len(m["st_values"])):
                    out.append(f"{where}: primvars:st has {len(local)} face-varying indices, topology has {len(corner_uvs)}")
                else:
                    out += _compare(where, "primvars:st (per face corner)", m["st_values"][local], corner_uvs)
                    if m["st_value_ids"] is not None:
                        out += _compare(where, layout.ST_VALUE_IDS_ATTR, m["st_value_ids"], st_ids)
    out += [f"mesh {name}: in the asset but not in topology {topology.name!r}" for name in written]
    return out


def _compare(where: str, what: str, got: np.ndarray, want: np.ndarray) -> list[str]:
    if got.shape != want.shape:
        return [f"{where}: {what} has {len(got)} entries, topology has {len(want)}"]
    diff = np.flatnonzero(np.any((got != want).reshape(len(got), -1), axis=1)) if len(got) else []
    if len(diff) == 0:
        return []
    i = int(diff[0])
    more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
    return [f"{where}: {what}[{i}] is {_fmt(got[i])}, topology has {_fmt(want[i])}{more}"]


def _fmt(value) -> str:
    value = np.asarray(value)
    return str(value.item()) if value.ndim == 0 else "(" + ", ".join(f"{v:g}" for v in value.tolist()) + ")"
