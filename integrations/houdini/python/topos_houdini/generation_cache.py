"""Generation is cached by what determines the head: (portrait bytes, seed, engine, texture size, topology).

The cache lives on disk: the asset folder name carries the key's digest, so pressing Generate again with the
same inputs (in this session or the next, even with the portrait renamed) finds the existing asset instead
of generating it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

LOCAL_SERVER = "local"  # generate inside Houdini's Python instead of calling `topos serve`

_image_hashes: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256


def image_sha256(path: str) -> str:
    """sha256 of the portrait file, remembered per (path, mtime, size) so cooks do not re-read it."""
    st = os.stat(path)
    memo_key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if memo_key not in _image_hashes:
        with open(path, "rb") as f:
            _image_hashes[memo_key] = hashlib.sha256(f.read()).hexdigest()
    return _image_hashes[memo_key]


@dataclass(frozen=True)
class GenerationKey:
    image_sha256: str
    seed: int
    engine: str
    texture_size: int
    topology: str = ""  # a studio topology (`topos topology add`); "" = the reference topology

    @classmethod
    def for_portrait(cls, portrait: str, seed: int, engine: str, texture_size: int,
                     topology: str = "") -> "GenerationKey":
        return cls(image_sha256(portrait), int(seed), str(engine), int(texture_size), str(topology or "").strip())

    @property
    def digest(self) -> str:
        fields = asdict(self)
        if not self.topology:  # reference-topology heads keep the digests they had before topologies existed
            del fields["topology"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def asset_name(portrait: str, key: GenerationKey) -> str:
    from topos_sdk.generate import asset_name_for

    return f"{asset_name_for(portrait)}_{key.digest[:10]}"


def asset_path(out_dir: str, portrait: str, key: GenerationKey) -> Path:
    name = asset_name(portrait, key)
    return Path(out_dir) / name / f"{name}.usda"


def cached_asset(out_dir: str, portrait: str, key: GenerationKey) -> Path | None:
    """The asset already generated for ``key`` in ``out_dir`` (under any portrait file name), or None."""
    path = asset_path(out_dir, portrait, key)
    if path.is_file():
        return path
    suffix = f"_{key.digest[:10]}"
    found = sorted(p for p in Path(out_dir).glob(f"*{suffix}/*{suffix}.usda") if p.parent.name == p.stem)
    return found[0] if found else None


def generate_or_reuse(portrait: str, out_dir: str, key: GenerationKey, server: str | None,
                      on_progress=None) -> Path:
    """The asset for ``key`` in ``out_dir``: the cached one, else a newly generated one (``generate_head``)."""
    path = cached_asset(out_dir, portrait, key)
    if path is not None:
        return path
    from topos_sdk.generate import generate_head

    return Path(generate_head(portrait, out_dir, server=server, engine=key.engine, seed=key.seed,
                              texture_size=key.texture_size, name=asset_name(portrait, key),
                              on_progress=on_progress, topology=key.topology or None))


def server_address(text: str) -> str | None:
    """``None`` (generate in this process) for "" or "local", else the ``host:port`` given."""
    text = (text or "").strip()
    return None if text in ("", LOCAL_SERVER) else text

