"""The Houdini package and HDA (expanded text form) against a recording fake ``hou``: the files parse,
the callbacks and cooks run, and the USD layer the LOP references / the SOP reads is checked with usd-core."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import make_quad_grid
from fakes import install_fake_hou
from fakes.head_assets import FakeGenerateHead, head_result, importer_problems

HOUDINI = Path(__file__).resolve().parents[1] / "integrations" / "houdini"
HDA = HOUDINI / "otls" / "topos_head.hda"
LOP_DIR, SOP_DIR = HDA / "Lop_1topos_2_2head_2_21.0", HDA / "Sop_1topos_2_2skin_2_21.0"
LOP_TYPE, SOP_TYPE = "topos::head::1.0", "topos::skin::1.0"
# (Houdini version, the Python versions its builds use): 20.0 ships 3.10 (a 3.9 variant exists, unsupported:
# topos_sdk needs 3.10), 20.5 ships 3.11 with 3.10 variant builds, 21.0 ships 3.11
HOUDINI_PYTHONS = {"20.0": ("3.10",), "20.5": ("3.10", "3.11"), "21.0": ("3.11",)}


# -- a small parser for the DialogScript brace grammar -------------------------------------------------------
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{}]|\n|[^\s{}"]+|"')


class Block(list):
    """A ``{ ... }`` block: a list of lines; a line is a list of words, quoted strings and nested Blocks."""


def parse_dialog_script(text: str) -> Block:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    tokens = TOKEN.findall("\n".join(lines))
    if '"' in tokens:
        raise ValueError("unterminated string")
    pos = 0

    def block() -> Block:
        nonlocal pos
        out, line = Block(), []
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if tok == "{":
                line.append(block())
            elif tok == "}":
                if line:
                    out.append(line)
                return out
            elif tok == "\n":
                if line:
                    out.append(line)
                line = []
            else:
                line.append(json.loads(tok) if tok.startswith('"') else tok)
        raise ValueError("missing }")

    while pos < len(tokens) and tokens[pos] == "\n":
        pos += 1
    if pos >= len(tokens) or tokens[pos] != "{":
        raise ValueError("a DialogScript is one { ... } block")
    pos += 1
    root = block()
    if any(t != "\n" for t in tokens[pos:]):
        raise ValueError("text after the closing }")
    return root


def entries(block: Block) -> dict:
    """``{key: rest_of_line}`` of a block (first occurrence), ``parmtag`` lines gathered as a dict."""
    out, tags = {}, {}
    for line in block:
        if line[0] == "parmtag":
            (pair,) = line[1:]
            (key, value), = pair
            tags[key] = value
        else:
            out.setdefault(line[0], line[1:])
    out["parmtag"] = tags
    return out


def parms_of(root: Block) -> dict[str, dict]:
    """Every ``parm { ... }`` in the script (folders included), by name."""
    found = {}
    for line in root:
        for item in line[1:]:
            if isinstance(item, Block):
                if line[0] == "parm":
                    e = entries(item)
                    found[e["name"][0]] = e
                else:
                    found.update(parms_of(item))
    return found


def dialog_parms(op_dir: Path) -> dict[str, dict]:
    return parms_of(parse_dialog_script((op_dir / "DialogScript").read_text()))


def make_node(hou, op_dir: Path, path: str):
    specs = {}
    for name, e in dialog_parms(op_dir).items():
        default = e["default"][0][0][0] if e.get("default") and e["default"][0] else ""
        specs[name] = (e["type"][0], default)
    return hou.Node(path, specs)


def load_python_module(hou, op_dir: Path, monkeypatch):
    """The HDA's PythonModule as hou.phm() sees it."""
    import types

    module = types.ModuleType("hdamodule")
    exec(compile((op_dir / "PythonModule").read_text(), f"{op_dir.name}/PythonModule", "exec"), module.__dict__)
    hou.set_phm(module)
    return module


