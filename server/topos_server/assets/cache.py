"""The local asset cache: where imported model files live and how the engines find them.

Layout under the root (``$TOPOS_HOME``, default ``~/.cache/topos``)::

    ict/topology.npz              ReferenceTopology of the ICT Face Model Light (+ MediaPipe landmarks)
    ict/head_model.safetensors    HeadModel: neutral, 100 identity modes, expression shapes
    ict/vertex_indices.json       copied from ICT-FaceKit
    ict/LICENSE                   ICT-FaceKit MIT licence (covers everything derived under ict/)
    ict/manifest.json             what was imported from where, sizes and sha256 of sources and outputs
    facemesh/*.tflite, *.obj, …   MediaPipe files copied as they are
    facemesh/LICENSE              MediaPipe Apache-2.0 licence
    facemesh/manifest.json

Nothing here downloads: ``topos assets import`` (see :mod:`topos_server.assets.importing`) fills it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from topos_sdk.errors import ToposError

MANIFEST_FORMAT = "topos.assets/1"
IMPORT_HINT = "run `topos assets import --ict PATH/ICT-FaceKit --facemesh PATH/mediapipe`"

ICT_TOPOLOGY_FILE = "topology.npz"
ICT_HEAD_MODEL_FILE = "head_model.safetensors"


class AssetsMissing(ToposError):
    """A model file the caller needs is not in the asset cache."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class KindStatus:
    """What the cache holds of one kind of asset (``"ict"`` or ``"facemesh"``)."""

    kind: str
    present: bool
    problems: list[str] = field(default_factory=list)
    manifest: dict | None = None

    @property
    def ok(self) -> bool:
        return self.present and not self.problems


# topology objects already loaded in this process: path → (mtime_ns, size, topology)
_TOPOLOGY_MEMO: dict[str, tuple[int, int, object]] = {}


class AssetCache:
    KINDS = ("ict", "facemesh")

    def __init__(self, root: str | os.PathLike | None = None):
        if root is None:
            root = os.environ.get("TOPOS_HOME") or Path.home() / ".cache" / "topos"
        self.root = Path(root).expanduser()

    @classmethod
    def default(cls) -> "AssetCache":
        return cls()

    def __repr__(self) -> str:
        return f"AssetCache({str(self.root)!r})"

    # ---- locations ----------------------------------------------------------------------------
    def kind_dir(self, kind: str) -> Path:
        if kind not in self.KINDS:
            raise ValueError(f"unknown asset kind {kind!r}; have {self.KINDS}")
        return self.root / kind

    @property
    def ict_dir(self) -> Path:
        return self.kind_dir("ict")

    @property
    def facemesh_dir(self) -> Path:
        return self.kind_dir("facemesh")

    def _require(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise AssetsMissing(f"{what} is not in the asset cache {self.root} ({path.name} missing); {IMPORT_HINT}")
        return path

    def facemesh_file(self, name: str) -> Path:
        """A MediaPipe file, e.g. ``"face_landmark.tflite"`` or ``"canonical_face_model.obj"``."""
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"not a plain file name: {name!r}")
        return self._require(self.facemesh_dir / name, f"MediaPipe file {name!r}")

    def ict_topology_file(self) -> Path:
        return self._require(self.ict_dir / ICT_TOPOLOGY_FILE, "the ICT reference topology")

    def head_model_file(self) -> Path:
        return self._require(self.ict_dir / ICT_HEAD_MODEL_FILE, "the ICT head model")

    def ict_topology(self):
        """The ICT :class:`~topos_sdk.topology.ReferenceTopology` (loaded once per process and file version)."""
        from topos_sdk.topology import ReferenceTopology

        path = self.ict_topology_file()
        st = path.stat()
        key = str(path.resolve())
        memo = _TOPOLOGY_MEMO.get(key)
        if memo is None or memo[:2] != (st.st_mtime_ns, st.st_size):
            memo = (st.st_mtime_ns, st.st_size, ReferenceTopology.load(path))
            _TOPOLOGY_MEMO[key] = memo
        return memo[2]

    # ---- manifests and verification -----------------------------------------------------------
    def manifest_path(self, kind: str) -> Path:
        return self.kind_dir(kind) / "manifest.json"

    def manifest(self, kind: str) -> dict | None:
        path = self.manifest_path(kind)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("format") == MANIFEST_FORMAT and data.get("kind") == kind else None

    def verify(self, kind: str, checksums: bool = True) -> KindStatus:
        """Check that every file the manifest lists is there with its size (and sha256)."""
        manifest = self.manifest(kind)
        if manifest is None:
            present = self.kind_dir(kind).exists()
            problem = "no valid manifest.json (interrupted or foreign import)" if present else "not imported"
            return KindStatus(kind, False, [problem])
        problems = []
        folder = self.kind_dir(kind)
        for name, rec in sorted(manifest.get("outputs", {}).items()):
            path = folder / name
            if not path.is_file():
                problems.append(f"{kind}/{name}: missing")
            elif path.stat().st_size != rec["size"]:
                problems.append(f"{kind}/{name}: size {path.stat().st_size}, manifest says {rec['size']}")
            elif checksums and sha256_file(path) != rec["sha256"]:
                problems.append(f"{kind}/{name}: sha256 differs from the manifest (file changed or corrupt)")
        return KindStatus(kind, True, problems, manifest)

    def status(self, checksums: bool = True) -> dict[str, KindStatus]:
        return {kind: self.verify(kind, checksums) for kind in self.KINDS}
