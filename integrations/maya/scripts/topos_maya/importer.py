"""Bring a TOPOS USD asset into the Maya scene: native nodes (``mayaUSDImport``) or a live stage.

After ``mayaUSDImport`` (what maya-usd does not do for us):

- **Expression.** maya-usd (0.29+) builds the blendShape deformer but keys only *time-sampled*
  SkelAnimation weights; a TOPOS asset holds the portrait's expression as plain (default) weights, so
  they are set on the blendShape here. maya-usd older than 0.29 imports no blendshapes: the head comes in
  neutral and a warning says so, once per session.
- **Timeline.** ``readAnimData`` widens the playback range to the stage's (0–0 when none is authored);
  the user's range and current time are put back.
- **Normal map.** maya-usd wires the normal texture's ``outColor`` straight into ``normalCamera`` with the
  UsdUVTexture scale/bias as colour gain/offset; Maya wants a ``bump2d`` in tangent-space-normals mode
  reading the raw texture. Every texture of the asset also keeps its colour space
  (``ignoreColorSpaceFileRules``), which maya-usd set from the ``colorSpace`` metadata.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from maya import cmds

MAYA_USD_PLUGIN = "mayaUsdPlugin"
BLENDSHAPE_IMPORT_SINCE = (0, 29)  # first maya-usd that turns UsdSkel blendshapes into a blendShape node
TANGENT_SPACE_NORMALS = 1          # bump2d.bumpInterp
TIMELINE_FLAGS = ("minTime", "maxTime", "animationStartTime", "animationEndTime")

# what the importer is asked for: UsdPreviewSurface materials rebuilt as Maya shaders, the `st` primvar
# as the default UV set `map1`, UsdSkel blendshapes as a blendShape deformer (read with the animation data)
IMPORT_FLAGS = {
    "shadingMode": [["useRegistry", "UsdPreviewSurface"]],
    "preferredMaterial": "standardSurface",
    "remapUVSetsTo": [["st", "map1"]],
    "readAnimData": True,
}

_warned_about: set[str] = set()  # maya-usd versions already warned about in this session


def ensure_maya_usd() -> None:
    if not cmds.pluginInfo(MAYA_USD_PLUGIN, q=True, loaded=True):
        cmds.loadPlugin(MAYA_USD_PLUGIN, quiet=True)


def maya_usd_version() -> tuple[int, ...]:
    text = str(cmds.pluginInfo(MAYA_USD_PLUGIN, q=True, version=True) or "0")
    numbers = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers) or (0,)


def import_asset(usda_path: str, mode: str) -> list[str]:
    """Import ``usda_path`` (``mode`` "import" or "proxy"); returns the top Maya nodes created."""
    ensure_maya_usd()
    if mode == "proxy":
        return [create_proxy_stage(usda_path)]
    return import_as_maya_nodes(usda_path)


@contextmanager
def kept_timeline():
    """Whatever runs inside may move the playback range or the current time; they are put back after."""
    kept = {flag: cmds.playbackOptions(q=True, **{flag: True}) for flag in TIMELINE_FLAGS}
    now = cmds.currentTime(q=True)
    try:
        yield
    finally:
        changed = {flag: value for flag, value in kept.items()
                   if cmds.playbackOptions(q=True, **{flag: True}) != value}
        if changed:
            cmds.playbackOptions(**changed)
        if cmds.currentTime(q=True) != now:
            cmds.currentTime(now, edit=True)


def import_as_maya_nodes(usda_path: str) -> list[str]:
    version = maya_usd_version()
    with kept_timeline():
        try:
            nodes = list(cmds.mayaUSDImport(file=usda_path, **IMPORT_FLAGS) or [])
        except TypeError:
            # maya-usd older than 0.29 has no remapUVSetsTo flag: import, then rename the set ourselves
            flags = {k: v for k, v in IMPORT_FLAGS.items() if k != "remapUVSetsTo"}
            nodes = list(cmds.mayaUSDImport(file=usda_path, **flags) or [])
            rename_st_to_map1(nodes)
    meshes = cmds.listRelatives(nodes, allDescendents=True, type="mesh", fullPath=True) or [] if nodes else []
    use_tangent_space_normal_maps(meshes)
    if version >= BLENDSHAPE_IMPORT_SINCE:
        apply_expression(usda_path, nodes)
    else:
        warn_no_blendshapes_once(version)
    return nodes


def warn_no_blendshapes_once(version: tuple[int, ...]) -> None:
    text = ".".join(map(str, version))
    if text in _warned_about:
        return
    _warned_about.add(text)
    since = ".".join(map(str, BLENDSHAPE_IMPORT_SINCE))
    cmds.warning(f"TOPOS: maya-usd {text} imports no blendshapes (needs {since} or newer): heads come in "
                 f"neutral, without the portrait's expression or expression targets")


def rename_st_to_map1(nodes: list[str]) -> None:
    if not nodes:
        return
    meshes = cmds.listRelatives(nodes, allDescendents=True, type="mesh", fullPath=True) or []
    for mesh in meshes:
        uv_sets = cmds.polyUVSet(mesh, q=True, allUVSets=True) or []
        if "st" in uv_sets and "map1" not in uv_sets:
            cmds.polyUVSet(mesh, rename=True, uvSet="st", newUVSet="map1")


# -- expression ------------------------------------------------------------------------------------------------
def expression_weights(usda_path: str) -> dict[str, list[float]]:
    """``{mesh path below the asset's root prim, '|'-joined: [weight of each of its blendshape targets]}``.

    Targets are in the mesh's ``skel:blendShapes`` order, which is the order maya-usd adds them to the
    blendShape node (``weight[i]``); the weights are the SkelAnimation's (the portrait's expression).
    """
    from pxr import Usd, UsdGeom, UsdSkel

    stage = Usd.Stage.Open(usda_path)
    root = stage.GetDefaultPrim()
    animations = [UsdSkel.Animation(p) for p in Usd.PrimRange(root) if p.IsA(UsdSkel.Animation)]
    by_name = {}
    for animation in animations:
        names = animation.GetBlendShapesAttr().Get() or []
        values = animation.GetBlendShapeWeightsAttr().Get() or []
        by_name.update(zip(names, (float(v) for v in values)))
    out = {}
    for prim in Usd.PrimRange(root):
        if not prim.IsA(UsdGeom.Mesh):
            continue
        names = UsdSkel.BindingAPI(prim).GetBlendShapesAttr().Get() or []
        if names:
            relative = prim.GetPath().MakeRelativePath(root.GetPath())
            out["|".join(str(relative).split("/"))] = [by_name.get(n, 0.0) for n in names]
    return out


def apply_expression(usda_path: str, nodes: list[str]) -> int:
    """Set each imported mesh's blendShape weights to the asset's expression; returns how many were set."""
    weights_by_mesh = expression_weights(usda_path)
    transforms = cmds.listRelatives(nodes, allDescendents=True, type="transform", fullPath=True) or [] if nodes else []
    count = 0
    for relative, weights in weights_by_mesh.items():
        matches = [t for t in transforms if t.endswith("|" + relative)]
        for transform in matches[:1]:
            shapes = cmds.listRelatives(transform, shapes=True, fullPath=True, noIntermediate=True) or []
            blend_shapes = cmds.ls(cmds.listHistory(shapes) or [], type="blendShape") if shapes else []
            for blend_shape in blend_shapes[:1]:
                for index, weight in enumerate(weights):
                    cmds.setAttr(f"{blend_shape}.weight[{index}]", weight)
                    count += 1
    return count


# -- materials -----------------------------------------------------------------------------------------------
def _sources(plug: str) -> list[str]:
    return cmds.listConnections(plug, source=True, destination=False, plugs=True) or []


def use_tangent_space_normal_maps(meshes: list[str]) -> None:
    """Normal textures through a tangent-space ``bump2d``; every texture keeps its imported colour space."""
    shading_engines = sorted(set(cmds.listConnections(meshes, type="shadingEngine") or [])) if meshes else []
    for shading_engine in shading_engines:
        for shader_plug in _sources(f"{shading_engine}.surfaceShader"):
            shader = shader_plug.split(".")[0]
            for file_node in set(cmds.listConnections(shader, source=True, destination=False, type="file") or []):
                cmds.setAttr(f"{file_node}.ignoreColorSpaceFileRules", 1)
            normal_sources = _sources(f"{shader}.normalCamera")
            if not normal_sources or cmds.nodeType(normal_sources[0].split(".")[0]) != "file":
                continue
            file_node = normal_sources[0].split(".")[0]
            bump = cmds.shadingNode("bump2d", asUtility=True, name=f"{file_node}_bump2d")
            cmds.setAttr(f"{bump}.bumpInterp", TANGENT_SPACE_NORMALS)
            cmds.disconnectAttr(normal_sources[0], f"{shader}.normalCamera")
            cmds.connectAttr(f"{file_node}.outAlpha", f"{bump}.bumpValue", force=True)
            cmds.connectAttr(f"{bump}.outNormal", f"{shader}.normalCamera", force=True)
            # bump2d decodes the raw texture itself: undo the 2x-1 the UsdUVTexture scale/bias became
            cmds.setAttr(f"{file_node}.colorGain", 1.0, 1.0, 1.0, type="double3")
            cmds.setAttr(f"{file_node}.colorOffset", 0.0, 0.0, 0.0, type="double3")
            cmds.setAttr(f"{file_node}.colorSpace", "Raw", type="string")


def create_proxy_stage(usda_path: str) -> str:
    """A ``mayaUsdProxyShape`` that keeps the asset as a live USD stage; returns its transform."""
    name = os.path.splitext(os.path.basename(usda_path))[0]
    transform = cmds.createNode("transform", name=name)
    shape = cmds.createNode("mayaUsdProxyShape", name=f"{name}Shape", parent=transform)
    cmds.setAttr(f"{shape}.filePath", usda_path, type="string")
    cmds.connectAttr("time1.outTime", f"{shape}.time")
    return transform