def press(hou, node, op_dir: Path, parm: str) -> None:
    """Run a parameter's callback the way Houdini does: its script with ``kwargs`` in scope."""
    callback = dialog_parms(op_dir)[parm]["parmtag"]["script_callback"]
    exec(compile(callback, f"{parm} callback", "exec"), {"hou": hou, "kwargs": {"node": node, "parm": node.parm(parm)}})


def cook(hou, node, op_dir: Path) -> None:
    hou.set_pwd(node)
    exec(compile((op_dir / "PythonCook").read_text(), f"{op_dir.name}/PythonCook", "exec"), {"hou": hou})


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture
def hou(monkeypatch):
    return install_fake_hou(monkeypatch)


@pytest.fixture
def result():
    return head_result(make_quad_grid(), seed=4)


@pytest.fixture
def portrait(tmp_path):
    from PIL import Image
    from skimage import data

    path = tmp_path / "portrait.jpg"
    Image.fromarray(data.astronaut()[:160, 120:280]).save(path)
    return path


@pytest.fixture
def generator(monkeypatch, result):
    fake = FakeGenerateHead(result)
    monkeypatch.setattr("topos_sdk.generate.generate_head", fake)
    return fake


@pytest.fixture
def lop(hou, monkeypatch, portrait, tmp_path):
    node = make_node(hou, LOP_DIR, "/stage/topos_head1")
    node.parm("portrait").set(str(portrait))
    node.parm("output_folder").set(str(tmp_path / "heads"))
    load_python_module(hou, LOP_DIR, monkeypatch)
    hou.calls.clear()
    return node


# -- the files ------------------------------------------------------------------------------------------------
def resolve_package(package_file: Path, houdini_version: str, python: str, environ: dict) -> list[Path] | None:
    """What Houdini does with a package file at start-up, for one Houdini and one Python version: ``None`` when
    the package is not enabled, else the folders Python imports from (``hpath``'s ``pythonX.Ylibs`` and the
    package's ``PYTHONPATH``)."""
    package = json.loads(package_file.read_text())
    enable = package.get("enable", "true")
    match = re.fullmatch(r"houdini_version\s*>=\s*'([\d.]+)'", enable.strip())
    assert match or enable == "true", f"enable expression the test does not understand: {enable}"
    if match and tuple(map(int, houdini_version.split("."))) < tuple(map(int, match.group(1).split("."))):
        return None
    variables = dict(environ, HOUDINI_PACKAGE_PATH=str(package_file.parent))
    expand = lambda text: re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), ""), text)  # noqa: E731
    for entry in package.get("env", []):
        for name, value in entry.items():
            text, method = (value["value"], value.get("method", "replace")) if isinstance(value, dict) else (value, "replace")
            text = expand(text)
            old = variables.get(name, "")
            variables[name] = {"prepend": f"{text}{os.pathsep}{old}", "append": f"{old}{os.pathsep}{text}"}.get(
                method, text).strip(os.pathsep)
    hpaths = [Path(expand(h)) for h in ([package["hpath"]] if isinstance(package.get("hpath"), str)
                                        else package.get("hpath", []))]
    python_path = [Path(p) for p in variables.get("PYTHONPATH", "").split(os.pathsep) if p]
    return python_path + [h / f"python{python}libs" for h in hpaths]


