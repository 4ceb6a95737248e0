"""One call from a portrait to a USD head asset, in-process or through a TOPOS server.

This is what the ``topos generate`` command, the Maya shelf button and the Houdini HDA call.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from .errors import InvalidInputError, ToposError

# on_progress(stage, fraction of the whole job in [0, 1])
Progress = Callable[[str, float], None]

_NAME_OK = re.compile(r"[^A-Za-z0-9_]")


def asset_name_for(image: str | os.PathLike | bytes, fallback: str = "head") -> str:
    """A USD-safe asset name from the image file name (``my portrait.jpg`` → ``my_portrait``)."""
    if isinstance(image, (bytes, bytearray)):
        return fallback
    stem = Path(image).name.split(".")[0]
    name = _NAME_OK.sub("_", stem) or fallback
    return f"_{name}" if name[0].isdigit() else name


def check_output_folder(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and fail early, with one clear line, if it is not writable."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create output folder {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InvalidInputError(f"output folder {out} is not writable")
    return out


def read_image_source(image: str | os.PathLike | bytes) -> bytes:
    """The encoded bytes of a portrait given as a path or bytes; clear errors for paths that are not files."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    path = Path(image)
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file")
    if path.is_dir():
        raise InvalidInputError(f"{path}: is a folder, not an image")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc.strerror})") from None


def generate_head(image: str | os.PathLike | bytes, out_dir: str | os.PathLike, *, server: str | None = None,
                  engine: str = "classic", seed: int = 0, texture_size: int = 1024, name: str | None = None,
                  usdz: bool = False, overwrite: bool = False, token: str | None = None, debug: bool = False,
                  device: str = "cpu", on_progress: Progress | None = None) -> Path:
    """Generate a head from ``image`` and write the asset ``out_dir/NAME/NAME.usda``; returns that path.

    ``server=None`` runs the engine in this process (needs the ``server`` extra and imported assets);
    otherwise ``server`` is a ``host:port`` address of ``topos serve``. An existing asset is never
    replaced unless ``overwrite``.
    """
    from .usd import write_head_asset

    name = name or asset_name_for(image)
    out = check_output_folder(out_dir)
    if (out / name).exists() and not overwrite:
        raise InvalidInputError(f"{out / name} already exists (use --overwrite to replace it)")
    data = read_image_source(image)
    # generation is the first 90 % of the job, writing the asset the rest
    report = (lambda stage, frac: on_progress(stage, 0.9 * frac)) if on_progress else None
    if server is None:
        result = _generate_in_process(data, engine, seed, texture_size, device, report)
    else:
        from .client import Client

        with Client(server, token=token) as client:
            result = client.generate(data, seed=seed, engine=engine, texture_size=texture_size,
                                     on_progress=report)
    if on_progress:
        on_progress("writing", 0.95)
    usda = write_head_asset(result, out, name=name, usdz=usdz, overwrite=overwrite)
    if debug:
        try:
            from topos_server.fit.debug_overlay import write_debug_files
        except ImportError:
            raise ToposError("--debug draws the overlay with the face front-end: install the server extra "
                             "(pip install 'topos[server]')") from None
        write_debug_files(usda.parent / "debug", data, result)
    if on_progress:
        on_progress("done", 1.0)
    return usda


def _generate_in_process(data, engine_name, seed, texture_size, device, report):
    from topos_server.engines import GenerateOptions, shared_engine

    engine = shared_engine(engine_name, device)
    options = GenerateOptions(seed=seed, texture_size=texture_size)
    progress = (lambda stage, frac, index=None: report(stage, frac)) if report else None
    result = engine.generate([data], options, progress=progress)[0]
    return result
