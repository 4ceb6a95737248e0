"""The engine interface shared by the in-process path (``topos generate``) and the gRPC server."""

from __future__ import annotations

import functools
import importlib
import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from topos_sdk import HeadResult, InvalidInputError
from topos_sdk.errors import EngineUnavailable
from topos_sdk.generate import FOCAL_LENGTH_RANGE_PX, MAX_VIEWS, TEXTURE_MODES

# progress(stage, fraction in [0, 1] of the whole request, image index or None for the batch)
ProgressCallback = Callable[[str, float, "int | None"], None]

TEXTURE_SIZES = (512, 1024, 2048)


@dataclass(frozen=True)
class GenerateOptions:
    seed: int = 0
    texture_size: int = 1024
    focal_length_px: float | None = None  # None: estimated from the image size
    face_index: int | None = None  # which face of a group photo (list_faces order); None: the best one
    texture: str = "bake"  # "bake": the photo bake; "learned": TOPOS-Texture completes it (texture/learned.py)

    def __post_init__(self):
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise InvalidInputError(f"seed must be an integer in [0, 2^63), got {self.seed!r}")
        if self.texture_size not in TEXTURE_SIZES:
            raise InvalidInputError(f"texture size must be one of {TEXTURE_SIZES}, got {self.texture_size!r}")
        if self.focal_length_px is not None:
            low, high = FOCAL_LENGTH_RANGE_PX
            if not (isinstance(self.focal_length_px, (int, float, np.floating)) and math.isfinite(self.focal_length_px)
                    and low <= self.focal_length_px <= high):
                raise InvalidInputError(f"focal length must be a finite number of pixels in [{low:g}, {high:g}], "
                                        f"got {self.focal_length_px!r}")
        if self.face_index is not None and (isinstance(self.face_index, bool) or not isinstance(
                self.face_index, (int, np.integer)) or not 0 <= self.face_index < 2**31):
            raise InvalidInputError(f"face index must be a non-negative integer, got {self.face_index!r}")
        if self.texture not in TEXTURE_MODES:
            raise InvalidInputError(f"texture must be one of {TEXTURE_MODES}, got {self.texture!r}")


class Engine(Protocol):
    name: str
    max_batch_size: int  # 1 for engines that do not batch

    def generate(self, images: Sequence[bytes | np.ndarray], options: GenerateOptions,
                 progress: ProgressCallback | None = None) -> list[HeadResult]:
        """One HeadResult per image, same order. Raises InvalidInputError / NoFaceFound for bad images.

        ``images`` are encoded bytes (JPEG/PNG/WebP/TIFF) or decoded (H, W, 3) uint8 RGB arrays; an
        entry that is a tuple of those is several photos of one person, fitted into one head.
        Deterministic for a given ``options.seed``.
        """
        ...

    # Optional: ``seed_per_image = True`` with ``generate(images, options, progress, seeds=[...])`` (one seed per
    # image: the server then batches requests whatever their seeds).
    # Optional: ``list_faces(image) -> topos_sdk.faces.FaceList`` (the faces of a group photo, numbered
    # left to right as ``options.face_index`` counts them); the server's ListFaces needs it.


# name → "module:factory"; the factory takes (cache, device) and returns an Engine
_ENGINES = {
    "classic": "topos_server.engines.classic:ClassicEngine",
    "topos": "topos_server.engines.topos:ToposEngine",
}


def engine_names() -> list[str]:
    return list(_ENGINES)


def get_engine(name: str, cache=None, device: str = "cpu") -> Engine:
    if name not in _ENGINES:
        raise EngineUnavailable(f"unknown engine {name!r}; available: {', '.join(_ENGINES)}")
    module, factory = _ENGINES[name].split(":")
    return getattr(importlib.import_module(module), factory)(cache=cache, device=device)


@functools.lru_cache(maxsize=None)
def shared_engine(name: str, device: str = "cpu") -> Engine:
    """One engine instance per (name, device) for this process: models load once."""
    return get_engine(name, device=device)


def check_same_person(sources: tuple, options: GenerateOptions) -> None:
    """Several photos of one person: 2 to MAX_VIEWS of them, textured by merging their bakes."""
    if not 2 <= len(sources) <= MAX_VIEWS:
        raise InvalidInputError(f"{len(sources)} photos of one person; give 2 to {MAX_VIEWS}")
