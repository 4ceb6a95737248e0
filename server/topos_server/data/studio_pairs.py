"""A studio's own (portrait, head mesh) pairs as TOPOS-DiT training shards.

A folder holds ``NAME.jpg|jpeg|png|webp`` portraits and, for each, ``NAME.obj|ply|stl|usd|usda|usdc``: that
person's head as a mesh of any topology and units (a scan, a sculpt, a retopologised asset, ideally
with a neutral expression: the DiT learns the neutral identity head). Each mesh goes through
``topos convert`` (TOPOS-VAE prior + refinement onto the mesh) into the reference topology and frame;
each portrait through the same face front-end and aligned crop as at inference. The shard format is
the synthetic portraits' (``crop``, ``landmarks``, ``neutral``, ...), so ``topos train dit --pairs``
mixes both kinds of folders. Shards are cached under the asset cache, keyed by the folder's files
(names, sizes, modification times): a changed folder is converted again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from topos_server.data.portrait_split import IMAGE_SUFFIXES

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".usd", ".usda", ".usdc")
SHARD_NAME = "shard_00000.npz"


def studio_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(portrait, mesh) pairs of ``folder`` matched by file stem, sorted; a clear error when there are none."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    meshes = {p.stem: p for p in files if p.suffix.lower() in MESH_SUFFIXES}
    pairs = [(p, meshes[p.stem]) for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in meshes]
    if not pairs:
        raise ValueError(f"{folder}: no pair shards and no (portrait, mesh) pairs — expected NAME.jpg|png with "
                         f"NAME.obj|ply|stl|usd beside it")
    return pairs


def folder_key(pairs: list[tuple[Path, Path]]) -> str:
    digest = hashlib.sha256()
    for portrait, mesh in pairs:
        for path in (portrait, mesh):
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def studio_pair_shards(folder: str | Path, shards_root: str | Path | None = None, converter=None,
                       progress: Callable[[str], None] | None = None) -> Path:
    """Convert ``folder``'s pairs into one shard, cached under ``shards_root`` (default: the asset cache's
    ``studio_pairs/``); returns the shard folder for the trainer.

    A pair whose portrait has no detectable face or whose mesh does not convert is skipped with a
    progress line saying why; none left is an error.
    """
    from topos_sdk import ToposError
    from topos_server.assets.cache import AssetCache
    from topos_server.face import load_image
    from topos_server.face.aligned_crop import aligned_face_crop
    from topos_server.geometry.mesh_input import largest_component, read_mesh
    from topos_server.pipelines.convert import HeadConverter
    from topos_server.pipelines.head_generation import CROP_SIZE

    pairs = studio_pairs(folder)
    root = Path(shards_root) if shards_root is not None else AssetCache.default().root / "studio_pairs"
    out = root / f"{Path(folder).resolve().name}-{folder_key(pairs)}"
    if (out / SHARD_NAME).is_file():
        return out
    converter = converter or HeadConverter.load()
    from topos_server.engines.classic import ClassicEngine
    from topos_server.fit.landmark_fit import fit_landmarks

    classic = ClassicEngine()
    crops, landmarks, heads, names, identities = [], [], [], [], []
    for portrait, mesh_file in pairs:
        try:
            image = load_image(portrait.read_bytes())
            face = classic.detect(image)
            mesh = largest_component(read_mesh(mesh_file))
            conversion = converter.convert_surface(mesh.points, mesh.triangles, report=False)
        except (ToposError, ValueError, OSError) as exc:
            if progress:
                progress(f"skipped {portrait.name} + {mesh_file.name}: {exc}")
            continue
        crop, _ = aligned_face_crop(image, face.points, CROP_SIZE)
        height, width = image.shape[:2]
        identities.append(fit_landmarks(classic.basis, face.points, (width, height)).identity.astype(np.float32))
        crops.append(crop)
        landmarks.append(face.points.astype(np.float32))
        heads.append(conversion.points.astype(np.float16))
        names.append(portrait.stem)
        if progress:
            progress(f"paired {portrait.name} + {mesh_file.name}")
    if not heads:
        raise ValueError(f"{folder}: none of the {len(pairs)} (portrait, mesh) pairs could be used")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (SHARD_NAME + ".tmp.npz")
    np.savez(tmp, crop=np.stack(crops), landmarks=np.stack(landmarks), neutral=np.stack(heads),
             classic_identity=np.stack(identities), name=np.array(names))
    tmp.replace(out / SHARD_NAME)
    return out
