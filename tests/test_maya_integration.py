"""The Maya shim against a recording fake of maya.cmds: commands and flags it sends, and the real USD
layer it hands to mayaUSDImport / the proxy shape (opened with usd-core)."""

from __future__ import annotations

import runpy
import threading

import pytest

from conftest import make_quad_grid
from fakes import install_fake_maya
from fakes.head_assets import FakeGenerateHead, head_result, importer_problems
from topos_sdk.errors import InvalidInputError



@pytest.fixture
def maya(monkeypatch):
    return install_fake_maya(monkeypatch)


@pytest.fixture
def result():
    return head_result(make_quad_grid(), seed=1)


@pytest.fixture
def portrait(tmp_path):
    from skimage import data
    from PIL import Image

    path = tmp_path / "ada lovelace.png"
    Image.fromarray(data.astronaut()[:128, 128:256]).save(path)
    return path


def fake_generate(monkeypatch, result, **kw) -> FakeGenerateHead:
    fake = FakeGenerateHead(result, **kw)
    monkeypatch.setattr("topos_sdk.generate.generate_head", fake)
    return fake


def fill_dialog(maya, portrait, out_dir, *, server="local", engine="classic", seed=3, texture="1024", mode=1):
    from topos_maya import dialog

    dialog.show()
    maya.controls[dialog.PORTRAIT]["text"] = str(portrait)
    maya.controls[dialog.SERVER]["text"] = server
    maya.controls[dialog.ENGINE]["value"] = engine
    maya.controls[dialog.SEED]["value1"] = seed
    maya.controls[dialog.TEXTURE_SIZE]["value"] = texture
    maya.controls[dialog.OUTPUT]["text"] = str(out_dir)
    maya.controls[dialog.IMPORT_MODE]["select"] = mode
    return dialog


def run_to_completion(maya, job):
    job._thread.join(timeout=30)
    assert not job._thread.is_alive()
    maya.run_idle()
    assert job.finished


def test_userSetup_adds_one_shelf_button_that_opens_the_dialog(maya):
    from fakes import MAYA_SCRIPTS

    runpy.run_path(str(MAYA_SCRIPTS / "userSetup.py"))
    import topos_maya.shelf as shelf

    again = shelf.ensure_shelf()  # a second start-up finds the saved button
    buttons = maya.calls_to("shelfButton")
    created = [b for b in buttons if "command" in b]
    assert len(created) == 1
    assert created[0]["parent"] == shelf.SHELF and created[0]["sourceType"] == "python"
    assert created[0]["docTag"] == shelf.BUTTON_TAG
    assert again in maya.controls[shelf.SHELF]["childArray"], "the existing button is found, not duplicated"
    assert maya.calls_to("utils.executeDeferred"), "userSetup must wait for the UI before touching shelves"

    exec(compile(created[0]["command"], "<shelf button>", "exec"), {})
    assert "toposGenerateWindow" in maya.controls, "the button opens the dialog"


