"""``topos integrations install|uninstall maya|houdini [--prefix DIR]``: put the DCC shims where Maya / Houdini look.

Maya: ``PREFIX/topos.mod`` + ``PREFIX/topos/`` (``scripts/topos_maya``, ``userSetup.py``), PREFIX = the user's
Maya modules folder. Houdini: ``PREFIX/topos.json`` + ``PREFIX/topos/`` (``python`` — one folder for every
Houdini Python, put on ``PYTHONPATH`` by the package — and ``otls``), PREFIX = the user's Houdini packages
folder. Unless ``--no-sdk``, the pure-Python ``topos_sdk`` package is
copied beside the shims so the DCC's Python can import it. Everything written is listed, with hashes, in
``PREFIX/topos/.topos-install.json``; ``uninstall`` removes exactly that and the folders install created.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..atomic_files import atomic_output_dir, atomic_output_path
from ..errors import InvalidInputError

MANIFEST = ".topos-install.json"
INSTALL_DIR = "topos"
SUPPORTED_HOUDINI_VERSIONS = ("20.0", "20.5", "21.0")  # what topos.json enables; newest last
SKIPPED = ("__pycache__", "*.pyc", "*.pyo")


@dataclass(frozen=True)
class DccLayout:
    name: str
    entry_file: str              # what the DCC scans for in PREFIX
    copied: tuple[str, ...]      # folders of integrations/<dcc>/ copied into PREFIX/topos/
    sdk_into: str                # where topos_sdk/ goes inside PREFIX/topos/


LAYOUTS = {
    "maya": DccLayout("maya", "topos.mod", ("scripts",), "scripts"),
    "houdini": DccLayout("houdini", "topos.json", ("python", "otls"), "python"),
}


def register(sub) -> None:
    p = sub.add_parser("integrations", help="install the Maya module / Houdini package",
                       description="Install or remove the TOPOS Maya module or Houdini package for this user.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("install", "install the shim"), ("uninstall", "remove what install wrote")):
        a = actions.add_parser(action, help=text)
        a.add_argument("dcc", choices=sorted(LAYOUTS))
        a.add_argument("--prefix", type=Path, metavar="DIR",
                       help="Maya modules / Houdini packages folder (default: the per-user folder of this OS)")
        a.add_argument("--houdini-version", default=None, metavar="X.Y",
                       help="Houdini version whose preferences folder to use (default: the newest of "
                            f"{', '.join(SUPPORTED_HOUDINI_VERSIONS)} with a preferences folder, else "
                            f"{SUPPORTED_HOUDINI_VERSIONS[-1]})")
        if action == "install":
            a.add_argument("--source", type=Path, metavar="DIR", help="the integrations/ folder (default: this checkout's)")
            a.add_argument("--no-sdk", action="store_true",
                           help="do not copy topos_sdk (it is already installed in the DCC's Python)")
    p.set_defaults(handler=run)


def run(args) -> int:
    prefix = args.prefix or default_prefix(args.dcc, houdini_version=args.houdini_version)
    if args.action == "install":
        source = args.source or default_source()
        written = install(args.dcc, prefix, source=source, with_sdk=not args.no_sdk)
        print(f"installed TOPOS for {args.dcc}: {written} (restart {args.dcc.capitalize()})")
    else:
        uninstall(args.dcc, prefix)
        print(f"removed TOPOS for {args.dcc} from {prefix}")
    return 0


# -- where things go -----------------------------------------------------------------------------------------
def default_prefix(dcc: str, *, houdini_version: str | None = None, platform: str | None = None,
                   env: dict | None = None, home: Path | None = None, documents: Path | None = None) -> Path:
    """The per-user folder Maya scans for modules / Houdini scans for packages.

    Maya: ``$MAYA_APP_DIR/modules``, else Linux ``~/maya/modules``, macOS
    ``~/Library/Preferences/Autodesk/maya/modules``, Windows ``DOCUMENTS/maya/modules``.
    Houdini: ``$HOUDINI_USER_PREF_DIR/packages``, else Linux ``~/houdiniX.Y/packages``, macOS
    ``~/Library/Preferences/houdini/X.Y/packages``, Windows ``DOCUMENTS/houdiniX.Y/packages``; X.Y is
    ``houdini_version``, else the newest supported version that has a preferences folder, else the newest.
    DOCUMENTS is the shell's Documents known folder (it moves with OneDrive or a redirected profile);
    ``documents`` overrides it (tests).
    """
    platform = platform or sys.platform
    env = os.environ if env is None else env
    home = home or Path.home()
    windows = platform.startswith("win")
    if windows and documents is None:
        documents = windows_documents_folder() or home / "Documents"
    if dcc == "maya":
        if env.get("MAYA_APP_DIR"):
            return Path(env["MAYA_APP_DIR"]) / "modules"
        if platform == "darwin":
            return home / "Library/Preferences/Autodesk/maya/modules"
        if windows:
            return documents / "maya/modules"
        return home / "maya/modules"
    if dcc == "houdini":
        def preferences(version: str) -> Path:
            if platform == "darwin":
                return home / f"Library/Preferences/houdini/{version}"
            return (documents if windows else home) / f"houdini{version}"

        if env.get("HOUDINI_USER_PREF_DIR") and houdini_version is None:
            version = SUPPORTED_HOUDINI_VERSIONS[-1]
            return Path(env["HOUDINI_USER_PREF_DIR"].replace("__HVER__", version)) / "packages"
        version = houdini_version or next((v for v in reversed(SUPPORTED_HOUDINI_VERSIONS)
                                           if preferences(v).is_dir()), SUPPORTED_HOUDINI_VERSIONS[-1])
        return preferences(version) / "packages"
    raise InvalidInputError(f"unknown application {dcc!r} (maya or houdini)")


def windows_documents_folder() -> Path | None:
    """The user's Documents folder as Windows knows it (SHGetKnownFolderPath), None off Windows or on failure."""
    if not sys.platform.startswith("win"):
        return None
    import ctypes
    import uuid
    from ctypes import wintypes

    class GUID(ctypes.Structure):
        _fields_ = [("data", ctypes.c_ubyte * 16)]

    folder_id = GUID()
    folder_id.data[:] = uuid.UUID("{FDD39AD0-238F-46AF-ADB4-6C85480369C7}").bytes_le  # FOLDERID_Documents
    path = ctypes.c_wchar_p()
    shell32 = ctypes.windll.shell32
    shell32.SHGetKnownFolderPath.argtypes = [ctypes.POINTER(GUID), wintypes.DWORD, wintypes.HANDLE,
                                             ctypes.POINTER(ctypes.c_wchar_p)]
    if shell32.SHGetKnownFolderPath(ctypes.byref(folder_id), 0, None, ctypes.byref(path)) != 0:
        return None
    try:
        return Path(path.value)
    finally:
        ctypes.windll.ole32.CoTaskMemFree(path)


