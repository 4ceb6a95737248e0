"""The MaterialX network of a head asset resolves against the MaterialX 1.38 and 1.39 standard libraries.

Houdini 20.0/20.5 and Maya 2024/2025 ship MaterialX 1.38, Houdini 21 and Maya 2026 ship 1.39. Every
``ND_*`` shader of the asset's ``mtlx:surface`` network must name a node definition both libraries have,
with inputs and connections of the types that definition declares; the network is also rebuilt as a
MaterialX document whose nodes the ``materialx`` package validates against each library. The 1.38 library
is vendored (tests/materialx_libraries/README.md); the 1.39 library is the pinned package's own.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from conftest import make_quad_grid
from fakes.head_assets import head_result

mx = pytest.importorskip("MaterialX", reason="the dev extra installs materialx (pinned)")

PINNED_PACKAGE = "1.39.4"
LIBRARY_1_38 = Path(__file__).resolve().parent / "materialx_libraries" / "1.38.10"
LIBRARY_FILES = {"stdlib_defs.mtlx": "stdlib", "pbrlib_defs.mtlx": "pbrlib", "standard_surface.mtlx": "bxdf"}

# USD value type of a shader input/output -> the MaterialX type it stands for
USD_TO_MTLX_TYPE = {
    "float": "float", "float2": "vector2", "float3": "vector3", "float4": "vector4", "normal3f": "vector3",
    "vector3f": "vector3", "color3f": "color3", "color4f": "color4", "asset": "filename", "string": "string",
    "int": "integer", "bool": "boolean", "token": "surfaceshader",
}


def _read_library(texts: dict[str, str]):
    library = mx.createDocument()
    options = mx.XmlReadOptions()
    options.upgradeVersion = False  # judge the 1.38 definitions as 1.38 wrote them
    for name, text in texts.items():
        part = mx.createDocument()
        mx.readFromXmlString(part, text, mx.FileSearchPath(), options)
        library.importLibrary(part)
    return library


def library_1_38():
    return _read_library({n: lzma.decompress((LIBRARY_1_38 / f"{n}.xz").read_bytes()).decode()
                          for n in LIBRARY_FILES})


def library_1_39():
    root = Path(mx.__file__).resolve().parent / "libraries"
    return _read_library({n: (root / folder / n).read_text() for n, folder in LIBRARY_FILES.items()})


LIBRARIES = {"1.38.10": library_1_38, "1.39.4": library_1_39}


@pytest.fixture(scope="module")
def mtlx_networks(tmp_path_factory):
    """{material path: [(shader id, {input: (usd type, value or (source shader, output))}, output types)]}"""
    from pxr import Usd, UsdShade
    from topos_sdk.usd import write_head_asset

    result = head_result(make_quad_grid(), seed=2)
    asset = write_head_asset(result, tmp_path_factory.mktemp("mtlx"), name="head", thumbnail=False)
    stage = Usd.Stage.Open(str(asset))
    networks = {}
    for prim in stage.Traverse():
        if not prim.IsA(UsdShade.Material):
            continue
        surface = UsdShade.Material(prim).ComputeSurfaceSource("mtlx")[0]
        assert surface, f"{prim.GetPath()}: no mtlx:surface"
        shaders, todo = {}, [surface]
        while todo:
            shader = todo.pop()
            if shader.GetPath() in shaders:
                continue
            inputs = {}
            for shader_input in shader.GetInputs():
                sources = shader_input.GetConnectedSources()[0]
                if sources:
                    upstream = UsdShade.Shader(sources[0].source.GetPrim())
                    todo.append(upstream)
                    inputs[shader_input.GetBaseName()] = (str(shader_input.GetTypeName()),
                                                          (upstream.GetPath().name, sources[0].sourceName))
                else:
                    inputs[shader_input.GetBaseName()] = (str(shader_input.GetTypeName()), shader_input.Get())
            outputs = {o.GetBaseName(): str(o.GetTypeName()) for o in shader.GetOutputs()}
            shaders[shader.GetPath()] = (shader.GetPath().name, shader.GetShaderId(), inputs, outputs)
        networks[str(prim.GetPath())] = list(shaders.values())
    assert any(any(s[1].startswith("ND_normalmap") for s in net) for net in networks.values()), \
        "the test head has a normal map"
    return networks


def resolution_problems(network, library) -> list[str]:
    """Why ``network`` would not resolve with ``library`` (empty = it resolves)."""
    problems = []
    by_name = {name: (shader_id, outputs) for name, shader_id, _, outputs in network}
    for name, shader_id, inputs, outputs in network:
        nodedef = library.getNodeDef(shader_id)
        if nodedef is None:
            problems.append(f"{name}: no node definition {shader_id}")
            continue
        for input_name, (usd_type, value) in inputs.items():
            declared = nodedef.getActiveInput(input_name)
            if declared is None:
                problems.append(f"{name}: {shader_id} has no input {input_name}")
                continue
            if USD_TO_MTLX_TYPE.get(usd_type.split(":")[0]) != declared.getType():
                problems.append(f"{name}.{input_name}: USD {usd_type} for MaterialX {declared.getType()}")
            if isinstance(value, tuple) and value[0] in by_name:
                source_id, _ = by_name[value[0]]
                source_def = library.getNodeDef(source_id)
                source_out = source_def.getActiveOutput(value[1]) if source_def is not None else None
                if source_out is not None and source_out.getType() != declared.getType():
                    problems.append(f"{name}.{input_name}: fed {source_out.getType()} from {value[0]}")
        for output_name in outputs:
            if nodedef.getActiveOutput(output_name) is None:
                problems.append(f"{name}: {shader_id} has no output {output_name}")
    return problems


def as_materialx_document(network, library):
    """The network as a MaterialX document (one node per shader, explicit nodedefs) on top of ``library``."""
    doc = mx.createDocument()
    doc.importLibrary(library)
    for name, shader_id, _, _ in network:
        nodedef = library.getNodeDef(shader_id)
        node = doc.addNode(nodedef.getNodeString(), name, nodedef.getType())
        node.setNodeDefString(shader_id)
    for name, shader_id, inputs, _ in network:
        node, nodedef = doc.getNode(name), library.getNodeDef(shader_id)
        for input_name, (_, value) in inputs.items():
            declared = nodedef.getActiveInput(input_name)
            node_input = node.addInput(input_name, declared.getType())
            if isinstance(value, tuple):
                node_input.setNodeName(value[0])
            elif hasattr(value, "path"):
                node_input.setValueString(value.path)
            elif hasattr(value, "__len__") and not isinstance(value, str):
                node_input.setValueString(", ".join(str(float(v)) for v in value))
            else:
                node_input.setValueString(str(value).lower() if isinstance(value, bool) else str(value))
    return doc


def test_the_pinned_package_is_the_one_tested():
    assert mx.getVersionString() == PINNED_PACKAGE, "update PINNED_PACKAGE, the README and the dev extra together"
    assert library_1_38().getNodeDef("ND_normalmap") is not None, "the vendored 1.38 library is readable"


@pytest.mark.parametrize("version", sorted(LIBRARIES))
def test_mtlx_network_resolves_with_the_standard_library(version, mtlx_networks):
    library = LIBRARIES[version]()
    for material, network in mtlx_networks.items():
        assert resolution_problems(network, library) == [], f"{material} with MaterialX {version}"
        doc = as_materialx_document(network, library)
        for node in doc.getNodes():
            # the node, not the whole document: 1.38's own nodegraphs use `channels`, which the 1.39 API refuses
            valid, message = node.validate()
            assert valid, f"{material} with MaterialX {version}: {message}"
            assert node.getNodeDef() is not None and node.getNodeDef().getName() == node.getNodeDefString()


def test_the_check_rejects_a_normal_map_node_that_only_1_39_has(mtlx_networks):
    """The network the SDK wrote before (ND_normalmap_float) resolves in 1.39 and not in 1.38."""
    network = next(net for net in mtlx_networks.values() if any(s[1].startswith("ND_normalmap") for s in net))
    old = [(n, "ND_normalmap_float" if i.startswith("ND_normalmap") else i,
            {k: v for k, v in ins.items() if k != "scale"} if i.startswith("ND_normalmap") else ins, outs)
           for n, i, ins, outs in network]
    assert resolution_problems(old, library_1_39()) == []
    assert any("no node definition ND_normalmap_float" in p for p in resolution_problems(old, library_1_38()))
