"""What ``mayaUSDImport`` builds from a USD file, reduced to what the shim relies on (tests only).

Follows maya-usd's importer (lib/usd/translators/shading, lib/mayaUsd/fileio): one transform + mesh shape per
``UsdGeom.Mesh`` under the default prim; ``remapUVSetsTo`` renames ``st``; per bound material a
``shadingEngine`` and a ``standardSurface``; per ``UsdUVTexture`` a ``file`` node whose ``colorSpace`` is the
``colorSpace`` metadata of ``inputs:file`` when authored (``sourceColorSpace`` is not read; Maya's file rules
give ``sRGB`` otherwise), ``scale``/``bias`` as colour gain/offset, and its ``outColor`` wired straight into
the shader input (``normal`` → ``normalCamera``); from maya-usd 0.29 a ``blendShape`` per mesh with
blendshapes, targets in ``skel:blendShapes`` order at weight 0 (only time-sampled SkelAnimation weights are
keyed); with ``readAnimData`` and no ``frameRange`` the playback range is widened to the stage's time codes.
"""

from __future__ import annotations

SHADER_INPUTS = {"diffuseColor": "baseColor", "roughness": "specularRoughness", "normal": "normalCamera"}
OUTPUT_PLUGS = {"rgb": "outColor", "r": "outColorR", "g": "outColorG", "b": "outColorB", "a": "outAlpha"}


def _unique(session, name: str) -> str:
    candidate, n = name, 0
    while candidate in session.nodes:
        n += 1
        candidate = f"{name}{n}"
    return candidate


def _version(session) -> tuple[int, ...]:
    return tuple(int(p) for p in session.maya_usd_version.split(".")[:2])


def import_stage(session, path: str, flags: dict) -> list[str]:
    from pxr import Usd, UsdGeom, UsdShade, UsdSkel

    stage = Usd.Stage.Open(path)
    root = stage.GetDefaultPrim()
    top = "|" + _unique(session, root.GetName())
    session.nodes[top] = {"type": "transform", "file": path}
    remap = dict(tuple(pair) for pair in flags.get("remapUVSetsTo", []))

    if flags.get("readAnimData") and "frameRange" not in flags:
        start, end = stage.GetStartTimeCode(), stage.GetEndTimeCode()
        if start < session.timeline["minTime"]:
            session.timeline["minTime"] = start
        if end > session.timeline["maxTime"]:
            session.timeline["maxTime"] = end

    materials = {}
    for prim in Usd.PrimRange(root):
        relative = str(prim.GetPath().MakeRelativePath(root.GetPath()))
        if prim.IsA(UsdGeom.Xformable) and prim != root:
            session.nodes[top + "|" + relative.replace("/", "|")] = {"type": "transform"}
        if not prim.IsA(UsdGeom.Mesh):
            continue
        transform = top + "|" + relative.replace("/", "|")
        shape = f"{transform}|{prim.GetName()}Shape"
        session.nodes[shape] = {"type": "mesh", "uvSets": [remap.get("st", "st")]}
        bindings = [UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()[0]]
        bindings += [UsdShade.MaterialBindingAPI(child).ComputeBoundMaterial()[0] for child in prim.GetChildren()
                     if child.IsA(UsdGeom.Subset)]
        for material in bindings:
            if material:
                sg = materials.get(material.GetPath()) or _material(session, material)
                materials[material.GetPath()] = sg
                session.connections.append((f"{shape}.instObjGroups[0]", f"{sg}.dagSetMembers[0]"))
        names = UsdSkel.BindingAPI(prim).GetBlendShapesAttr().Get() or []
        if names and _version(session) >= (0, 29):
            blend = _unique(session, "blendShape1")
            session.nodes[blend] = {"type": "blendShape", "targets": list(names)}
            for i in range(len(names)):
                session.attributes[f"{blend}.weight[{i}]"] = 0.0
            session.connections.append((f"{blend}.outputGeometry[0]", f"{shape}.inMesh"))
    return [top]


def _material(session, material) -> str:
    from pxr import UsdShade

    name = material.GetPrim().GetName()
    sg = _unique(session, f"{name}SG")
    shader = _unique(session, name)
    session.nodes[sg] = {"type": "shadingEngine"}
    session.nodes[shader] = {"type": "standardSurface"}
    session.connections.append((f"{shader}.outColor", f"{sg}.surfaceShader"))
    surface = material.ComputeSurfaceSource()[0]
    for usd_input, maya_attr in SHADER_INPUTS.items():
        shader_input = surface.GetInput(usd_input) if surface else None
        sources = shader_input.GetConnectedSources()[0] if shader_input else []
        if not sources:
            continue
        texture = UsdShade.Shader(sources[0].source.GetPrim())
        file_node = _unique(session, texture.GetPrim().GetName())
        session.nodes[file_node] = {"type": "file"}
        file_input = texture.GetInput("file")
        session.attributes[f"{file_node}.fileTextureName"] = file_input.Get().path
        attr = file_input.GetAttr()
        session.attributes[f"{file_node}.colorSpace"] = attr.GetColorSpace() if attr.HasColorSpace() else "sRGB"
        session.attributes[f"{file_node}.ignoreColorSpaceFileRules"] = 0
        scale, bias = texture.GetInput("scale"), texture.GetInput("bias")
        session.attributes[f"{file_node}.colorGain"] = tuple(scale.Get())[:3] if scale else (1.0, 1.0, 1.0)
        session.attributes[f"{file_node}.colorOffset"] = tuple(bias.Get())[:3] if bias else (0.0, 0.0, 0.0)
        session.connections.append((f"{file_node}.{OUTPUT_PLUGS[sources[0].sourceName]}", f"{shader}.{maya_attr}"))
    return sg