def test_package_resolves_topos_houdini_for_every_enabled_houdini_and_python(tmp_path):
    """Houdini 20.0 and the 20.5 Python 3.10 builds import from python3.10libs, not python3.11libs: the code
    must be reachable for every Python the enabled versions use, and parse there."""
    import ast

    from topos_sdk.cli.integrations_cmd import install

    package_file = HOUDINI / "packages" / "topos.json"
    installed = install("houdini", tmp_path / "packages", source=HOUDINI.parent)
    for entry in (package_file, installed):
        for houdini_version, pythons in HOUDINI_PYTHONS.items():
            for python in pythons:
                folders = resolve_package(entry, houdini_version, python, {})
                assert folders is not None, f"package disabled in Houdini {houdini_version}"
                found = [f for f in folders if (f / "topos_houdini" / "__init__.py").is_file()]
                assert found, f"Houdini {houdini_version} / Python {python}: topos_houdini not importable"
                minor = int(python.split(".")[1])
                for source in list(found[0].rglob("*.py")):
                    ast.parse(source.read_text(), str(source), feature_version=(3, minor))
        assert resolve_package(entry, "19.5", "3.9", {}) is None, "older Houdini is not enabled"
    hpath = Path(re.sub(r"\$(\w+)", lambda m: {"HOUDINI_PACKAGE_PATH": str(package_file.parent),
                                                  "TOPOS_HOUDINI": str(package_file.parent / "..")}[m.group(1)],
                        json.loads(package_file.read_text())["hpath"])).resolve()
    assert hpath == HOUDINI.resolve()
    assert (hpath / "otls" / "topos_head.hda" / "houdini.hdalibrary").is_file()
    assert not list(HOUDINI.glob("python3.*libs")), "one version-neutral python/ folder, no per-version copies"


def test_hda_sections_lists_match_the_files():
    def listed(folder: Path) -> dict[str, str]:
        lines = (folder / "Sections.list").read_text().splitlines()
        assert lines[0] == '""'
        return dict(line.split("\t") for line in lines[1:] if line)

    top = listed(HDA)
    assert {p.name for p in HDA.iterdir()} == set(top) | {"Sections.list"}
    operators = {v: k for k, v in top.items() if "/" in v}
    assert operators == {f"Lop/{LOP_TYPE}": LOP_DIR.name, f"Sop/{SOP_TYPE}": SOP_DIR.name}
    for table_and_name in operators:
        assert re.fullmatch(r"\w+/topos::\w+::\d+\.\d+", table_and_name), "namespace::name::version"
    index = (HDA / "INDEX__SECTION").read_text()
    blocks = [dict(re.findall(r"^(\w+):[ \t]*(.*)$", b, re.M)) for b in index.strip().split("\n\n")]
    assert {f"{b['Table']}/{b['Operator']}" for b in blocks} == set(operators)
    assert all(b["Python"] == "true" for b in blocks), "both cook in Python (PythonCook section)"
    assert {b["Path"] for b in blocks} == {f"oplib:/{o}?{o}" for o in operators}
    for op_dir, type_name in ((LOP_DIR, LOP_TYPE), (SOP_DIR, SOP_TYPE)):
        root = parse_dialog_script((op_dir / "DialogScript").read_text())
        assert entries(root)["name"] == [type_name] and entries(root)["script"] == [type_name]
        sections = listed(op_dir)
        assert set(sections) == {p.name for p in op_dir.iterdir()} - {"Sections.list"}
        options = json.loads((op_dir / "ExtraFileOptions").read_text())
        assert options["PythonCook/IsPython"]["value"] is True and options["PythonModule/IsPython"]["value"] is True
        shelf = ET.parse(op_dir / "Tools.shelf").getroot()
        assert shelf.find("tool/toolSubmenu").text == "TOPOS"
        assert "if (" in (op_dir / "CreateScript").read_text()


def test_dialog_scripts_parse_with_the_parameters_the_issue_asks_for():
    lop_parms = dialog_parms(LOP_DIR)
    for name, kind in {"portrait": "image", "server": "string", "engine": "string", "seed": "integer",
                       "texture_size": "string", "output_folder": "directory", "generate": "button",
                       "asset_file": "file", "primpath": "string"}.items():
        assert lop_parms[name]["type"] == [kind], name
    engines = [line[0] for line in lop_parms["engine"]["menu"][0]]
    assert engines == ["classic", "topos"]
    assert [int(line[0]) for line in lop_parms["texture_size"]["menu"][0]] == [512, 1024, 2048]
    for parm in lop_parms.values():
        callback = parm["parmtag"].get("script_callback")
        if callback:
            compile(callback, "callback", "exec")
            assert parm["parmtag"]["script_callback_language"] == "python"
    sop_parms = dialog_parms(SOP_DIR)
    assert sop_parms["meshes"]["default"] == [[["skin"]]]
    assert sop_parms["asset_file"]["type"] == ["file"]
    for bad in ('{ parm { name "x" }', '{ name "unterminated }', '{ } }'):
        with pytest.raises(ValueError):
            parse_dialog_script(bad)


