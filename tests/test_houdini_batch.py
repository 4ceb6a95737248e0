"""Headless Houdini: ``hython -m topos_houdini.batch`` and the TOPs/PDG work-item entry point, against the
recording fake ``hou`` and a fake ``generate_head``; the assets they hand on are opened with usd-core."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_quad_grid
from fakes import install_fake_hou
from fakes.head_assets import FakeGenerateHead, head_result, importer_problems
from test_houdini_integration import LOP_DIR, LOP_TYPE, dialog_parms


@pytest.fixture
def hou(monkeypatch):
    fake = install_fake_hou(monkeypatch)
    fake.node_types[f"Lop/{LOP_TYPE}"] = {name: (e["type"][0], e["default"][0][0][0] if e.get("default") else "")
                                           for name, e in dialog_parms(LOP_DIR).items()}
    fake.Node("/stage", {})
    return fake


@pytest.fixture
def result():
    return head_result(make_quad_grid(), seed=6)


@pytest.fixture
def generator(monkeypatch, result):
    fake = FakeGenerateHead(result)
    monkeypatch.setattr("topos_sdk.generate.generate_head", fake)
    return fake


@pytest.fixture
def portraits(tmp_path):
    from PIL import Image
    from skimage import data

    folder = tmp_path / "portraits"
    folder.mkdir()
    image = data.astronaut()
    Image.fromarray(image[:160, 120:280]).save(folder / "ada.jpg")
    Image.fromarray(image[10:170, 120:280]).save(folder / "grace.png")
    (folder / "notes.txt").write_text("not a portrait")
    return folder


def test_batch_generates_every_portrait_and_builds_a_saved_lop_network(hou, generator, result, portraits,
                                                                       tmp_path, capsys):
    from topos_houdini import batch

    hou.env["HIP"] = str(tmp_path)
    out, hip = tmp_path / "heads", tmp_path / "heads.hip"
    assert batch.main([str(portraits), "-o", str(out), "--seed", "4", "--server", "farm:50051",
                       "--hip", str(hip)]) == 0
    assert [Path(c["image"]).name for c in generator.calls] == ["ada.jpg", "grace.png"]
    assert all(c["seed"] == 4 and c["server"] == "farm:50051" for c in generator.calls)
    lines = capsys.readouterr().out.splitlines()
    assets = [Path(line.split("\t")[1]) for line in lines]
    assert len(assets) == 2 and all(importer_problems(a, result) == [] for a in assets)

    assert hou.saved_hip_files == [str(hip)]
    heads = [n for path, n in hou.nodes.items() if path.startswith("/stage/")]
    assert [n.type_name for n in heads] == [LOP_TYPE, LOP_TYPE]
    assert heads[1].inputs[0] is heads[0] and heads[1].display, "chained, display on the last"
    assert heads[0].parm("asset_file").unexpandedString().startswith("$HIP/heads/")
    assert Path(heads[0].parm("asset_file").evalAsString()) == assets[0]
    assert {n.parm("primpath").evalAsString() for n in heads} == {f"/heads/{a.stem}" for a in assets}

    generator.calls.clear()
    assert batch.main([str(portraits), "-o", str(out), "--seed", "4"]) == 0
    assert generator.calls == [], "a second run reuses the cached heads"


def test_batch_goes_on_past_a_bad_portrait_and_fails_at_the_end(hou, generator, portraits, tmp_path, capsys):
    from topos_houdini import batch

    missing = tmp_path / "missing.jpg"
    status = batch.main([str(portraits / "ada.jpg"), str(missing), "-o", str(tmp_path / "heads")])
    captured = capsys.readouterr()
    assert status == 1
    assert len(captured.out.splitlines()) == 1 and "missing.jpg" in captured.err
    assert "Traceback" not in captured.err


def test_batch_without_hip_needs_no_hou(generator, portraits, tmp_path, monkeypatch):
    import sys

    from fakes import HOUDINI_LIBS

    monkeypatch.syspath_prepend(str(HOUDINI_LIBS))
    monkeypatch.delitem(sys.modules, "hou", raising=False)
    from topos_houdini import batch

    assert batch.main([str(portraits), "-o", str(tmp_path / "heads")]) == 0
    assert "hou" not in sys.modules


class FakeWorkItem:
    """The part of pdg.WorkItem / pdgjson.WorkItem the entry point uses, recording outputs and errors."""

    def __init__(self, attributes: dict, input_files=()):
        self.attributes = attributes
        self.inputFiles = list(input_files)
        self.outputs: list[tuple[str, str, bool]] = []
        self.errors: list[str] = []

    def attribValue(self, name, index=0):  # noqa: N802 - PDG's name
        return self.attributes.get(name)

    def addOutputFile(self, path, tag="", hash_code=0, own=False):  # noqa: N802
        self.outputs.append((path, tag, own))

    def addError(self, message, fail_task=False, timestamp=True):  # noqa: N802
        self.errors.append(message)


class FakeFile:
    def __init__(self, path, tag):
        self.path, self.tag = path, tag


def test_pdg_work_item_generates_and_reports_a_usd_output(hou, generator, result, portraits, tmp_path):
    from topos_houdini import pdg_work_item

    item = FakeWorkItem({"topos_output": str(tmp_path / "heads"), "seed": 3, "engine": "topos"},
                        input_files=[FakeFile(str(tmp_path / "x.txt"), "file/text"),
                                     FakeFile(str(portraits / "grace.png"), "file/image")])
    asset = pdg_work_item.generate(item)
    (call,) = generator.calls
    assert Path(call["image"]).name == "grace.png" and call["seed"] == 3 and call["engine"] == "topos"
    assert item.outputs == [(asset, "file/usd", True)]
    assert importer_problems(asset, result) == []

    again = FakeWorkItem({"portrait": str(portraits / "grace.png"), "topos_output": str(tmp_path / "heads"),
                          "seed": 3, "engine": "topos"})
    assert pdg_work_item.generate(again) == asset and len(generator.calls) == 1, "re-cook reuses the head"


def test_pdg_work_item_failure_is_logged_on_the_item(hou, generator, tmp_path):
    from topos_houdini import pdg_work_item

    item = FakeWorkItem({"portrait": str(tmp_path / "missing.jpg"), "topos_output": str(tmp_path)})
    with pytest.raises(OSError):
        pdg_work_item.generate(item)
    assert len(item.errors) == 1 and "missing.jpg" in item.errors[0]
    with pytest.raises(ValueError, match="no 'portrait'"):
        pdg_work_item.generate(FakeWorkItem({}))
    assert item.outputs == []
