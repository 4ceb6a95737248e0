"""Materials of a head asset: one ``UsdShade.Material`` per material name the topology uses.

Each material holds a ``UsdPreviewSurface`` network (``UsdUVTexture`` per map, ``st`` through a
``UsdPrimvarReader_float2``; albedo sRGB, normal raw with scale (2,2,2,1) / bias (−1,−1,−1,0),
roughness raw) on ``outputs:surface`` and a MaterialX ``ND_standard_surface_surfaceshader`` network
on ``outputs:mtlx:surface``. Bindings go on the meshes' ``materialBind`` subsets, with
``MaterialBindingAPI`` applied.

Colour spaces are said twice on every ``UsdUVTexture``: the ``sourceColorSpace`` input (``sRGB`` /
``raw``: what Storm, Karma and the UsdPreviewSurface spec read) and the ``colorSpace`` metadata on
its ``inputs:file`` (Maya's names ``sRGB`` / ``Raw``: maya-usd's importer copies that metadata onto
the Maya file node's ``colorSpace`` and ignores ``sourceColorSpace``, and its exporter writes the
same pair).

The MaterialX network uses only node definitions present in both the MaterialX 1.38 and 1.39
standard libraries (Houdini 20.x and Maya 2024–2025 ship 1.38): the normal map goes through
``ND_normalmap_vector2`` (in both), not ``ND_normalmap_float`` (1.39 only) or ``ND_normalmap``
(1.38 only). ``tests/test_materialx_versions.py`` checks the network against both libraries.

Which materials get the textures: a material is textured when the UDIM tiles its faces' UVs lie in
overlap the map's tiles, and its name does not say it is an eye/teeth/mouth-interior part (ICT's
sclera and iris reuse the face's [0,1] tile but the face textures are not meant for them). The others
get constant colours chosen by name (see ``CONSTANT_LOOKS``).

Texture files: a material whose UVs lie in one tile samples that tile's file (``albedo.1002.png``,
wrap repeat), so every shading network names a concrete file that any renderer and
``UsdValidation``'s normal-map check can open; only a textured material spanning several tiles gets
the UDIM pattern ``albedo.<UDIM>.png``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from pxr import Gf, Sdf, Usd, UsdShade

from ..topology import ReferenceTopology
from . import layout
from .geometry import prim_name


@dataclass(frozen=True)
class ConstantLook:
    srgb: tuple[int, int, int]
    roughness: float = 0.5
    opacity: float = 1.0


# first match wins; sRGB 0-255 (converted to linear for the shaders)
CONSTANT_LOOKS: list[tuple[str, ConstantLook]] = [
    ("sclera|eyeball|eyewhite", ConstantLook((235, 230, 222), 0.15)),
    ("iris", ConstantLook((96, 62, 38), 0.2)),
    ("pupil", ConstantLook((8, 8, 8), 0.1)),
    ("cornea", ConstantLook((255, 255, 255), 0.02, 0.1)),
    ("lacrimal|tear", ConstantLook((255, 255, 255), 0.05, 0.15)),
    ("eye_?blend", ConstantLook((205, 160, 140), 0.5, 0.3)),
    ("occlusion", ConstantLook((40, 26, 20), 0.8, 0.5)),
    ("lash|brow", ConstantLook((26, 20, 17), 0.6)),
    ("teeth|tooth", ConstantLook((236, 226, 202), 0.3)),
    ("gum", ConstantLook((190, 96, 102), 0.4)),
    ("tongue", ConstantLook((182, 88, 94), 0.45)),
]
SKIN_LOOK = ConstantLook((205, 160, 140), 0.5)
NOT_SKIN = re.compile("|".join(p for p, _ in CONSTANT_LOOKS), re.IGNORECASE)

# map name → (UsdPreviewSurface input, its type, UsdUVTexture output, sourceColorSpace, Maya colorSpace)
MAP_WIRING = {
    "albedo": ("diffuseColor", Sdf.ValueTypeNames.Color3f, "rgb", "sRGB", "sRGB"),
    "normal": ("normal", Sdf.ValueTypeNames.Normal3f, "rgb", "raw", "Raw"),
    "roughness": ("roughness", Sdf.ValueTypeNames.Float, "r", "raw", "Raw"),
}
MTLX_NORMAL_MAP_ID = "ND_normalmap_vector2"
DEFAULT_MATERIAL = "M_Default"


def constant_look(material_name: str) -> ConstantLook:
    for pattern, look in CONSTANT_LOOKS:
        if re.search(pattern, material_name, re.IGNORECASE):
            return look
    return SKIN_LOOK


def srgb_to_linear(srgb: tuple[int, int, int]) -> Gf.Vec3f:
    c = np.asarray(srgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return Gf.Vec3f(*map(float, lin))


def material_tiles(topology: ReferenceTopology) -> dict[str, set[int]]:
    """UDIM tiles each material's faces lie in (by the mean uv of each face)."""
    if topology.uv_values is None:
        return {m.name: set() for m in topology.materials}
    counts = topology.face_vertex_counts
    uv = topology.uv_values[topology.uv_indices]  # (corners, 2)
    mean = np.add.reduceat(uv.astype(np.float64), topology.face_offsets[:-1], axis=0) / counts[:, None]  # (F, 2)
    tile = (1001 + np.floor(mean[:, 0]) + 10 * np.floor(mean[:, 1])).astype(np.int64)  # (F,)
    out: dict[str, set[int]] = {}
    for m in topology.materials:
        out.setdefault(m.name, set()).update(np.unique(tile[m.face_start:m.face_stop]).tolist())
    return out