def test_python_sections_compile():
    for op_dir in (LOP_DIR, SOP_DIR):
        for section in ("PythonModule", "PythonCook"):
            compile((op_dir / section).read_text(), f"{op_dir.name}/{section}", "exec")


# -- the LOP ----------------------------------------------------------------------------------------------
def test_generate_button_writes_the_asset_and_the_cook_references_it(hou, lop, generator, result, portrait):
    from pxr import Usd, UsdGeom

    lop.parm("seed").set(5)
    lop.parm("engine").set("topos")
    lop.parm("texture_size").set("2048")
    lop.parm("server").set("farm:50051")
    press(hou, lop, LOP_DIR, "generate")

    (call,) = generator.calls
    assert (call["seed"], call["engine"], call["texture_size"], call["server"]) == (5, "topos", 2048, "farm:50051")
    asset = lop.parm("asset_file").eval()
    assert asset.endswith(".usda") and Path(asset).is_file()
    assert importer_problems(asset, result) == []
    ((args, kw),) = hou.calls_to("InterruptableOperation")
    assert kw["open_interrupt_dialog"] is True
    fractions = [a[0] for a, _ in hou.calls_to("updateLongProgress")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    lop.stage = Usd.Stage.CreateInMemory()
    cook(hou, lop, LOP_DIR)
    head = lop.stage.GetPrimAtPath("/head")
    refs = head.GetMetadata("references")
    assert [r.assetPath for r in refs.GetAddedOrExplicitItems()] == [asset]
    meshes = [UsdGeom.Mesh(p) for p in Usd.PrimRange(head) if p.IsA(UsdGeom.Mesh)]
    ids = np.concatenate([np.asarray(UsdGeom.PrimvarsAPI(m).GetPrimvar("topos:vertexId").Get()) for m in meshes])
    pts = np.concatenate([np.asarray(m.GetPointsAttr().Get()) for m in meshes])
    np.testing.assert_allclose(pts, result.points[ids], atol=1e-6)


def test_same_inputs_reuse_the_cached_asset(hou, lop, generator, portrait, tmp_path):
    from pxr import Usd

    press(hou, lop, LOP_DIR, "generate")
    first = lop.parm("asset_file").eval()
    press(hou, lop, LOP_DIR, "generate")
    assert len(generator.calls) == 1 and lop.parm("asset_file").eval() == first

    copy = tmp_path / "renamed copy.jpg"  # same bytes under another name: the key is the image hash
    copy.write_bytes(Path(portrait).read_bytes())
    lop.parm("portrait").set(str(copy))
    press(hou, lop, LOP_DIR, "generate")
    assert len(generator.calls) == 1 and lop.parm("asset_file").eval() == first
    copy.write_bytes(Path(portrait).read_bytes() + b"\0")  # other bytes: another head
    press(hou, lop, LOP_DIR, "generate")
    assert len(generator.calls) == 2

    lop.parm("portrait").set(str(portrait))
    lop.parm("seed").set(9)
    lop.stage = Usd.Stage.CreateInMemory()
    with pytest.raises(hou.NodeWarning, match="press Generate"):
        cook(hou, lop, LOP_DIR)  # the referenced head no longer matches the parameters
    press(hou, lop, LOP_DIR, "generate")
    assert len(generator.calls) == 3 and generator.calls[-1]["seed"] == 9
    assert lop.parm("asset_file").eval() != first
    lop.parm("seed").set(0)
    press(hou, lop, LOP_DIR, "generate")
    assert len(generator.calls) == 3 and lop.parm("asset_file").eval() == first, "back to a cached key"


def test_cook_without_a_head_warns(hou, lop):
    from pxr import Usd

    lop.stage = Usd.Stage.CreateInMemory()
    with pytest.raises(hou.NodeWarning, match="press Generate"):
        cook(hou, lop, LOP_DIR)
    assert not lop.stage.GetPrimAtPath("/head")


def test_failure_is_one_error_message(hou, lop, monkeypatch, result):
    from topos_sdk.errors import NoFaceFound

    monkeypatch.setattr("topos_sdk.generate.generate_head", FakeGenerateHead(result, fail=NoFaceFound("no face found")))
    press(hou, lop, LOP_DIR, "generate")
    ((text, kw),) = hou.messages
    assert "no face found" in text and kw["severity"] is hou.severityType.Error
    assert lop.parm("asset_file").eval() == ""

    hou.ui_available = False  # hython / render farm: a node error instead of a dialog
    with pytest.raises(hou.NodeError, match="no face found"):
        press(hou, lop, LOP_DIR, "generate")


def test_interrupt_leaves_no_asset(hou, lop, generator, tmp_path):
    hou.interrupt_after = 1
    press(hou, lop, LOP_DIR, "generate")
    assert lop.parm("asset_file").eval() == "" and not hou.messages
    assert not list((tmp_path / "heads").rglob("*.usda"))


# -- the SOP ----------------------------------------------------------------------------------------------
def sop_for(hou, asset, meshes="skin", to_meters=0, posed=1):
    node = make_node(hou, SOP_DIR, "/obj/geo1/topos_skin1")
    node.parm("asset_file").set(str(asset))
    node.parm("meshes").set(meshes)
    node.parm("to_meters").set(to_meters)
    node.parm("posed").set(posed)
    return node


def test_sop_imports_the_skin_with_uv_and_id(hou, result, tmp_path):
    from pxr import Usd, UsdGeom

    from topos_sdk.usd import write_head_asset

    asset = write_head_asset(result, tmp_path, name="quad", thumbnail=False)
    node = sop_for(hou, asset)
    cook(hou, node, SOP_DIR)
    geo = node.geometry()

    stage = Usd.Stage.Open(str(asset))
    (skin,) = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh) and p.GetName() == "skin"]
    counts = np.asarray(skin.GetFaceVertexCountsAttr().Get())
    indices = np.asarray(skin.GetFaceVertexIndicesAttr().Get())
    st = np.asarray(UsdGeom.PrimvarsAPI(skin).GetPrimvar("st").ComputeFlattened())
    ids = geo.values[("point", "id")]
    np.testing.assert_array_equal(ids, np.asarray(UsdGeom.PrimvarsAPI(skin).GetPrimvar("topos:vertexId").Get()))
    np.testing.assert_allclose(geo.points, result.posed_points()[ids], atol=1e-5), "posed by default, as the LOP"
    assert [len(p) for p in geo.polygons] == counts.tolist()
    # Houdini winds polygons the other way: the same corners, reversed, with their uvs
    first = tuple(int(i) for i in indices[: counts[0]])
    assert geo.polygons[0] == first[::-1]
    uv = geo.values[("vertex", "uv")]
    np.testing.assert_allclose(uv[: counts[0], :2], st[: counts[0]][::-1])
    assert np.all(uv[:, 2] == 0)
    assert set(geo.values[("prim", "name")]) == {"skin"}