def test_generate_imports_the_asset_with_map1_and_blendshapes(maya, monkeypatch, result, portrait, tmp_path):
    fake = fake_generate(monkeypatch, result)
    dialog = fill_dialog(maya, portrait, tmp_path / "heads", server="gpu-box:50051", engine="topos", seed=7,
                         texture="2048", mode=1)
    job = dialog.on_generate()
    run_to_completion(maya, job)

    (call,) = fake.calls
    assert call["server"] == "gpu-box:50051" and call["engine"] == "topos"
    assert call["seed"] == 7 and call["texture_size"] == 2048 and call["image"] == str(portrait)
    assert call["name"] == "ada_lovelace_s7"

    bar = [c for c in maya.calls_to("progressBar") if c["_args"] == ("MayaWindow|mainProgressBar",)]
    assert bar[0]["beginProgress"] and bar[0]["isInterruptable"]
    assert any(c.get("progress") == 100 for c in bar), "progress reaches the end"
    assert bar[-1].get("endProgress")
    assert len([c for c in maya.calls_to("scriptJob") if "idleEvent" in c]) == 1
    assert not maya.script_jobs, "the idle poll is removed when done"

    assert "mayaUsdPlugin" in [c["_args"][0] for c in maya.calls_to("loadPlugin")]
    (imp,) = maya.calls_to("mayaUSDImport")
    assert imp["shadingMode"] == [["useRegistry", "UsdPreviewSurface"]]
    assert imp["remapUVSetsTo"] == [["st", "map1"]]
    assert imp["readAnimData"] is True
    assert imp["file"] == str(job.usda_path) and job.usda_path.endswith("ada_lovelace_s7.usda")
    assert job.imported_nodes == ["|head"]
    assert not maya.calls_to("confirmDialog")

    assert importer_problems(imp["file"], result) == []

    assert maya.option_vars["topos_import_mode"] == "import"
    assert maya.option_vars["topos_server"] == "gpu-box:50051"
    assert maya.option_vars["topos_seed"] == 7 and maya.option_vars["topos_texture_size"] == 2048


def test_proxy_mode_is_remembered_and_makes_a_live_stage(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result)
    maya.option_vars.update({"topos_import_mode": "proxy", "topos_output_folder": str(tmp_path / "out"),
                             "topos_portrait": str(portrait), "topos_seed": 2})
    from topos_maya import dialog

    dialog.show()
    assert maya.controls[dialog.IMPORT_MODE]["select"] == 2, "the remembered choice is pre-selected"
    job = dialog.on_generate()
    run_to_completion(maya, job)

    assert not maya.calls_to("mayaUSDImport")
    shape = next(c for c in maya.calls_to("createNode") if c["_args"] == ("mayaUsdProxyShape",))
    assert maya.attributes[f"{shape['name']}.filePath"] == job.usda_path
    assert ("time1.outTime", f"{shape['name']}.time") in maya.connections
    assert importer_problems(job.usda_path, result) == []
    assert maya.option_vars["topos_import_mode"] == "proxy"


def test_a_second_head_never_overwrites_the_first(maya, monkeypatch, result, portrait, tmp_path):
    fake = fake_generate(monkeypatch, result)
    dialog = fill_dialog(maya, portrait, tmp_path)
    first = dialog.on_generate()
    run_to_completion(maya, first)
    second = dialog.on_generate()
    run_to_completion(maya, second)
    assert [c["name"] for c in fake.calls] == ["ada_lovelace_s3", "ada_lovelace_s3_2"]
    assert first.usda_path != second.usda_path


def test_generation_failure_shows_one_readable_dialog(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result, fail=InvalidInputError(f"{portrait}: no face found\nsecond line"))
    dialog = fill_dialog(maya, portrait, tmp_path)
    job = dialog.on_generate()
    run_to_completion(maya, job)

    (box,) = maya.calls_to("confirmDialog")
    assert box["icon"] == "critical" and box["button"] == ["OK"]
    assert "no face found" in box["message"] and "second line" not in box["message"]
    assert "Traceback" not in box["message"]
    assert not maya.calls_to("mayaUSDImport")
    assert maya.calls_to("progressBar")[-1].get("endProgress")
    assert maya.controls[dialog.GENERATE_BUTTON]["enable"] is True, "the dialog is usable again"


def test_bad_input_is_caught_before_starting(maya, monkeypatch, result, tmp_path):
    fake = fake_generate(monkeypatch, result)
    dialog = fill_dialog(maya, "", tmp_path)
    assert dialog.on_generate() is None
    (box,) = maya.calls_to("confirmDialog")
    assert "choose a portrait" in box["message"]
    assert not fake.calls and not maya.script_jobs


