"""One call from a portrait to a USD head asset, in-process or through a TOPOS server.

This is what the ``topos generate`` command, the Maya shelf button and the Houdini HDA call.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Callable, Sequence

from .errors import InvalidInputError, ToposError
from .faces import FaceList

# on_progress(stage, fraction of the whole job in [0, 1])
Progress = Callable[[str, float], None]

_NAME_OK = re.compile(r"[^A-Za-z0-9_]")
MAX_VIEWS = 8  # photos of one person fitted together
MAX_VARIANTS = 16  # heads of one portrait from consecutive seeds
FOCAL_LENGTH_RANGE_PX = (1.0, 1e6)
TEXTURE_MODES = ("bake", "learned")  # skin textures: the photo bake, or TOPOS-Texture completing it


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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def portraits_in(inputs: list[str]) -> list[str]:
    """Image files named, or found directly inside the folders named, in a stable order (the farm batch shims)."""
    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            found.append(str(path))
    return found


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
                  device: str = "cpu", on_progress: Progress | None = None, face_index: int | None = None,
                  focal_length_px: float | None = None, topology: str | None = None, texture: str = "bake") -> Path:
    """Generate a head from ``image`` and write the asset ``out_dir/NAME/NAME.usda``; returns that path.

    ``server=None`` runs the engine in this process (needs the ``server`` extra and imported assets);
    otherwise ``server`` is a ``host:port`` address of ``topos serve``. An existing asset is never
    replaced unless ``overwrite``. ``face_index``: which face of a group photo (as :func:`list_faces`
    numbers them); None takes the largest, most frontal, least occluded one. ``topology``: the name of a
    studio topology (``topos topology add``; on the server for ``server=...``) the head is written in.
    ``texture``: one of ``TEXTURE_MODES`` ("learned": TOPOS-Texture completes the photo bake).
    """
    return _generate_and_write([image], out_dir, server=server, engine=engine, seed=seed, texture_size=texture_size,
                               name=name or asset_name_for(image), usdz=usdz, overwrite=overwrite, token=token,
                               debug=debug, device=device, on_progress=on_progress, face_index=face_index,
                               focal_length_px=focal_length_px, topology=topology, texture=texture)


def generate_same_person(images: Sequence[str | os.PathLike | bytes], out_dir: str | os.PathLike, *, name: str,
                         server: str | None = None, engine: str = "classic", seed: int = 0, texture_size: int = 1024,
                         usdz: bool = False, overwrite: bool = False, token: str | None = None, debug: bool = False,
                         device: str = "cpu", on_progress: Progress | None = None,
                         focal_length_px: float | None = None, topology: str | None = None,
                         texture: str = "bake") -> Path:
    """Several photos of one person → one asset ``out_dir/NAME/NAME.usda``: one identity fitted to every
    view (each with its own expression and camera), textures merged from all of them; every view's
    camera is kept in the asset (``cameras/view0``…)."""
    if not 2 <= len(images) <= MAX_VIEWS:
        raise InvalidInputError(f"--same-person takes 2 to {MAX_VIEWS} photos, got {len(images)}")
    return _generate_and_write(list(images), out_dir, server=server, engine=engine, seed=seed,
                               texture_size=texture_size, name=name, usdz=usdz, overwrite=overwrite, token=token,
                               debug=debug, device=device, on_progress=on_progress, face_index=None,
                               focal_length_px=focal_length_px, topology=topology, texture=texture)


def generate_variants(image: str | os.PathLike | bytes, out_dir: str | os.PathLike, *, variants: int,
                      server: str | None = None, engine: str = "topos", seed: int = 0, texture_size: int = 1024,
                      name: str | None = None, usdz: bool = False, overwrite: bool = False, token: str | None = None,
                      debug: bool = False, device: str = "cpu", on_progress: Progress | None = None,
                      face_index: int | None = None, focal_length_px: float | None = None,
                      topology: str | None = None, texture: str = "bake") -> list[Path]:
    """``variants`` heads of one portrait, seeds ``seed`` … ``seed + variants − 1``, written as assets
    ``out_dir/NAME_seedS/NAME_seedS.usda``. In-process, an engine with ``generate_variants`` (``topos``)
    samples them in one batched call; a server gets the requests together and batches them itself.
    Nothing is written unless every asset folder is free (or ``overwrite``)."""
    if isinstance(variants, bool) or not isinstance(variants, numbers.Integral) or not 1 <= variants <= MAX_VARIANTS:
        raise InvalidInputError(f"variants must be an integer in [1, {MAX_VARIANTS}], got {variants!r}")
    out = check_output_folder(out_dir)
    base = name or asset_name_for(image)
    seeds = [int(seed) + k for k in range(variants)]
    names = [f"{base}_seed{s}" for s in seeds]
    taken = [n for n in names if (out / n).exists()]
    if taken and not overwrite:
        raise InvalidInputError(f"{out / taken[0]} already exists (use --overwrite to replace it)")
    check_focal_length(focal_length_px)
    data = read_image_source(image)
    common = dict(server=server, engine=engine, texture_size=texture_size, usdz=usdz, overwrite=overwrite,
                  token=token, debug=debug, device=device, face_index=face_index, focal_length_px=focal_length_px,
                  topology=topology, texture=texture)
    if server is not None:  # in flight together, so the server's batching worker can group them
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=variants) as pool:
            return list(pool.map(lambda k: _generate_and_write([data], out, seed=seeds[k], name=names[k],
                                                               on_progress=None, **common), range(variants)))
    from topos_server.engines import GenerateOptions, shared_engine

    engine_impl = shared_engine(engine, device)
    if not hasattr(engine_impl, "generate_variants"):
        return [_generate_and_write([data], out, seed=s, name=n, on_progress=on_progress, **common)
                for s, n in zip(seeds, names)]
    options = GenerateOptions(seed=seed, texture_size=texture_size, face_index=face_index,
                              focal_length_px=focal_length_px, texture=texture)
    report = (lambda stage, frac, index=None: on_progress(stage, 0.9 * frac)) if on_progress else None
    results = engine_impl.generate_variants(data, options, variants, progress=report)
    studio = _studio_topology(topology)
    return [_write_asset(studio.transfer(result) if studio else result, out, n, usdz, overwrite, debug, data, result,
                         on_progress) for result, n in zip(results, names)]


def list_faces(image: str | os.PathLike | bytes, *, server: str | None = None, engine: str = "classic",
               token: str | None = None, device: str = "cpu") -> FaceList:
    """The faces in ``image``, numbered left to right, with the one taken by default marked."""
    data = read_image_source(image)
    if server is None:
        from topos_server.engines import shared_engine

        return shared_engine(engine, device).list_faces(data)
    from .client import Client

    with Client(server, token=token) as client:
        return client.list_faces(data, engine=engine)


def write_face_overlay(image: str | os.PathLike | bytes, faces: FaceList, path: str | os.PathLike) -> Path:
    """A PNG of ``image`` with every face's box and index drawn (the default choice in green)."""
    try:
        import cv2
        from topos_server.face import load_image
        from topos_server.face.face_choice import draw_face_overlay
    except ImportError:
        raise ToposError("the face overlay is drawn with the face front-end: install the server extra "
                         "(pip install 'topos[server]')") from None
    from .atomic_files import atomic_output_path

    overlay = draw_face_overlay(load_image(read_image_source(image)), faces)
    path = Path(path)
    ok, png = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    with atomic_output_path(path) as tmp:
        tmp.write_bytes(png.tobytes())
    return path