def textured_maps(material_name: str, tiles: set[int], texture_files: dict[str, tuple[str, set[int]]],
                  textured_materials: set[str] | None) -> dict[str, str]:
    """Standard maps (name → relative file) this material samples: the one tile file when the
    material's UVs lie in one tile of the map (sampled with wrap "repeat"), else the UDIM pattern."""
    if textured_materials is not None:
        if material_name not in textured_materials:
            return {}
    elif NOT_SKIN.search(material_name):
        return {}
    out = {}
    for name, (pattern, map_tiles) in texture_files.items():
        common = tiles & map_tiles
        if name in MAP_WIRING and common:
            out[name] = layout.tile_file(pattern, common.pop()) if len(common) == 1 else pattern
    return out


def define_material(stage: Usd.Stage, looks: Sdf.Path, material_name: str, maps: dict[str, str]) -> UsdShade.Material:
    path = looks.AppendChild(prim_name(material_name))
    material = UsdShade.Material.Define(stage, path)
    material.GetPrim().SetCustomDataByKey(layout.MATERIAL_NAME_KEY, material_name)
    look = constant_look(material_name) if not maps else SKIN_LOOK
    _preview_network(stage, material, maps, look)
    _materialx_network(stage, material, maps, look)
    return material


def _preview_network(stage, material: UsdShade.Material, maps: dict[str, str], look: ConstantLook) -> None:
    path = material.GetPath()
    surface = UsdShade.Shader.Define(stage, path.AppendChild("PreviewSurface"))
    surface.SetShaderId("UsdPreviewSurface")
    surface.CreateInput("useSpecularWorkflow", Sdf.ValueTypeNames.Int).Set(0)
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    if look.opacity < 1.0:
        surface.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(look.opacity)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    if "albedo" not in maps:
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(srgb_to_linear(look.srgb))
    if "roughness" not in maps:
        surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(look.roughness)
    if not maps:
        return
    reader = UsdShade.Shader.Define(stage, path.AppendChild("StReader"))
    reader.SetShaderId("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
    st_out = reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    for map_name, file in maps.items():
        input_name, input_type, channel, color_space, maya_color_space = MAP_WIRING[map_name]
        tex = UsdShade.Shader.Define(stage, path.AppendChild(f"{map_name.capitalize()}Texture"))
        tex.SetShaderId("UsdUVTexture")
        file_input = tex.CreateInput("file", Sdf.ValueTypeNames.Asset)
        file_input.Set(Sdf.AssetPath("./" + file))
        file_input.GetAttr().SetColorSpace(maya_color_space)
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st_out)
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set(color_space)
        tex.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
        tex.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
        if map_name == "normal":
            tex.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(2, 2, 2, 1))
            tex.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(-1, -1, -1, 0))
        out_type = Sdf.ValueTypeNames.Float if channel == "r" else Sdf.ValueTypeNames.Float3
        out = tex.CreateOutput(channel, out_type)
        surface.CreateInput(input_name, input_type).ConnectToSource(out)


