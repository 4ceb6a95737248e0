"""``topos integrations install|uninstall``: the right files land in a prefix, and uninstall puts the
prefix back exactly as it was (tree listing + file hashes, unrelated files included)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from topos_sdk.cli import main
from topos_sdk.cli.integrations_cmd import default_prefix, install, uninstall
from topos_sdk.errors import InvalidInputError

SOURCE = Path(__file__).resolve().parents[1] / "integrations"


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` → sha256 of its bytes ("dir" for folders)."""
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def lived_in(tmp_path) -> Path:
    """A modules/packages folder that already holds other people's things."""
    prefix = tmp_path / "prefix"
    (prefix / "other" / "scripts").mkdir(parents=True)
    (prefix / "other.mod").write_text("+ OTHER 1.0 ./other\n")
    (prefix / "other" / "scripts" / "tool.py").write_text("print('other')\n")
    (prefix / "redshift.json").write_text('{"env": []}\n')
    return prefix


@pytest.mark.parametrize("dcc", ["maya", "houdini"])
def test_install_then_uninstall_leaves_the_prefix_as_it_was(dcc, lived_in):
    before = snapshot(lived_in)
    entry = install(dcc, lived_in, source=SOURCE)
    after = snapshot(lived_in)
    added = set(after) - set(before)
    assert all(after[k] == v for k, v in before.items()), "nothing that was there is touched"
    assert entry.name in added and "topos/.topos-install.json" in added
    manifest = json.loads((lived_in / "topos" / ".topos-install.json").read_text())
    installed_files = {k[len("topos/"):] for k in added if k.startswith("topos/") and after[k] != "dir"}
    assert set(manifest["files"]) == installed_files - {".topos-install.json"}
    assert all(manifest["files"][k] == after[f"topos/{k}"] for k in manifest["files"]), "hashes recorded"
    assert not any("__pycache__" in k for k in added)
    uninstall(dcc, lived_in)
    assert snapshot(lived_in) == before


def test_maya_module_file_points_at_the_installed_folder(lived_in):
    entry = install("maya", lived_in, source=SOURCE)
    head, *rest = entry.read_text().splitlines()
    assert head.split() == ["+", "TOPOS", "0.1.0", "./topos"]
    assert "PYTHONPATH+:=scripts" in rest
    scripts = lived_in / "topos" / "scripts"
    assert (scripts / "topos_maya" / "dialog.py").is_file() and (scripts / "userSetup.py").is_file()
    assert (scripts / "topos_sdk" / "generate.py").is_file(), "the SDK travels with the module"


def test_houdini_package_resolves_to_the_installed_hda_and_libs(lived_in):
    entry = install("houdini", lived_in, source=SOURCE)
    package = json.loads(entry.read_text())
    (env,) = [e for e in package["env"] if "TOPOS_HOUDINI" in e]
    root = Path(env["TOPOS_HOUDINI"].replace("$HOUDINI_PACKAGE_PATH", str(entry.parent)))
    assert package["hpath"] == "$TOPOS_HOUDINI"
    assert (root / "otls" / "topos_head.hda" / "Lop_1topos_2_2head_2_21.0" / "DialogScript").is_file()
    assert (root / "python" / "topos_houdini" / "head_lop.py").is_file()
    assert (root / "python" / "topos_sdk" / "generate.py").is_file()
    (pythonpath,) = [e["PYTHONPATH"] for e in package["env"] if "PYTHONPATH" in e]
    assert pythonpath == {"value": "$TOPOS_HOUDINI/python", "method": "prepend"}, "one folder for every Python"


def test_installed_maya_shim_imports_with_the_vendored_sdk(tmp_path):
    install("maya", tmp_path / "modules", source=SOURCE)
    scripts = tmp_path / "modules" / "topos" / "scripts"
    fakes = Path(__file__).resolve().parent
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import fakes.maya.cmds, fakes.maya.mel, "
            "fakes.maya.utils, fakes.maya as m; sys.modules.update({'maya': m, 'maya.cmds': m.cmds, "
            "'maya.mel': m.mel, 'maya.utils': m.utils}); import topos_maya.dialog, topos_sdk; "
            "print(topos_maya.dialog.__file__); print(topos_sdk.__file__)")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(scripts), str(fakes)], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.splitlines()
    assert all(line.startswith(str(scripts)) for line in out), out


