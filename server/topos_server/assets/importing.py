"""``topos assets import`` / ``fetch``: copy and derive model files into the :class:`AssetCache`.

- MediaPipe (``--facemesh``): the ``.tflite`` models and canonical face meshes are copied as they are,
  with their Apache-2.0 LICENSE.
- ICT-FaceKit (``--ict``, the repository root or its ``FaceXModel`` folder, ``.obj`` or ``.obj.xz``):
  writes ``ict/topology.npz`` (:func:`topos_server.assets.ict_topology.build_ict_topology`) and
  ``ict/head_model.safetensors`` (:mod:`topos_server.assets.head_model`), with the MIT LICENSE.
- When both are in the cache, the 478 MediaPipe landmarks are embedded on the ICT skin
  (:func:`topos_server.assets.correspondence.embed_mediapipe_landmarks`) and stored in the topology.

Every kind is written into a temporary folder and swapped in whole (``atomic_output_dir``), then its
``manifest.json`` records the source files (size, mtime, sha256) and outputs (size, sha256). A second
import of unchanged sources is "up to date" after a stat (or, for copied sources, a hash) comparison.

Only the neutral OBJ is fully parsed; the 157 shape OBJs share its connectivity, so only their ``v``
block is parsed (numpy, threads) and the rest of each file is hashed and compared with the neutral's
(a full parse is the fallback for any file laid out differently).
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from topos_sdk.atomic_files import atomic_output_dir, atomic_output_path
from topos_sdk.errors import ToposError
from topos_server.assets.cache import ICT_HEAD_MODEL_FILE, ICT_TOPOLOGY_FILE, MANIFEST_FORMAT, AssetCache, sha256_file
from topos_server.assets.landmark_offsets import OFFSETS_FILE, load_offsets

# bump when what an import writes changes, so existing caches re-import
ICT_IMPORTER_VERSION = 1
FACEMESH_IMPORTER_VERSION = 1

NUM_IDENTITY_MODES = 100
NUM_ARKIT_EXPRESSIONS = 53

# MediaPipe 0.10.21 files: name → public URL (for ``fetch``); required ones must be in an import source
MEDIAPIPE_VERSION = "v0.10.21"
_MP_MODELS = "https://storage.googleapis.com/mediapipe-assets/"
_MP_GEOMETRY = f"https://raw.githubusercontent.com/google-ai-edge/mediapipe/{MEDIAPIPE_VERSION}/mediapipe/modules/face_geometry/data/"
FACEMESH_FILES = {
    "face_detection_short_range.tflite": _MP_MODELS + "face_detection_short_range.tflite",
    "face_detection_full_range_sparse.tflite": _MP_MODELS + "face_detection_full_range_sparse.tflite",
    "face_landmark.tflite": _MP_MODELS + "face_landmark.tflite",
    "face_landmark_with_attention.tflite": _MP_MODELS + "face_landmark_with_attention.tflite",
    "iris_landmark.tflite": _MP_MODELS + "iris_landmark.tflite",
    "canonical_face_model.obj": _MP_GEOMETRY + "canonical_face_model.obj",
    "canonical_face_model_uv_visualization.png": _MP_GEOMETRY + "canonical_face_model_uv_visualization.png",
    "geometry_pipeline_metadata_landmarks.pbtxt": _MP_GEOMETRY + "geometry_pipeline_metadata_landmarks.pbtxt",
    "face_model_with_iris.obj": None,  # no stable public URL; import it from a local copy
    "LICENSE": f"https://raw.githubusercontent.com/google-ai-edge/mediapipe/{MEDIAPIPE_VERSION}/LICENSE",
}
FACEMESH_REQUIRED = ("face_detection_short_range.tflite", "face_landmark.tflite", "canonical_face_model.obj", "LICENSE")
ICT_REPOSITORY = "https://github.com/ICT-VGL/ICT-FaceKit.git"

Log = Callable[[str], None]


@dataclass
class ImportOutcome:
    kind: str
    action: str  # "imported" | "up to date" | "updated" | "skipped"
    seconds: float
    details: list[str] = field(default_factory=list)

    def summary(self) -> str:
        extra = f" ({'; '.join(self.details)})" if self.details else ""
        return f"{self.kind}: {self.action} in {self.seconds:.1f} s{extra}"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# ---- source description and up-to-date checks ----------------------------------------------------
def _describe_sources(files: dict[str, Path], with_hash: bool) -> dict[str, dict]:
    out = {}
    for rel, path in sorted(files.items()):
        st = path.stat()
        rec = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if with_hash:
            rec["sha256"] = sha256_file(path)
        out[rel] = rec
    return out


def _sources_unchanged(cache: AssetCache, kind: str, version: int, files: dict[str, Path]) -> bool:
    """True when the manifest matches these sources (by stat, else by hash) and the outputs verify."""
    manifest = cache.manifest(kind)
    if not manifest or manifest.get("importer_version") != version:
        return False
    recorded = manifest.get("sources", {})
    if set(recorded) != set(files):
        return False
    stats = _describe_sources(files, with_hash=False)
    same_stat = all(recorded[k]["size"] == v["size"] and recorded[k]["mtime_ns"] == v["mtime_ns"] for k, v in stats.items())
    if not same_stat:
        if any(recorded[k]["size"] != v["size"] for k, v in stats.items()):
            return False
        if any(recorded[k].get("sha256") != sha256_file(files[k]) for k in files):
            return False
    return cache.verify(kind, checksums=True).ok


def _write_manifest(folder: Path, kind: str, version: int, source: Path, sources: dict[str, dict],
                    extra: dict | None = None) -> None:
    outputs = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
               for p in sorted(folder.iterdir()) if p.is_file() and p.name != "manifest.json"}
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "importer_version": version,
        "source": str(source),
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sources": sources,
        "outputs": outputs,
        **(extra or {}),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


# ---- MediaPipe -----------------------------------------------------------------------------------
def facemesh_source_files(source: str | os.PathLike) -> dict[str, Path]:
    source = Path(source).expanduser()
    if not source.is_dir():
        raise ToposError(f"{source}: no such folder (expected the MediaPipe files)")
    missing = [name for name in FACEMESH_REQUIRED if not (source / name).is_file()]
    models = [name for name in FACEMESH_REQUIRED if name != "LICENSE"]
    if set(models) <= set(missing):
        raise ToposError(f"{source}: not a MediaPipe FaceMesh folder (none of {', '.join(models)})")
    if missing:
        raise ToposError(f"{source}: missing {', '.join(missing)}")
    return {name: source / name for name in FACEMESH_FILES if (source / name).is_file()}


def import_facemesh(source: str | os.PathLike, cache: AssetCache, force: bool = False) -> ImportOutcome:
    t0 = time.perf_counter()
    source = Path(source).expanduser().resolve()
    files = facemesh_source_files(source)
    if not force and _sources_unchanged(cache, "facemesh", FACEMESH_IMPORTER_VERSION, files):
        return ImportOutcome("facemesh", "up to date", time.perf_counter() - t0)
    sources = _describe_sources(files, with_hash=True)
    with atomic_output_dir(cache.facemesh_dir) as tmp:
        for name, path in files.items():
            shutil.copyfile(path, tmp / name)
        _write_manifest(tmp, "facemesh", FACEMESH_IMPORTER_VERSION, source, sources,
                        {"mediapipe_version": MEDIAPIPE_VERSION})
    return ImportOutcome("facemesh", "imported", time.perf_counter() - t0, [f"{len(files)} files"])


# ---- ICT-FaceKit ---------------------------------------------------------------------------------
def _find_obj(folder: Path, stem: str) -> Path | None:
    for suffix in (".obj", ".obj.xz"):
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return None


def ict_source_files(source: str | os.PathLike) -> tuple[Path, dict[str, Path], list[str], list[str]]:
    """Validate an ICT-FaceKit folder → (root, {relative name: path}, ARKit names, extra shape names)."""
    source = Path(source).expanduser()
    if not source.is_dir():
        raise ToposError(f"{source}: no such folder (expected an ICT-FaceKit checkout)")
    root = source.parent if source.name == "FaceXModel" and not (source / "FaceXModel").is_dir() else source
    model = root / "FaceXModel"
    if not model.is_dir() or _find_obj(model, "generic_neutral_mesh") is None:
        raise ToposError(f"{source}: not an ICT-FaceKit folder (no FaceXModel/generic_neutral_mesh.obj(.xz))")
    files: dict[str, Path] = {}
    missing: list[str] = []

    def need(rel: str, path: Path | None):
        if path is None:
            missing.append(rel)
        else:
            files[rel] = path

    need("FaceXModel/vertex_indices.json", model / "vertex_indices.json" if (model / "vertex_indices.json").is_file() else None)
    need("LICENSE", root / "LICENSE" if (root / "LICENSE").is_file() else None)
    arkit: list[str] = []
    if "FaceXModel/vertex_indices.json" in files:
        try:
            arkit = list(json.loads(files["FaceXModel/vertex_indices.json"].read_text())["expressions"])
        except (ValueError, KeyError) as exc:
            raise ToposError(f"{files['FaceXModel/vertex_indices.json']}: unreadable ({exc})") from None
        if len(arkit) != NUM_ARKIT_EXPRESSIONS:
            raise ToposError(f"{files['FaceXModel/vertex_indices.json']}: lists {len(arkit)} expressions, "
                             f"expected {NUM_ARKIT_EXPRESSIONS}")
    stems = ["generic_neutral_mesh"] + [f"identity{i:03d}" for i in range(NUM_IDENTITY_MODES)] + arkit
    for stem in stems:
        path = _find_obj(model, stem)
        need(f"FaceXModel/{stem}.obj(.xz)", path)
        if path is not None:
            files[f"FaceXModel/{path.name}"] = files.pop(f"FaceXModel/{stem}.obj(.xz)")
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ToposError(f"{source}: missing {', '.join(missing[:3])}{more}")
    known = set(stems)
    extras = sorted({p.name.split(".")[0] for p in model.iterdir()
                     if p.name.endswith((".obj", ".obj.xz")) and p.name.split(".")[0] not in known
                     and not p.name.startswith("identity")})
    for stem in extras:
        path = _find_obj(model, stem)
        files[f"FaceXModel/{path.name}"] = path
    for extra_file in ("README.md", "FaceXModel/ICTFaceModelMaterial.mtl"):
        if (root / extra_file).is_file():
            files[extra_file] = root / extra_file
    return root, files, arkit, extras


def _read_bytes(path: Path) -> bytes:
    if path.name.endswith(".xz"):
        with lzma.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def _split_vertex_block(raw: bytes) -> tuple[np.ndarray, bytes] | None:
    """(N, 3) float64 from the file's one contiguous ``v x y z`` block, and the bytes after it;
    None when the file is not laid out that way (the caller then parses it fully)."""
    raw = b"\n" + raw  # so a "v" on the first line is found like the others
    start = raw.find(b"\nv ")
    if start < 0:
        return None
    ends = [at for marker in (b"\nvt ", b"\nvn ", b"\nf ", b"\nusemtl ", b"\ng ", b"\no ", b"\ns ", b"\n#")
            if (at := raw.find(marker, start + 1)) >= 0]
    stop = min(ends) if ends else len(raw)
    block = raw[start:stop]
    tokens = block.split()
    if len(tokens) % 4 or tokens[::4].count(b"v") != len(tokens) // 4:
        return None
    try:
        values = np.array(tokens).reshape(-1, 4)[:, 1:].astype(np.float64)  # (N, 3)
    except ValueError:
        return None
    if raw.find(b"\nv ", stop) >= 0:  # more vertices later: not one block
        return None
    return values, raw[stop:]


def _fast_shape_points(path: Path, neutral_tail_digest: bytes, num_points: int) -> np.ndarray | None:
    """(N, 3) float64 points when the file is laid out like the neutral (same bytes after the ``v``
    block: same UVs, materials and faces); None otherwise. Runs in worker processes."""
    import hashlib

    split = _split_vertex_block(_read_bytes(path))
    if split is None:
        return None
    points, tail = split
    if hashlib.sha256(tail).digest() != neutral_tail_digest or len(points) != num_points:
        return None
    return points


def _shape_points(path: Path, neutral_tail_digest: bytes, neutral_mesh, fast: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) float64 points of a shape OBJ whose connectivity must equal the neutral's."""
    from topos_sdk.obj_reader import read_obj

    if fast is None:
        fast = _fast_shape_points(path, neutral_tail_digest, len(neutral_mesh.points))
    if fast is not None:
        return fast
    mesh = read_obj(path)  # laid out differently: compare the parsed connectivity
    if not (np.array_equal(mesh.face_vertex_counts, neutral_mesh.face_vertex_counts)
            and np.array_equal(mesh.face_vertex_indices, neutral_mesh.face_vertex_indices)
            and len(mesh.points) == len(neutral_mesh.points)):
        raise ToposError(f"{path}: its vertices or faces differ from generic_neutral_mesh's")
    return mesh.points.astype(np.float64)


