"""Skin albedos baked from real portraits into the reference UV layout, cached on disk, one file each.

Each portrait goes through the classic engine exactly as at inference (landmarks → model fit →
:func:`~topos_server.texture.bake.bake_textures`) and the bake's linear albedo is kept. Which
portraits feed which bank follows :func:`~topos_server.data.portrait_split.split_portraits`: the
``train`` bank only from its training portraits, the ``eval`` bank only from the held-out ones.

File ``<root>/<split>/<portrait stem>.npz`` (root default ``$TOPOS_HOME/texture_bank``, i.e.
``~/.cache/topos/texture_bank``), all maps of UDIM tile 1001 (the face; row 0 is the top of the
tile, v = 1), H = W = the bake size:

- ``albedo`` (H, W, 3) float16 linear RGB: the complete, filled map;
- ``observed_albedo`` (H, W, 3) float16 linear RGB: the photo's delit texels before any fill
  (directly seen, or seen through the mirror texel where the texel itself was hidden), 0 where unseen;
- ``observed_weight`` (H, W) float16 in [0, 1]: how well each texel was seen (the bake's coverage);
- ``back_albedo`` (H, W, 3) float16 linear RGB: tile 1002 (back of the head, neck), filled;
- ``name`` (): the portrait's file name;
- ``format`` (): :data:`BANK_FORMAT`, the baker that made the entry. Entries of another (or none: made before
  the stamp) are *stale*: :meth:`TextureBank.build` bakes them again, and :meth:`TextureBank.require_current`
  (training, the texture benchmark) refuses a bank that holds any.

A portrait the front-end finds no face in leaves ``<stem>.failed`` (its reason) so it is not retried.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from topos_sdk.atomic_files import atomic_output_path
from topos_sdk.errors import ToposError

SPLITS = ("train", "eval")
DEFAULT_PORTRAITS = Path(__file__).resolve().parents[3].parent / "shared" / "portraits" / "us-congress-pd"
FACE_TILE, BACK_TILE = 1001, 1002
# bump when the bake changes what the bank holds. /2: baked with the photo's landmarks (mouth and eye openings,
# hair on the forehead and clothing at the neck filled with skin, not baked), as generation bakes
BANK_FORMAT = "topos-texture-bank/2"


def default_root() -> Path:
    return Path(os.environ.get("TOPOS_HOME") or Path.home() / ".cache" / "topos") / "texture_bank"


def split_files(split: str, portraits_dir: str | os.PathLike = DEFAULT_PORTRAITS) -> list[Path]:
    """The portraits a bank of ``split`` may use (sorted by name)."""
    from topos_server.data.portrait_split import split_portraits

    _check_split(split)
    train, held_out = split_portraits(portraits_dir)
    return train if split == "train" else held_out


class TextureBank:
    """The baked albedos of one split; ``bank[i]`` → dict of numpy arrays (see the module docstring)."""

    def __init__(self, split: str, root: str | os.PathLike | None = None):
        _check_split(split)
        self.split = split
        self.folder = Path(root).expanduser() / split if root is not None else default_root() / split

    @property
    def names(self) -> list[str]:
        """Stems of the baked portraits, sorted (the order of ``bank[i]``)."""
        return sorted(p.stem for p in self.folder.glob("*.npz")) if self.folder.is_dir() else []

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        names = self.names
        if not -len(names) <= index < len(names):
            raise IndexError(f"texture bank {self.split!r} has {len(names)} entries, asked for {index}")
        return self.load(names[index])

    def load(self, stem: str) -> dict[str, np.ndarray]:
        with np.load(self.folder / f"{stem}.npz") as data:
            return {key: data[key] for key in data.files}

    def is_current(self, stem: str) -> bool:
        """Whether entry ``stem`` was made by this baker (:data:`BANK_FORMAT`), read without loading the maps."""
        with np.load(self.folder / f"{stem}.npz") as data:
            return "format" in data.files and str(data["format"]) == BANK_FORMAT

    def stale(self) -> list[str]:
        """Stems of the entries an older baker made."""
        return [stem for stem in self.names if not self.is_current(stem)]

    def require_current(self) -> None:
        """Raise ValueError, saying how to rebuild, if any entry is stale."""
        stale = self.stale()
        if stale:
            root = "" if self.folder.parent == default_root() else f" --root {self.folder.parent}"
            raise ValueError(f"texture bank {self.folder}: {len(stale)} of {len(self)} entries were baked by an older "
                             f"baker (not {BANK_FORMAT}); rebuild them: python -m topos_server.data.texture_bank "
                             f"--split {self.split}{root}")

    def build(self, portraits: list[str | os.PathLike], size: int = 512, engine=None, log=print) -> dict[str, int]:
        """Bake every portrait not cached yet; returns counts ``{"baked", "cached", "failed"}``."""
        from topos_server.face import load_image

        counts = {"baked": 0, "cached": 0, "failed": 0}
        for number, path in enumerate(map(Path, portraits), 1):
            target = self.folder / f"{path.stem}.npz"
            failed = target.with_suffix(".failed")
            if failed.exists() or (target.exists() and self.is_current(path.stem)):
                counts["cached" if target.exists() else "failed"] += 1
                continue
            if engine is None:
                from topos_server.engines.classic import ClassicEngine

                engine = ClassicEngine()
            start = time.perf_counter()
            try:
                entry = bake_portrait(engine, load_image(path.read_bytes()), size)
            except ToposError as exc:
                failed.parent.mkdir(parents=True, exist_ok=True)
                failed.write_text(f"{exc}\n")
                counts["failed"] += 1
                log(f"[{number}/{len(portraits)}] {path.name}: skipped ({exc})")
                continue
            with atomic_output_path(target) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, name=np.array(path.name), format=np.array(BANK_FORMAT), **entry)
            counts["baked"] += 1
            log(f"[{number}/{len(portraits)}] {path.name}: {time.perf_counter() - start:.1f} s")
        return counts


def bake_portrait(engine, image: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Fit and bake one decoded (H, W, 3) uint8 portrait → the bank's arrays (float16, tile 1001 + back)."""
    from topos_server.texture.bake import bake_textures

    result, face = engine.fit_portrait(image)
    diagnostics: dict = {}
    bake_textures(image, result.posed_points(), result.camera, engine.topology, size=size, landmarks=face.points,
                  diagnostics=diagnostics)

    def hwc(tiles: dict, tile: int) -> np.ndarray:
        return np.ascontiguousarray(tiles[tile].transpose(1, 2, 0)).astype(np.float16)  # (3, S, S) → (S, S, 3)

    return {
        "albedo": hwc(diagnostics["albedo_linear"], FACE_TILE),
        "observed_albedo": hwc(diagnostics["observed_albedo_linear"], FACE_TILE),
        "observed_weight": np.clip(diagnostics["coverage"][FACE_TILE], 0.0, 1.0).astype(np.float16),
        "back_albedo": hwc(diagnostics["albedo_linear"], BACK_TILE),
    }


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"texture bank split must be one of {SPLITS}, got {split!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topos_server.data.texture_bank",
                                     description="Bake real portraits of one split into the texture bank.")
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--count", type=int, default=None, help="the first N portraits of the split (default: all)")
    parser.add_argument("--portraits", default=str(DEFAULT_PORTRAITS), help="folder of portraits")
    parser.add_argument("--root", default=None, help="bank root (default: $TOPOS_HOME/texture_bank)")
    parser.add_argument("--size", type=int, default=512, help="texels per tile side")
    args = parser.parse_args(argv)
    files = split_files(args.split, args.portraits)[: args.count]
    bank = TextureBank(args.split, args.root)
    counts = bank.build(files, args.size, log=lambda line: print(line, flush=True))
    print(f"{bank.folder}: {counts} → {len(bank)} entries", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