def _materialx_network(stage, material: UsdShade.Material, maps: dict[str, str], look: ConstantLook) -> None:
    path = material.GetPath()
    surface = UsdShade.Shader.Define(stage, path.AppendChild("MtlxStandardSurface"))
    surface.SetShaderId("ND_standard_surface_surfaceshader")
    surface.CreateInput("base", Sdf.ValueTypeNames.Float).Set(1.0)
    surface.CreateInput("metalness", Sdf.ValueTypeNames.Float).Set(0.0)
    if look.opacity < 1.0:
        surface.CreateInput("opacity", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(look.opacity))
    material.CreateSurfaceOutput("mtlx").ConnectToSource(surface.CreateOutput("out", Sdf.ValueTypeNames.Token))
    if "albedo" not in maps:
        surface.CreateInput("base_color", Sdf.ValueTypeNames.Color3f).Set(srgb_to_linear(look.srgb))
    if "roughness" not in maps:
        surface.CreateInput("specular_roughness", Sdf.ValueTypeNames.Float).Set(look.roughness)
    if not maps:
        return
    texcoord = UsdShade.Shader.Define(stage, path.AppendChild("MtlxTexcoord"))
    texcoord.SetShaderId("ND_geompropvalue_vector2")
    texcoord.CreateInput("geomprop", Sdf.ValueTypeNames.String).Set("st")
    uv_out = texcoord.CreateOutput("out", Sdf.ValueTypeNames.Float2)

    def image(map_name: str, node_id: str, out_type, color_space: str | None):
        node = UsdShade.Shader.Define(stage, path.AppendChild(f"Mtlx{map_name.capitalize()}Image"))
        node.SetShaderId(node_id)
        file_input = node.CreateInput("file", Sdf.ValueTypeNames.Asset)
        file_input.Set(Sdf.AssetPath("./" + maps[map_name]))
        if color_space:
            file_input.GetAttr().SetColorSpace(color_space)
        node.CreateInput("texcoord", Sdf.ValueTypeNames.Float2).ConnectToSource(uv_out)
        return node.CreateOutput("out", out_type)

    if "albedo" in maps:
        out = image("albedo", "ND_image_color3", Sdf.ValueTypeNames.Color3f, "srgb_texture")
        surface.CreateInput("base_color", Sdf.ValueTypeNames.Color3f).ConnectToSource(out)
    if "roughness" in maps:
        out = image("roughness", "ND_image_float", Sdf.ValueTypeNames.Float, None)
        surface.CreateInput("specular_roughness", Sdf.ValueTypeNames.Float).ConnectToSource(out)
    if "normal" in maps:
        out = image("normal", "ND_image_vector3", Sdf.ValueTypeNames.Float3, None)
        normal_map = UsdShade.Shader.Define(stage, path.AppendChild("MtlxNormalMap"))
        normal_map.SetShaderId(MTLX_NORMAL_MAP_ID)
        normal_map.CreateInput("in", Sdf.ValueTypeNames.Float3).ConnectToSource(out)
        normal_map.CreateInput("scale", Sdf.ValueTypeNames.Float2).Set(Gf.Vec2f(1.0, 1.0))
        surface.CreateInput("normal", Sdf.ValueTypeNames.Float3).ConnectToSource(
            normal_map.CreateOutput("out", Sdf.ValueTypeNames.Float3))


def bind(stage: Usd.Stage, mesh_path: Sdf.Path, subset_materials: dict[str, UsdShade.Material],
         mesh_material: UsdShade.Material | None) -> None:
    """Bind each ``materialBind`` subset (prim name → material), and the mesh itself when some of its
    faces have no material."""
    mesh_api = UsdShade.MaterialBindingAPI.Apply(stage.OverridePrim(mesh_path))
    if mesh_material is not None:
        mesh_api.Bind(mesh_material)
    for subset_name, material in subset_materials.items():
        api = UsdShade.MaterialBindingAPI.Apply(stage.OverridePrim(mesh_path.AppendChild(subset_name)))
        api.Bind(material)
