"""``read_head_asset``: an asset folder, its ``NAME.usda`` or a ``.usdz`` → the ``HeadResult`` written.

The topology is rebuilt from the layers (connectivity, UVs, sub-meshes, materials), so
``read_head_asset(p).topology.topology_id`` is the id of the topology the head was written with.
"""

from __future__ import annotations

import json
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import numpy as np
from pxr import Usd, UsdGeom

from ..errors import AssetError, TopologyMismatchError
from ..head_result import HeadResult, Provenance, TextureMap
from . import layout, png_io
from .blendshapes import read_blendshapes
from .camera import read_camera
from .geometry import head_meshes, mesh_arrays, rebuild_topology


def resolve_asset_path(path: str | os.PathLike) -> Path:
    """Folder → its ``NAME.usda``; a layer or ``.usdz`` file → itself."""
    path = Path(path)
    if path.is_dir():
        candidate = path / f"{path.name}{layout.ROOT_SUFFIX}"
        if candidate.is_file():
            return candidate
        roots = [p for p in path.glob("*.usda") if p.name not in (layout.PAYLOAD_FILE, layout.MTL_FILE)]
        if len(roots) == 1:
            return roots[0]
        raise AssetError(f"{path}: no {candidate.name} in the folder (not a TOPOS head asset)")
    if not path.is_file():
        raise AssetError(f"{path}: no such asset")
    return path


@contextmanager
def open_stage(path: str | os.PathLike):
    """Open the asset's stage with payloads loaded; the stage is released on exit."""
    root = resolve_asset_path(path)
    stage = Usd.Stage.Open(str(root), Usd.Stage.LoadAll)
    if stage is None:
        raise AssetError(f"{root}: USD could not open it")
    try:
        yield root, stage
    finally:
        del stage


def root_asset_info(stage: Usd.Stage) -> dict:
    """The default prim's assetInfo with TOPOS entries flattened to ``"topos:<key>"``."""
    prim = stage.GetDefaultPrim()
    if not prim:
        raise AssetError(f"{stage.GetRootLayer().identifier}: no defaultPrim")
    info = dict(Usd.ModelAPI(prim).GetAssetInfo() or {})
    for key, value in dict(info.pop("topos", None) or {}).items():  # nested "topos" dictionary → "topos:key"
        info[f"topos:{key}"] = value
    return info


def read_head_asset(path: str | os.PathLike) -> HeadResult:
    with open_stage(path) as (root_file, stage):
        info = root_asset_info(stage)
        prims = head_meshes(stage)
        if not prims:
            raise AssetError(f"{root_file}: no TOPOS head meshes (Mesh prims with {layout.TOPOLOGY_ID_KEY})")
        meshes = [mesh_arrays(p) for p in prims]
        num_points = max(int(m["vertex_id"].max(initial=-1)) + 1 if m["vertex_id"] is not None
                         else m["vertex_start"] + len(m["points"]) for m in meshes)
        points = np.zeros((num_points, 3), np.float32)
        covered = np.zeros(num_points, bool)
        for m in meshes:
            ids = m["vertex_id"] if m["vertex_id"] is not None else m["vertex_start"] + np.arange(len(m["points"]))
            if len(ids) != len(m["points"]):
                raise AssetError(f"{root_file}: mesh {m['name']}: {len(ids)} vertex ids for {len(m['points'])} points")
            points[ids] = m["points"]
            covered[ids] = True
        if not covered.all():
            raise AssetError(f"{root_file}: vertices {np.flatnonzero(~covered)[:5].tolist()}... are in no mesh")
        topology_name = str(info.get("name") or Path(root_file).stem)
        topology = rebuild_topology(meshes, topology_name, points)
        stored_id = info.get(layout.TOPOLOGY_ID_KEY) or meshes[0]["topology_id"]
        if topology.topology_id != stored_id:
            raise TopologyMismatchError(
                f"{root_file}: the meshes' connectivity/UVs hash to {topology.topology_id} but the asset says "
                f"{stored_id}; run verify_topology to see what differs")
        names, deltas, anim_weights = read_blendshapes(
            stage, [(p, m["vertex_start"], len(m["points"])) for p, m in zip(prims, meshes)], num_points)
        if layout.EXPRESSION_WEIGHTS_KEY in info:
            weights = json.loads(info[layout.EXPRESSION_WEIGHTS_KEY])
        else:
            weights = dict(zip(names or [], map(float, anim_weights if anim_weights is not None else [])))
        camera_prim = next((p for p in stage.Traverse() if p.IsA(UsdGeom.Camera)), None)
        camera = read_camera(camera_prim) if camera_prim is not None else None
        views = stage.GetDefaultPrim().GetChild(layout.VIEW_CAMERAS_SCOPE)
        view_cameras = [read_camera(p) for p in views.GetChildren() if p.IsA(UsdGeom.Camera)] if views else []
        provenance = Provenance(**json.loads(info[layout.PROVENANCE_KEY])) if layout.PROVENANCE_KEY in info else Provenance()
        texture_specs = json.loads(info.get(layout.TEXTURES_KEY, "{}"))
        textures = {k: TextureMap(k, {t: _read_texture(root_file, layout.tile_file(spec["file"], t)) for t in spec["tiles"]},
                                  spec["colorSpace"]) for k, spec in texture_specs.items()}
    return HeadResult(points=points, topology=topology, topology_id=stored_id, textures=textures,
                      expression_weights=weights, blendshape_names=list(names or []),
                      blendshape_deltas=deltas if names else None, camera=camera, provenance=provenance,
                      view_cameras=view_cameras)


def _read_texture(root_file: Path, relative: str) -> np.ndarray:
    """A texture next to the root layer, or inside the ``.usdz`` package."""
    if root_file.suffix.lower() == ".usdz":
        with zipfile.ZipFile(root_file) as package:
            first = PurePosixPath(package.namelist()[0]).parent
            member = str(first / relative) if str(first) != "." else relative
            try:
                data = package.read(member)
            except KeyError:
                raise AssetError(f"{root_file}: {member} is not in the package") from None
        return png_io.decode_png(data, f"{root_file}[{member}]")
    file = root_file.parent / relative
    if not file.is_file():
        raise AssetError(f"{root_file}: texture {relative} is missing")
    return png_io.read_png(file)