def _generate_and_write(images: list, out_dir, *, server, engine, seed, texture_size, name, usdz, overwrite, token,
                        debug, device, on_progress, face_index, focal_length_px, topology=None,
                        texture: str = "bake") -> Path:
    out = check_output_folder(out_dir)
    if (out / name).exists() and not overwrite:
        raise InvalidInputError(f"{out / name} already exists (use --overwrite to replace it)")
    check_focal_length(focal_length_px)
    check_texture(texture)
    data = [read_image_source(image) for image in images]
    # generation is the first 90 % of the job, writing the asset the rest
    report = (lambda stage, frac: on_progress(stage, 0.9 * frac)) if on_progress else None
    if server is None:
        studio = _studio_topology(topology)
        result = _generate_in_process(data, engine, seed, texture_size, device, report, face_index, focal_length_px,
                                      texture)
        if studio is not None:
            reference_result, result = result, studio.transfer(result)
    else:
        from .client import Client

        with Client(server, token=token) as client:
            options = dict(seed=seed, engine=engine, texture_size=texture_size, on_progress=report,
                           focal_length_px=focal_length_px, texture=texture)
            if topology:
                options["topology"] = topology
            if len(data) > 1:
                result = client.generate_same_person(data, **options)
            else:
                result = client.generate(data[0], face_index=face_index, **options)
    return _write_asset(result, out, name, usdz, overwrite, debug, data[0],
                        reference_result if server is None and topology else result, on_progress)