def test_sop_all_meshes_on_two_ict_heads_26719_points_in_reference_order(hou, tmp_path):
    """The TD checklist, automated: combined meshes have 26,719 points, point i is reference vertex i."""
    from topos_server.assets.cache import AssetCache

    from topos_sdk.usd import write_head_asset

    topology = AssetCache.default().ict_topology()
    heads = []
    for seed in (1, 2):
        result = head_result(topology, seed=seed)
        asset = write_head_asset(result, tmp_path, name=f"ict{seed}", thumbnail=False)
        assert importer_problems(asset, result) == []
        node = sop_for(hou, asset, meshes="*", to_meters=1)
        cook(hou, node, SOP_DIR)
        heads.append((result, node.geometry()))
    for result, geo in heads:
        assert len(geo.points) == 26719 == result.num_points
        np.testing.assert_array_equal(geo.values[("point", "id")], np.arange(26719))
        np.testing.assert_allclose(geo.points, result.posed_points() * 0.01, atol=1e-6)  # cm -> m
        assert len(geo.polygons) == len(topology.face_vertex_counts)
        assert {"skin", "teeth"} <= set(geo.values[("prim", "name")])
    (a, geo_a), (b, geo_b) = heads
    assert not np.allclose(geo_a.points, geo_b.points), "two different heads"
    # vertex 0 is the same point of the face on both: the same reference vertex, near the same place
    assert np.linalg.norm(geo_a.points[0] - geo_b.points[0]) < 0.01 * 0.1
    assert geo_a.polygons == geo_b.polygons