def default_source() -> Path:
    source = Path(__file__).resolve().parents[2] / "integrations"
    if not (source / "maya").is_dir() or not (source / "houdini").is_dir():
        raise InvalidInputError("integrations/ not found next to topos_sdk: run from a TOPOS checkout or pass --source")
    return source


def entry_file_text(dcc: str, source: Path) -> str:
    """The file the DCC scans for, pointing at the installed folder next to it (relative, no absolute path)."""
    if dcc == "maya":
        lines = (source / "maya" / "topos.mod").read_text().splitlines()
        head = lines[0].split()
        if head[0] != "+" or head[-1] != ".":
            raise InvalidInputError(f"{source / 'maya' / 'topos.mod'}: first line must be '+ NAME VERSION .'")
        lines[0] = " ".join(head[:-1] + [f"./{INSTALL_DIR}"])
        return "\n".join(lines) + "\n"
    package = json.loads((source / "houdini" / "packages" / "topos.json").read_text())
    for entry in package.get("env", []):
        if "TOPOS_HOUDINI" in entry:
            entry["TOPOS_HOUDINI"] = f"$HOUDINI_PACKAGE_PATH/{INSTALL_DIR}"
    return json.dumps(package, indent=4) + "\n"


# -- install / uninstall --------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, outermost first."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    return missing[::-1]


def install(dcc: str, prefix: Path, *, source: Path, with_sdk: bool = True) -> Path:
    """Install into ``prefix``; returns the entry file written. Nothing is left behind if it fails."""
    layout = LAYOUTS[dcc]
    prefix = Path(prefix).absolute()
    entry, folder = prefix / layout.entry_file, prefix / INSTALL_DIR
    for path in (entry, folder):
        if path.exists() and not (folder / MANIFEST).is_file():
            raise InvalidInputError(f"{path} exists and was not installed by topos: move it away first")
    if (folder / MANIFEST).is_file():
        uninstall(dcc, prefix)  # an upgrade: replace the previous install
    for name in layout.copied:
        if not (source / dcc / name).is_dir():
            raise InvalidInputError(f"{source / dcc / name}: missing (is --source the integrations/ folder?)")
    entry_text = entry_file_text(dcc, source)
    created_dirs = _missing_parents(prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output_dir(folder) as tmp:
            for name in layout.copied:
                shutil.copytree(source / dcc / name, tmp / name, ignore=shutil.ignore_patterns(*SKIPPED))
            if with_sdk:
                sdk = Path(__file__).resolve().parents[1]
                shutil.copytree(sdk, tmp / layout.sdk_into / "topos_sdk", ignore=shutil.ignore_patterns(*SKIPPED))
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            manifest = {
                "dcc": dcc,
                "entry_file": layout.entry_file,
                "files": {p.relative_to(tmp).as_posix(): _sha256(p) for p in files},
                "created_dirs": [d.as_posix() for d in created_dirs],
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        with atomic_output_path(entry) as tmp_entry:
            tmp_entry.write_text(entry_text)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        for d in reversed(created_dirs):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    return entry


def uninstall(dcc: str, prefix: Path) -> None:
    """Remove what :func:`install` wrote in ``prefix`` (and the folders it created), nothing else."""
    layout = LAYOUTS[dcc]
    prefix = Path(prefix).absolute()
    folder = prefix / INSTALL_DIR
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InvalidInputError(f"no TOPOS {dcc} install in {prefix} ({manifest_path} not found)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("dcc") != dcc:
        raise InvalidInputError(f"{prefix} holds the TOPOS {manifest.get('dcc')} install, not {dcc}")
    for rel in manifest["files"]:
        (folder / rel).unlink(missing_ok=True)
    manifest_path.unlink()
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        _remove_if_empty(d)
    _remove_if_empty(folder)
    (prefix / layout.entry_file).unlink(missing_ok=True)
    for d in reversed([Path(d) for d in manifest.get("created_dirs", [])]):
        _remove_if_empty(d)


def _remove_if_empty(path: Path) -> None:
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
