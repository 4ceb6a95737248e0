"""The Maya shim against a recording fake of maya.cmds: commands and flags it sends, and the real USD
layer it hands to mayaUSDImport / the proxy shape (opened with usd-core)."""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from pathlib import Path

import pytest

from conftest import make_quad_grid
from fakes import FAKES, install_fake_maya
from fakes.head_assets import EXPRESSION, FakeGenerateHead, head_result, importer_problems


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


class FakeWorker:
    """The generation subprocess with a fake ``generate_head`` (fakes/maya_generation_worker.py)."""

    def __init__(self, monkeypatch, calls_file: Path):
        self.monkeypatch, self.calls_file = monkeypatch, calls_file
        self.configure()

    def configure(self, **config):
        self.monkeypatch.setenv("TOPOS_TEST_WORKER", json.dumps(dict(config, seed=1, calls_file=str(self.calls_file))))

    @property
    def calls(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


def fake_generate(monkeypatch, result, tmp_path: Path, **config) -> FakeWorker:
    """``result`` is what the worker writes (head_result(make_quad_grid(), seed=1), the fixture's); the worker
    logs its calls under ``tmp_path``."""
    import topos_maya.job

    worker = FakeWorker(monkeypatch, tmp_path / "worker_calls.jsonl")
    worker.configure(**config)
    monkeypatch.setattr(topos_maya.job, "worker_command",
                        lambda: [sys.executable, str(FAKES / "maya_generation_worker.py")])
    return worker


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


def run_to_completion(maya, job, timeout_s=60.0):
    """Be Maya's main thread while the job runs: run what the job defers to it until the job is done."""
    deadline = time.monotonic() + timeout_s
    while not job.finished:
        assert time.monotonic() < deadline, "the job never finished"
        maya.run_idle()
        time.sleep(0.02)
    assert not maya.off_main_thread, f"maya.cmds called off the main thread: {maya.off_main_thread}"


def assert_expression_applied(maya, result):
    """The blendShape maya-usd built carries the portrait's expression (maya-usd leaves default weights at 0)."""
    (blend,) = [n for n, v in maya.nodes.items() if v["type"] == "blendShape"]
    targets = maya.nodes[blend]["targets"]
    assert targets == list(result.blendshape_names)
    weights = [maya.attributes[f"{blend}.weight[{i}]"] for i in range(len(targets))]
    assert weights == pytest.approx([EXPRESSION[n] for n in targets]) and any(weights)


def assert_timeline_untouched(maya):
    assert maya.timeline == {"minTime": 101.0, "maxTime": 200.0, "animationStartTime": 101.0,
                             "animationEndTime": 200.0}
    assert maya.current_time == 120.0


def assert_textures_as_maya_needs_them(maya):
    """Normal and roughness come in Raw, albedo sRGB (maya-usd reads the colorSpace metadata); the normal map
    reaches normalCamera through a tangent-space bump2d reading the undecoded texture."""
    files = {n: maya.attributes for n, v in maya.nodes.items() if v["type"] == "file"}
    color_space = {n.rstrip("0123456789"): maya.attributes[f"{n}.colorSpace"] for n in files}
    assert color_space == {"AlbedoTexture": "sRGB", "NormalTexture": "Raw", "RoughnessTexture": "Raw"}
    assert all(maya.attributes[f"{n}.ignoreColorSpaceFileRules"] == 1 for n in files)
    shaders = [n for n, v in maya.nodes.items() if v["type"] == "standardSurface"]
    for shader in shaders:
        sources = [a for a, b in maya.connections if b == f"{shader}.normalCamera"]
        if not sources:
            continue
        (source,) = sources
        bump = source.split(".")[0]
        assert maya.nodes[bump]["type"] == "bump2d" and source == f"{bump}.outNormal"
        assert maya.attributes[f"{bump}.bumpInterp"] == 1, "tangent space normals"
        (normal_file,) = [a.split(".")[0] for a, b in maya.connections if b == f"{bump}.bumpValue"]
        assert maya.attributes[f"{normal_file}.colorSpace"] == "Raw"
        assert maya.attributes[f"{normal_file}.colorGain"] == (1.0, 1.0, 1.0)
        assert maya.attributes[f"{normal_file}.colorOffset"] == (0.0, 0.0, 0.0)
    assert any(v["type"] == "bump2d" for v in maya.nodes.values())


def test_userSetup_adds_one_shelf_button_that_opens_the_dialog(maya):
    from fakes import MAYA_SCRIPTS

    runpy.run_path(str(MAYA_SCRIPTS / "userSetup.py"))
    import topos_maya.shelf as shelf

    again = shelf.ensure_shelf()  # a second start-up finds the button
    buttons = maya.calls_to("shelfButton")
    created = [b for b in buttons if "command" in b and not b.get("q")]
    assert len(created) == 1
    assert created[0]["parent"] == shelf.SHELF and created[0]["sourceType"] == "python"
    assert again in maya.controls[shelf.SHELF]["childArray"], "the existing button is found, not duplicated"
    assert maya.calls_to("utils.executeDeferred"), "userSetup must wait for the UI before touching shelves"

    exec(compile(created[0]["command"], "<shelf button>", "exec"), {})
    assert "toposGenerateWindow" in maya.controls, "the button opens the dialog"


def test_a_restart_with_the_saved_shelf_adds_no_second_button(maya):
    """Maya reloads shelf_TOPOS.mel before userSetup runs; the saved button has our command but no docTag.
    Copies an older version left behind are removed."""
    from maya import cmds

    import topos_maya.shelf as shelf

    cmds.shelfLayout(shelf.SHELF, parent="MayaWindow|ShelfLayout")
    for _ in range(2):  # what the old docTag check left after two restarts
        cmds.shelfButton(parent=shelf.SHELF, label="Head", sourceType="python", command=shelf.BUTTON_COMMAND)
    cmds.shelfButton("otherToolButton", parent=shelf.SHELF, label="Other", command="print('mine')")
    kept = shelf.ensure_shelf()
    children = maya.controls[shelf.SHELF]["childArray"]
    ours = [c for c in children if shelf.COMMAND_MARK in maya.controls[c].get("command", "")]
    assert ours == [kept] and "otherToolButton" in children
    assert len([b for b in maya.calls_to("shelfButton") if "command" in b and not b.get("q")]) == 3, "none created"


def test_generate_imports_the_asset_with_map1_and_blendshapes(maya, monkeypatch, result, portrait, tmp_path):
    fake = fake_generate(monkeypatch, result, tmp_path)
    dialog = fill_dialog(maya, portrait, tmp_path / "heads", server="gpu-box:50051", engine="topos", seed=7,
                         texture="2048", mode=1)
    job = dialog.on_generate()
    run_to_completion(maya, job)

    (call,) = fake.calls
    assert call["server"] == "gpu-box:50051" and call["engine"] == "topos"
    assert call["seed"] == 7 and call["texture_size"] == 2048 and call["image"] == str(portrait)
    assert call["name"] == "ada_lovelace_s7"
    assert call["pid"] != os.getpid(), "the head is generated and its USD written in another process"

    bar = [c for c in maya.calls_to("progressBar") if c["_args"] == ("MayaWindow|mainProgressBar",)]
    assert bar[0]["beginProgress"] and bar[0]["isInterruptable"]
    assert any(c.get("progress") == 100 for c in bar), "progress reaches the end"
    assert bar[-1].get("endProgress")
    assert not maya.calls_to("scriptJob"), "no idle-event poll (it keeps a core busy)"

    assert "mayaUsdPlugin" in [c["_args"][0] for c in maya.calls_to("loadPlugin")]
    (imp,) = maya.calls_to("mayaUSDImport")
    assert imp["shadingMode"] == [["useRegistry", "UsdPreviewSurface"]]
    assert imp["remapUVSetsTo"] == [["st", "map1"]]
    assert imp["readAnimData"] is True
    assert imp["file"] == str(job.usda_path) and job.usda_path.endswith("ada_lovelace_s7.usda")
    assert job.imported_nodes == ["|ada_lovelace_s7"]
    assert not maya.calls_to("confirmDialog")

    assert importer_problems(imp["file"], result) == []
    assert_expression_applied(maya, result)
    assert_timeline_untouched(maya)
    assert_textures_as_maya_needs_them(maya)

    assert maya.option_vars["topos_import_mode"] == "import"
    assert maya.option_vars["topos_server"] == "gpu-box:50051"
    assert maya.option_vars["topos_seed"] == 7 and maya.option_vars["topos_texture_size"] == 2048


def test_proxy_mode_is_remembered_and_makes_a_live_stage(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result, tmp_path)
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
    fake = fake_generate(monkeypatch, result, tmp_path)
    dialog = fill_dialog(maya, portrait, tmp_path)
    first = dialog.on_generate()
    run_to_completion(maya, first)
    second = dialog.on_generate()
    run_to_completion(maya, second)
    assert [c["name"] for c in fake.calls] == ["ada_lovelace_s3", "ada_lovelace_s3_2"]
    assert first.usda_path != second.usda_path


def test_generation_failure_shows_one_readable_dialog(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result, tmp_path, fail=f"{portrait}: no face found\nsecond line")
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
    fake = fake_generate(monkeypatch, result, tmp_path)
    dialog = fill_dialog(maya, "", tmp_path)
    assert dialog.on_generate() is None
    (box,) = maya.calls_to("confirmDialog")
    assert "choose a portrait" in box["message"]
    assert not fake.calls and not maya.script_jobs


def test_cancel_stops_the_worker_and_writes_nothing(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result, tmp_path, steps=400, step_s=0.005)
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
    fake_generate(monkeypatch, result, tmp_path, steps=400, step_s=0.005)
    dialog = fill_dialog(maya, portrait, tmp_path)
    job = dialog.on_generate()
    assert maya.controls[dialog.CANCEL_BUTTON]["enable"] is True
    assert dialog.on_generate() is job, "one job at a time"
    maya.controls[dialog.CANCEL_BUTTON]["command"]()
    run_to_completion(maya, job)
    assert type(job.error).__name__ == "GenerationCancelled"
    assert not maya.calls_to("mayaUSDImport")


def test_older_maya_usd_without_remap_flag_still_gets_map1(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result, tmp_path)
    maya.rejected_flags = {"remapUVSetsTo"}
    dialog = fill_dialog(maya, portrait, tmp_path)
    job = dialog.on_generate()
    run_to_completion(maya, job)
    imports = maya.calls_to("mayaUSDImport")
    assert len(imports) == 2 and "remapUVSetsTo" not in imports[1]
    (rename,) = [c for c in maya.calls_to("polyUVSet") if c.get("rename")]
    assert rename["uvSet"] == "st" and rename["newUVSet"] == "map1"
    assert maya.nodes["|ada_lovelace_s3|Geom|skin|skinShape"]["uvSets"] == ["map1"]
    assert not maya.calls_to("confirmDialog")


def test_import_failure_is_reported_too(maya, monkeypatch, result, portrait, tmp_path):
    fake_generate(monkeypatch, result, tmp_path)
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


def test_older_maya_usd_says_once_that_expressions_are_unavailable(maya, monkeypatch, result, portrait, tmp_path):
    """maya-usd before 0.29 builds no blendShape: the head comes in neutral, with one warning per session."""
    fake_generate(monkeypatch, result, tmp_path)
    maya.maya_usd_version = "0.27.0"
    dialog = fill_dialog(maya, portrait, tmp_path)
    for _ in range(2):
        run_to_completion(maya, dialog.on_generate())
    warnings = [c["_args"][0] for c in maya.calls_to("warning") if "blendshapes" in c["_args"][0]]
    assert len(warnings) == 1 and "0.27.0" in warnings[0] and "0.29" in warnings[0]
    assert not [n for n, v in maya.nodes.items() if v["type"] == "blendShape"]
    assert not [c for c in maya.calls_to("setAttr") if ".weight[" in c["_args"][0]]
    assert_timeline_untouched(maya)
    assert not maya.calls_to("confirmDialog")


def test_the_poll_sleeps_between_ticks(maya, monkeypatch, result, portrait, tmp_path):
    """No idle-event job: a ticker thread asks the main thread for a poll every POLL_SECONDS, no more."""
    import topos_maya.job as job_module

    fake_generate(monkeypatch, result, tmp_path, steps=60, step_s=0.01)
    dialog = fill_dialog(maya, portrait, tmp_path)
    started = time.monotonic()
    job = dialog.on_generate()
    run_to_completion(maya, job)
    elapsed = time.monotonic() - started
    polls = [c for c in maya.calls_to("utils.executeDeferred") if c["_args"][0] == job.poll]
    assert 1 <= len(polls) <= elapsed / job_module.POLL_SECONDS + 2
    assert not maya.calls_to("scriptJob")
    time.sleep(3 * job_module.POLL_SECONDS)
    assert len([c for c in maya.calls_to("utils.executeDeferred") if c["_args"][0] == job.poll]) == len(polls), \
        "the ticker stops with the job"


def test_mayapy_batch_generates_imports_and_saves_scenes(maya, monkeypatch, result, portrait, tmp_path, capsys):
    """mayapy -m topos_maya.batch portraits/ -o heads/ --import: no UI, one scene per head beside its asset."""
    from topos_maya import batch

    fake = FakeGenerateHead(result)
    monkeypatch.setattr("topos_sdk.generate.generate_head", fake)
    (portrait.parent / "notes.txt").write_text("not a portrait")
    out = tmp_path / "heads"
    assert batch.main([str(portrait.parent), "-o", str(out), "--seed", "2", "--import"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    source, asset, scene = line.split("\t")
    assert source == str(portrait) and asset.endswith("ada_lovelace_s2.usda") and scene == asset[:-5] + ".ma"
    assert importer_problems(asset, result) == []
    names = [n for n, _, _ in maya.calls]
    assert names.index("standalone.initialize") < names.index("mayaUSDImport") < names.index("standalone.uninitialize")
    files = maya.calls_to("file")
    assert files[0].get("new") and files[1]["rename"] == scene and files[2]["save"] and files[2]["type"] == "mayaAscii"
    assert_expression_applied(maya, result)
    assert not maya.calls_to("confirmDialog") and not maya.calls_to("window"), "headless: no UI"

    assert batch.main([str(portrait), "-o", str(out), "--seed", "2"]) == 0
    assert [c["name"] for c in fake.calls] == ["ada_lovelace_s2", "ada_lovelace_s2_2"], "never overwrites"


def test_mayapy_batch_reports_a_bad_portrait_and_goes_on(maya, monkeypatch, result, portrait, tmp_path, capsys):
    from topos_maya import batch

    monkeypatch.setattr("topos_sdk.generate.generate_head", FakeGenerateHead(result))
    status = batch.main([str(tmp_path / "missing.jpg"), str(portrait), "-o", str(tmp_path / "heads")])
    captured = capsys.readouterr()
    assert status == 1 and len(captured.out.splitlines()) == 1
    assert "missing.jpg" in captured.err and "Traceback" not in captured.err
    assert not maya.calls_to("standalone.initialize"), "Maya starts only for --import"