def test_cancel_stops_the_worker_and_writes_nothing(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result, steps=400, step_s=0.005)
    dialog = fill_dialog(maya, portrait, tmp_path / "out")
    job = dialog.on_generate()
    maya.cancel_pressed = True  # Esc on Maya's main progress bar
    maya.run_idle()
    run_to_completion(maya, job)

    assert job.error is not None and type(job.error).__name__ == "GenerationCancelled"
    assert any("cancelled" in str(c["_args"]) for c in maya.calls_to("warning"))
    assert not maya.calls_to("confirmDialog") and not maya.calls_to("mayaUSDImport")
    assert not list((tmp_path / "out").rglob("*.usda"))


def test_cancel_button_of_the_dialog(maya, monkeypatch, result, portrait, tmp_path):
    release = threading.Event()
    fake = fake_generate(monkeypatch, result, steps=1)
    original = fake.__call__

    def slow(*args, **kw):
        release.wait(10)
        return original(*args, **kw)

    monkeypatch.setattr("topos_sdk.generate.generate_head", slow)
    dialog = fill_dialog(maya, portrait, tmp_path)
    job = dialog.on_generate()
    assert maya.controls[dialog.CANCEL_BUTTON]["enable"] is True
    assert dialog.on_generate() is job, "one job at a time"
    maya.controls[dialog.CANCEL_BUTTON]["command"]()
    release.set()
    run_to_completion(maya, job)
    assert type(job.error).__name__ == "GenerationCancelled"
    assert not maya.calls_to("mayaUSDImport")


def test_older_maya_usd_without_remap_flag_still_gets_map1(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result)
    maya.rejected_flags = {"remapUVSetsTo"}
    dialog = fill_dialog(maya, portrait, tmp_path)
    job = dialog.on_generate()
    run_to_completion(maya, job)
    imports = maya.calls_to("mayaUSDImport")
    assert len(imports) == 2 and "remapUVSetsTo" not in imports[1]
    (rename,) = [c for c in maya.calls_to("polyUVSet") if c.get("rename")]
    assert rename["uvSet"] == "st" and rename["newUVSet"] == "map1"
    assert maya.nodes["|head|skin|skinShape"]["uvSets"] == ["map1"]
    assert not maya.calls_to("confirmDialog")


def test_import_failure_is_reported_too(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result)
    dialog = fill_dialog(maya, portrait, tmp_path)
    job = dialog.on_generate()
    import topos_maya.importer as importer

    monkeypatch.setattr(importer, "ensure_maya_usd", lambda: (_ for _ in ()).throw(
        RuntimeError("Plug-in 'mayaUsdPlugin' not found")))
    run_to_completion(maya, job)
    (box,) = maya.calls_to("confirmDialog")
    assert "could not import" in box["message"] and "mayaUsdPlugin" in box["message"]


def test_browse_buttons_fill_the_fields(maya, tmp_path):
    from topos_maya import dialog

    dialog.show()
    maya.file_dialog_answer = [str(tmp_path / "face.jpg")]
    maya.controls[dialog.PORTRAIT]["buttonCommand"]()
    maya.file_dialog_answer = [str(tmp_path)]
    maya.controls[dialog.OUTPUT]["buttonCommand"]()
    picks = maya.calls_to("fileDialog2")
    assert picks[0]["fileMode"] == 1 and "*.jpg" in picks[0]["fileFilter"]
    assert picks[1]["fileMode"] == 3 and "fileFilter" not in picks[1]
    assert dialog.read_settings().portrait == str(tmp_path / "face.jpg")
    assert dialog.read_settings().output_folder == str(tmp_path)


def test_stale_option_vars_fall_back_to_defaults(maya):
    from topos_maya import settings

    maya.option_vars.update({"topos_engine": "nonsense", "topos_texture_size": 333, "topos_import_mode": "x"})
    loaded = settings.load()
    assert (loaded.engine, loaded.texture_size, loaded.import_mode) == ("classic", 1024, "import")
    assert loaded.server_address is None