def test_missing_prefix_is_created_and_removed_again(tmp_path):
    prefix = tmp_path / "home" / "maya" / "modules"
    install("maya", prefix, source=SOURCE, with_sdk=False)
    assert not (prefix / "topos" / "scripts" / "topos_sdk").exists()
    uninstall("maya", prefix)
    assert list(tmp_path.iterdir()) == [], "the folders install made are gone"


def test_refuses_to_replace_what_it_did_not_install(lived_in):
    (lived_in / "topos.mod").write_text("+ TOPOS 9.9 /studio/topos\n")
    before = snapshot(lived_in)
    with pytest.raises(InvalidInputError, match="not installed by topos"):
        install("maya", lived_in, source=SOURCE)
    assert snapshot(lived_in) == before
    with pytest.raises(InvalidInputError, match="no TOPOS maya install"):
        uninstall("maya", lived_in)


def test_reinstall_upgrades_in_place_and_wrong_dcc_is_refused(lived_in):
    before = snapshot(lived_in)
    install("houdini", lived_in, source=SOURCE)
    install("houdini", lived_in, source=SOURCE)
    with pytest.raises(InvalidInputError, match="houdini install, not maya"):
        uninstall("maya", lived_in)
    uninstall("houdini", lived_in)
    assert snapshot(lived_in) == before


def test_a_failed_install_writes_nothing(lived_in, tmp_path):
    broken = tmp_path / "broken"
    (broken / "maya").mkdir(parents=True)
    (broken / "maya" / "topos.mod").write_text("+ TOPOS 0.1.0 .\n")
    before = snapshot(lived_in)
    with pytest.raises(InvalidInputError, match="missing"):
        install("maya", lived_in, source=broken)
    assert snapshot(lived_in) == before


def test_cli_round_trip(lived_in, capsys):
    before = snapshot(lived_in)
    assert main(["integrations", "install", "houdini", "--prefix", str(lived_in)]) == 0
    assert "topos.json" in capsys.readouterr().out
    assert main(["integrations", "uninstall", "houdini", "--prefix", str(lived_in)]) == 0
    assert snapshot(lived_in) == before
    assert main(["integrations", "uninstall", "houdini", "--prefix", str(lived_in)]) == 1
    assert "no TOPOS houdini install" in capsys.readouterr().err


def test_default_prefixes_per_os(tmp_path):
    home = tmp_path / "ada"
    documents = Path("D:/OneDrive/Documents")  # Windows: the shell's Documents folder, wherever it was moved
    assert default_prefix("maya", platform="linux", env={}, home=home) == home / "maya/modules"
    assert default_prefix("maya", platform="darwin", env={}, home=home) == \
        home / "Library/Preferences/Autodesk/maya/modules"
    assert default_prefix("maya", platform="win32", env={}, home=home, documents=documents) == \
        documents / "maya/modules"
    assert default_prefix("maya", platform="linux", env={"MAYA_APP_DIR": "/studio/maya"}, home=home) == \
        Path("/studio/maya/modules")
    assert default_prefix("houdini", platform="linux", env={}, home=home) == home / "houdini21.0/packages", \
        "no Houdini preferences yet: the newest supported version"
    (home / "houdini20.5").mkdir(parents=True)
    assert default_prefix("houdini", platform="linux", env={}, home=home) == home / "houdini20.5/packages"
    (home / "houdini21.0").mkdir()
    assert default_prefix("houdini", platform="linux", env={}, home=home) == home / "houdini21.0/packages"
    assert default_prefix("houdini", houdini_version="20.0", platform="darwin", env={}, home=home) == \
        home / "Library/Preferences/houdini/20.0/packages"
    assert default_prefix("houdini", platform="win32", env={}, home=home, documents=documents) == \
        documents / "houdini21.0/packages"
    assert default_prefix("houdini", platform="linux", env={"HOUDINI_USER_PREF_DIR": "/p/houdini__HVER__"},
                          home=home) == Path("/p/houdini21.0/packages")


def test_windows_documents_folder_is_asked_of_the_shell_only_on_windows():
    from topos_sdk.cli.integrations_cmd import windows_documents_folder

    found = windows_documents_folder()
    assert (found is None) == (not sys.platform.startswith("win"))
