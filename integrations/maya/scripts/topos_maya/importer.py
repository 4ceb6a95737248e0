"""Bring a TOPOS USD asset into the Maya scene: native nodes (``mayaUSDImport``) or a live stage."""

from __future__ import annotations

import os

from maya import cmds

MAYA_USD_PLUGIN = "mayaUsdPlugin"

# what the importer is asked for: UsdPreviewSurface materials rebuilt as Maya shaders, the `st` primvar
# as the default UV set `map1`, UsdSkel blendshapes as a blendShape deformer (read with the animation data)
IMPORT_FLAGS = {
    "shadingMode": [["useRegistry", "UsdPreviewSurface"]],
    "preferredMaterial": "standardSurface",
    "remapUVSetsTo": [["st", "map1"]],
    "readAnimData": True,
}


def ensure_maya_usd() -> None:
    if not cmds.pluginInfo(MAYA_USD_PLUGIN, q=True, loaded=True):
        cmds.loadPlugin(MAYA_USD_PLUGIN, quiet=True)


def import_asset(usda_path: str, mode: str) -> list[str]:
    """Import ``usda_path`` (``mode`` "import" or "proxy"); returns the top Maya nodes created."""
    ensure_maya_usd()
    if mode == "proxy":
        return [create_proxy_stage(usda_path)]
    return import_as_maya_nodes(usda_path)


def import_as_maya_nodes(usda_path: str) -> list[str]:
    try:
        return list(cmds.mayaUSDImport(file=usda_path, **IMPORT_FLAGS) or [])
    except TypeError:
        # maya-usd older than 0.29 has no remapUVSetsTo flag: import, then rename the set ourselves
        flags = {k: v for k, v in IMPORT_FLAGS.items() if k != "remapUVSetsTo"}
        nodes = list(cmds.mayaUSDImport(file=usda_path, **flags) or [])
        rename_st_to_map1(nodes)
        return nodes


def rename_st_to_map1(nodes: list[str]) -> None:
    if not nodes:
        return
    meshes = cmds.listRelatives(nodes, allDescendents=True, type="mesh", fullPath=True) or []
    for mesh in meshes:
        uv_sets = cmds.polyUVSet(mesh, q=True, allUVSets=True) or []
        if "st" in uv_sets and "map1" not in uv_sets:
            cmds.polyUVSet(mesh, rename=True, uvSet="st", newUVSet="map1")


def create_proxy_stage(usda_path: str) -> str:
    """A ``mayaUsdProxyShape`` that keeps the asset as a live USD stage; returns its transform."""
    name = os.path.splitext(os.path.basename(usda_path))[0]
    transform = cmds.createNode("transform", name=name)
    shape = cmds.createNode("mayaUsdProxyShape", name=f"{name}Shape", parent=transform)
    cmds.setAttr(f"{shape}.filePath", usda_path, type="string")
    cmds.connectAttr("time1.outTime", f"{shape}.time")
    return transform