def _read_shapes(paths: list[Path], neutral_tail_digest: bytes, neutral_mesh) -> list[np.ndarray]:
    """Shape points in parallel worker processes (decompression and parsing are CPU-bound)."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    n = len(neutral_mesh.points)
    workers = max(1, min(8, os.cpu_count() or 1))
    fast: list[np.ndarray | None]
    try:
        if workers == 1:
            raise OSError("one CPU")
        with ProcessPoolExecutor(workers) as pool:
            fast = list(pool.map(_fast_shape_points, paths, [neutral_tail_digest] * len(paths), [n] * len(paths),
                                 chunksize=4))
    except (OSError, BrokenProcessPool, NotImplementedError):
        fast = [None] * len(paths)
    return [_shape_points(p, neutral_tail_digest, neutral_mesh, f) for p, f in zip(paths, fast)]


def build_ict_outputs(root: Path, files: dict[str, Path], arkit: list[str], extras: list[str], out_dir: Path,
                      log: Log = _stderr) -> dict:
    """Write topology.npz, head_model.safetensors and copies into ``out_dir``; returns manifest extras."""
    import hashlib

    from topos_sdk.obj_reader import read_obj
    from topos_server.assets.ict_topology import build_ict_topology, check_ict_mesh, symmetry_mismatch

    model = root / "FaceXModel"
    neutral_path = _find_obj(model, "generic_neutral_mesh")
    neutral_mesh = read_obj(neutral_path)
    check_ict_mesh(neutral_mesh, str(neutral_path))
    vertex_indices = json.loads((model / "vertex_indices.json").read_text())
    topology = build_ict_topology(neutral_mesh, vertex_indices)
    split = _split_vertex_block(_read_bytes(neutral_path))
    neutral_points = split[0] if split is not None else neutral_mesh.points.astype(np.float64)  # (N, 3)
    tail_digest = hashlib.sha256(split[1]).digest() if split is not None else b""

    identity_stems = [f"identity{i:03d}" for i in range(NUM_IDENTITY_MODES)]
    stems = identity_stems + arkit + extras
    shapes = _read_shapes([_find_obj(model, s) for s in stems], tail_digest, neutral_mesh)
    deltas = np.stack(shapes) - neutral_points[None]  # (S, N, 3) float64
    identity_basis = deltas[:NUM_IDENTITY_MODES]  # (100, N, 3)
    expression_basis = deltas[NUM_IDENTITY_MODES:]  # (E, N, 3)

    from topos_server.assets.head_model_file import save_head_model_arrays

    skin = slice(0, topology.submesh("eye_socket_right").vertex_stop)
    mode_rms = np.sqrt((identity_basis[:, skin] ** 2).sum(-1).mean(-1))  # (100,) cm
    flat = identity_basis[:, skin].reshape(NUM_IDENTITY_MODES, -1)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    gram = unit @ unit.T
    max_cosine = float(np.abs(gram - np.eye(NUM_IDENTITY_MODES)).max())
    mismatch = symmetry_mismatch(topology.rest_points, topology.symmetry)[skin]
    info = {
        "arkit_expression_count": len(arkit),
        "extra_expression_names": extras,
        "identity_scale": 1.0,
        "identity_mode_rms_cm": [round(float(x), 5) for x in mode_rms],
        "identity_max_abs_cosine": round(max_cosine, 4),
        "topology_id": topology.topology_id,
        "source": "ICT-FaceKit FaceXModel",
    }
    save_head_model_arrays(out_dir / ICT_HEAD_MODEL_FILE, neutral_points, identity_basis, expression_basis,
                           arkit + extras, info)
    topology.save(out_dir / ICT_TOPOLOGY_FILE)
    shutil.copyfile(root / "LICENSE", out_dir / "LICENSE")
    shutil.copyfile(model / "vertex_indices.json", out_dir / "vertex_indices.json")
    if (root / "README.md").is_file():
        shutil.copyfile(root / "README.md", out_dir / "ICT-FaceKit-README.md")
    log(f"ict: {topology.num_points} vertices, {topology.num_faces} faces, {NUM_IDENTITY_MODES} identity modes, "
        f"{len(arkit)} + {len(extras)} expression shapes; identity mode RMS {mode_rms[0]:.3f} → {mode_rms[-1]:.3f} cm, "
        f"max |cos| between modes {max_cosine:.3f}; skin symmetry mismatch max {mismatch.max() * 10:.3f} mm, "
        f"mean {mismatch.mean() * 10:.4f} mm")
    return {
        "topology_id": topology.topology_id,
        "num_vertices": topology.num_points,
        "num_faces": topology.num_faces,
        "identity_modes": NUM_IDENTITY_MODES,
        "expressions": arkit + extras,
        "skin_symmetry_mismatch_mm": {"max": float(mismatch.max() * 10), "mean": float(mismatch.mean() * 10)},
    }


def import_ict(source: str | os.PathLike, cache: AssetCache, force: bool = False, log: Log = _stderr) -> ImportOutcome:
    t0 = time.perf_counter()
    root, files, arkit, extras = ict_source_files(source)
    root = root.resolve()
    if not force and _sources_unchanged(cache, "ict", ICT_IMPORTER_VERSION, files):
        return ImportOutcome("ict", "up to date", time.perf_counter() - t0)
    sources = _describe_sources(files, with_hash=True)
    with atomic_output_dir(cache.ict_dir) as tmp:
        extra = build_ict_outputs(root, files, arkit, extras, tmp, log)
        _write_manifest(tmp, "ict", ICT_IMPORTER_VERSION, root, sources, extra)
    return ImportOutcome("ict", "imported", time.perf_counter() - t0,
                         [f"{len(files)} source files", f"topology {extra['topology_id']}"])


# ---- MediaPipe landmarks on the ICT topology -----------------------------------------------------
def attach_mediapipe_landmarks(cache: AssetCache, force: bool = False, log: Log = _stderr) -> ImportOutcome:
    """Embed the 478 MediaPipe landmarks in the cached ICT topology (needs both kinds imported)."""
    t0 = time.perf_counter()
    ict, facemesh = cache.manifest("ict"), cache.manifest("facemesh")
    if ict is None or facemesh is None:
        return ImportOutcome("mediapipe landmarks", "skipped", 0.0, ["needs both --ict and --facemesh imported"])
    try:
        from topos_server.assets import correspondence
    except ImportError as exc:
        log(f"warning: MediaPipe landmarks not embedded: topos_server.assets.correspondence is not importable ({exc})")
        return ImportOutcome("mediapipe landmarks", "skipped", time.perf_counter() - t0, ["correspondence unavailable"])
    canonical = cache.facemesh_dir / "canonical_face_model.obj"
    iris = cache.facemesh_dir / "face_model_with_iris.obj"
    stamp = {
        "canonical_sha256": facemesh["outputs"]["canonical_face_model.obj"]["sha256"],
        "iris_sha256": facemesh["outputs"].get("face_model_with_iris.obj", {}).get("sha256"),
        "correspondence_version": str(getattr(correspondence, "CORRESPONDENCE_VERSION", getattr(correspondence, "VERSION", ""))),
        "offsets_sha256": sha256_file(OFFSETS_FILE) if OFFSETS_FILE.is_file() else None,
    }
    topology = cache.ict_topology()
    if not force and "mediapipe" in topology.landmarks and topology.info.get("mediapipe_landmarks") == stamp:
        return ImportOutcome("mediapipe landmarks", "up to date", time.perf_counter() - t0)
    landmarks = correspondence.embed_mediapipe_landmarks(topology, canonical, iris if iris.is_file() else None,
                                                         offsets=load_offsets())
    topology.landmarks["mediapipe"] = landmarks
    topology.info["mediapipe_landmarks"] = stamp
    path = cache.ict_dir / ICT_TOPOLOGY_FILE
    topology.save(path)
    _refresh_output_record(cache, "ict", ICT_TOPOLOGY_FILE)
    return ImportOutcome("mediapipe landmarks", "updated", time.perf_counter() - t0, [f"{len(landmarks)} points"])


def _refresh_output_record(cache: AssetCache, kind: str, name: str) -> None:
    manifest = cache.manifest(kind)
    path = cache.kind_dir(kind) / name
    manifest["outputs"][name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    with atomic_output_path(cache.manifest_path(kind)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def import_assets(cache: AssetCache, ict: str | os.PathLike | None = None, facemesh: str | os.PathLike | None = None,
                  force: bool = False, log: Log = _stderr) -> list[ImportOutcome]:
    """Import either or both; validates every given source before writing anything."""
    if ict is None and facemesh is None:
        raise ToposError("nothing to import: give --ict PATH and/or --facemesh PATH")
    if ict is not None:
        ict_source_files(ict)
    if facemesh is not None:
        facemesh_source_files(facemesh)
    outcomes = []
    if facemesh is not None:
        outcomes.append(import_facemesh(facemesh, cache, force))
    if ict is not None:
        outcomes.append(import_ict(ict, cache, force, log))
    if cache.manifest("ict") and cache.manifest("facemesh"):
        outcomes.append(attach_mediapipe_landmarks(cache, force, log))
    return outcomes


# ---- fetch from the public sources ---------------------------------------------------------------
def _require_internet(host: str, timeout: float = 5.0) -> None:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        raise ToposError(f"no internet connection (cannot reach {host}: {exc}); copy ICT-FaceKit and the MediaPipe "
                         "files by hand and run `topos assets import --ict PATH --facemesh PATH`") from None


def fetch_assets(cache: AssetCache, ict: bool = True, facemesh: bool = True, force: bool = False,
                 log: Log = _stderr) -> list[ImportOutcome]:
    """Download from the public sources into a temporary folder, then import from there."""
    import subprocess
    import urllib.request

    hosts = (["github.com"] if ict else []) + (["storage.googleapis.com"] if facemesh else [])
    for host in hosts:
        _require_internet(host)
    with tempfile.TemporaryDirectory(prefix="topos-fetch-") as tmp:
        tmp = Path(tmp)
        ict_dir = fm_dir = None
        if facemesh:
            fm_dir = tmp / "mediapipe"
            fm_dir.mkdir()
            for name, url in FACEMESH_FILES.items():
                if url is None:
                    continue
                log(f"fetch: {url}")
                with urllib.request.urlopen(url, timeout=60) as resp, open(fm_dir / name, "wb") as out:
                    shutil.copyfileobj(resp, out)
        if ict:
            if shutil.which("git") is None:
                raise ToposError("fetching ICT-FaceKit needs git on PATH")
            ict_dir = tmp / "ICT-FaceKit"
            log(f"fetch: git clone --depth 1 {ICT_REPOSITORY}")
            done = subprocess.run(["git", "clone", "--quiet", "--depth", "1", ICT_REPOSITORY, str(ict_dir)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise ToposError(f"git clone {ICT_REPOSITORY} failed: {done.stderr.strip().splitlines()[-1:]}")
        return import_assets(cache, ict=ict_dir, facemesh=fm_dir, force=force, log=log)