def test_sop_without_asset_warns_and_bad_pattern_errors(hou, result, tmp_path):
    from topos_sdk.usd import write_head_asset

    node = sop_for(hou, "")
    with pytest.raises(hou.NodeWarning):
        cook(hou, node, SOP_DIR)
    asset = write_head_asset(result, tmp_path, name="quad", thumbnail=False)
    node = sop_for(hou, asset, meshes="teeth")
    with pytest.raises(hou.NodeError, match="no mesh named teeth"):
        cook(hou, node, SOP_DIR)


def test_sop_posed_toggle_matches_what_the_lop_shows(hou, result, tmp_path):
    """Posed (default) = the asset's blendshape weights applied, as UsdSkel (the LOP, Karma) shows the head;
    off = the neutral points as stored."""
    from topos_sdk.usd import write_head_asset

    asset = write_head_asset(result, tmp_path, name="quad", thumbnail=False)
    assert dialog_parms(SOP_DIR)["posed"]["default"] == [[["1"]]]
    posed, neutral = sop_for(hou, asset, meshes="*", posed=1), None
    cook(hou, posed, SOP_DIR)
    posed_points = posed.geometry().points.copy()
    neutral = sop_for(hou, asset, meshes="*", posed=0)
    cook(hou, neutral, SOP_DIR)
    np.testing.assert_allclose(posed_points, result.posed_points(), atol=1e-5)
    np.testing.assert_allclose(neutral.geometry().points, result.points, atol=1e-6)
    assert not np.allclose(posed_points, neutral.geometry().points), "the expression moves the face"


# -- units and paths --------------------------------------------------------------------------------------
def world_points(stage, prim_path="/head"):
    from pxr import Usd, UsdGeom

    cache = UsdGeom.XformCache()
    out = []
    for prim in Usd.PrimRange(stage.GetPrimAtPath(prim_path)):
        if prim.IsA(UsdGeom.Mesh):
            matrix = cache.GetLocalToWorldTransform(prim)
            out += [matrix.Transform(p) for p in UsdGeom.Mesh(prim).GetPointsAttr().Get()]
    return np.asarray(out, np.float64)