def _write_asset(result, out: Path, name: str, usdz: bool, overwrite: bool, debug: bool, image: bytes,
                 debug_result, on_progress) -> Path:
    """The asset ``out/NAME/NAME.usda`` (+ ``debug/`` drawn from ``debug_result``, the reference-topology head)."""
    from .usd import write_head_asset

    if on_progress:
        on_progress("writing", 0.95)
    usda = write_head_asset(result, out, name=name, usdz=usdz, overwrite=overwrite)
    if debug:
        try:
            from topos_server.fit.debug_overlay import write_debug_files
        except ImportError:
            raise ToposError("--debug draws the overlay with the face front-end: install the server extra "
                             "(pip install 'topos[server]')") from None
        write_debug_files(usda.parent / "debug", image, debug_result)
    if on_progress:
        on_progress("done", 1.0)
    return usda


def check_texture(texture: str) -> str:
    """One of ``TEXTURE_MODES``; one clear line otherwise."""
    if texture not in TEXTURE_MODES:
        raise InvalidInputError(f"texture must be one of {TEXTURE_MODES}, got {texture!r}")
    return texture


def check_focal_length(focal_length_px: float | None) -> None:
    """None, or a finite number of pixels in [1, 1e6]; one clear line otherwise."""
    if focal_length_px is None:
        return
    low, high = FOCAL_LENGTH_RANGE_PX
    if (isinstance(focal_length_px, bool) or not isinstance(focal_length_px, numbers.Real)
            or not math.isfinite(focal_length_px) or not low <= focal_length_px <= high):
        raise InvalidInputError(f"focal length must be a finite number of pixels in [{low:g}, {high:g}], "
                                f"got {focal_length_px!r}")


def _studio_topology(name: str | None):
    """The studio topology ``name`` from the local asset cache (None for the reference topology)."""
    if not name:
        return None
    from topos_server.pipelines.studio_topology import load_studio_topology

    return load_studio_topology(name)


def _generate_in_process(data: list[bytes], engine_name, seed, texture_size, device, report, face_index,
                         focal_length_px, texture: str = "bake"):
    from topos_server.engines import GenerateOptions, shared_engine

    engine = shared_engine(engine_name, device)
    options = GenerateOptions(seed=seed, texture_size=texture_size, face_index=face_index,
                              focal_length_px=focal_length_px, texture=texture)
    progress = (lambda stage, frac, index=None: report(stage, frac)) if report else None
    source = data[0] if len(data) == 1 else tuple(data)  # a tuple: views of one person, one head
    return engine.generate([source], options, progress=progress)[0]