@pytest.mark.parametrize("stage_meters_per_unit, expected_scale", [(None, 0.01), (1.0, 0.01), (0.01, 1.0)])
def test_lop_scales_the_centimetre_asset_into_the_stage_units(hou, lop, generator, result, stage_meters_per_unit,
                                                              expected_scale):
    """A Solaris stage is in metres (authored or not): the head must come in at 1/100 of the asset's numbers,
    by a scale op on the referencing prim, outermost."""
    from pxr import Usd, UsdGeom

    press(hou, lop, LOP_DIR, "generate")
    lop.stage = Usd.Stage.CreateInMemory()
    if stage_meters_per_unit is not None:
        UsdGeom.SetStageMetersPerUnit(lop.stage, stage_meters_per_unit)
    cook(hou, lop, LOP_DIR)

    head = UsdGeom.Xformable(lop.stage.GetPrimAtPath("/head"))
    ops = head.GetOrderedXformOps()
    if expected_scale == 1.0:
        assert ops == [], "same units: nothing authored"
    else:
        assert ops[0].GetOpName() == "xformOp:scale:toposUnits"
        assert tuple(ops[0].Get()) == pytest.approx((expected_scale,) * 3)
    asset_points = np.concatenate([np.asarray(UsdGeom.Mesh(p).GetPointsAttr().Get()) for p in
                                   Usd.PrimRange(lop.stage.GetPrimAtPath("/head")) if p.IsA(UsdGeom.Mesh)])
    np.testing.assert_allclose(world_points(lop.stage), asset_points * expected_scale, atol=1e-7)


def test_lop_unit_conversion_can_be_turned_off(hou, lop, generator):
    from pxr import Usd, UsdGeom

    press(hou, lop, LOP_DIR, "generate")
    assert dialog_parms(LOP_DIR)["convert_units"]["default"] == [[["1"]]]
    lop.parm("convert_units").set(0)
    lop.stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageMetersPerUnit(lop.stage, 1.0)
    cook(hou, lop, LOP_DIR)
    assert UsdGeom.Xformable(lop.stage.GetPrimAtPath("/head")).GetOrderedXformOps() == []


def test_lop_unit_scale_wraps_the_assets_own_transform(hou, lop, tmp_path):
    """An asset whose root prim has its own ops keeps them; the unit scale is applied outside them."""
    from pxr import Gf, Usd, UsdGeom

    asset = tmp_path / "moved.usda"
    layer_stage = Usd.Stage.CreateNew(str(asset))
    UsdGeom.SetStageMetersPerUnit(layer_stage, 0.01)
    root = UsdGeom.Xform.Define(layer_stage, "/moved")
    root.AddTranslateOp().Set(Gf.Vec3d(10, 0, 0))
    UsdGeom.Cube.Define(layer_stage, "/moved/box")
    layer_stage.SetDefaultPrim(root.GetPrim())
    layer_stage.GetRootLayer().Save()
    lop.parm("asset_file").set(str(asset))
    lop.stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageMetersPerUnit(lop.stage, 1.0)
    cook(hou, lop, LOP_DIR)
    head = UsdGeom.Xformable(lop.stage.GetPrimAtPath("/head"))
    assert [op.GetOpName() for op in head.GetOrderedXformOps()] == ["xformOp:scale:toposUnits", "xformOp:translate"]
    assert head.ComputeLocalToWorldTransform(0).ExtractTranslation() == Gf.Vec3d(0.1, 0, 0)


def test_asset_file_is_stored_relative_to_hip_or_job_with_forward_slashes(hou, lop, generator, tmp_path):
    from pxr import Usd

    hou.env["HIP"] = str(tmp_path)
    hou.env["JOB"] = str(tmp_path.parent)
    lop.parm("output_folder").set("$HIP/heads")
    press(hou, lop, LOP_DIR, "generate")
    stored = lop.parm("asset_file").unexpandedString()
    assert stored.startswith("$HIP/heads/") and stored.endswith(".usda") and "\\" not in stored
    assert Path(lop.parm("asset_file").evalAsString()).is_file()
    lop.stage = Usd.Stage.CreateInMemory()
    cook(hou, lop, LOP_DIR)
    refs = lop.stage.GetPrimAtPath("/head").GetMetadata("references").GetAddedOrExplicitItems()
    assert [Path(r.assetPath) for r in refs] == [Path(lop.parm("asset_file").evalAsString())]

    from topos_houdini.head_lop import portable_path

    assert portable_path(str(tmp_path.parent / "other" / "a.usda")) == "$JOB/other/a.usda"
    outside = Path("/somewhere/else/a.usda")
    assert portable_path(str(outside)) == outside.as_posix()
