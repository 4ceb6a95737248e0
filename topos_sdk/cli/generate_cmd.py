"""``topos generate IMAGE... -o OUTDIR``: one asset folder per portrait, in-process or via a server."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("generate", help="portrait(s) → USD head asset(s)",
                       description="Generate one head asset folder per portrait (named after the image).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="portrait files (JPEG, PNG, WebP, TIFF)")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="folder that receives the asset folders")
    p.add_argument("--engine", default="classic", help="engine name (default: classic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (results are deterministic per seed)")
    p.add_argument("--variants", type=int, default=1, metavar="K",
                   help="K heads per portrait from seeds SEED … SEED+K−1, written as NAME_seedS (engine topos: "
                        "what the photo does not show varies; default 1: one head named NAME)")
    p.add_argument("--texture-size", type=int, default=1024, choices=(512, 1024, 2048), help="texels per UDIM tile side")
    p.add_argument("--texture", default="bake", choices=("bake", "learned"),
                   help="skin textures: the photo bake (default), or `learned`: TOPOS-Texture completes the bake "
                        "(unseen skin, de-lighting; the seed varies what the photo did not show)")
    p.add_argument("--server", metavar="HOST:PORT", help="use a `topos serve` server instead of running in-process")
    p.add_argument("--token-file", type=Path, help="file holding the server's bearer token")
    p.add_argument("--device", default="cpu", help="in-process device: cpu, cuda or auto")
    p.add_argument("--usdz", action="store_true", help="also write NAME.usdz")
    p.add_argument("--overwrite", action="store_true", help="replace existing asset folders")
    p.add_argument("--debug", action="store_true", help="also write debug/overlay.png and debug/landmarks.json")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--focal-length", type=float, metavar="PX",
                   help="focal length of the photos' camera in pixels (default: estimated)")
    p.add_argument("--face", type=_face_choice, metavar="INDEX|all",
                   help="which face of a group photo (numbered left to right, see --list-faces), or `all`: "
                        "one asset per face, NAME_face0, NAME_face1, … (default: the largest, most frontal, "
                        "least occluded face)")
    p.add_argument("--list-faces", action="store_true",
                   help="only list the faces of each photo (boxes, scores) and write OUTDIR/NAME_faces.png "
                        "with their indices drawn")
    p.add_argument("--same-person", action="store_true",
                   help="the IMAGEs are photos of one person: fit one head to all of them (needs --name)")
    p.add_argument("--name", help="asset name (one photo, or --same-person; default: the image's file name)")
    p.add_argument("--topology", metavar="NAME",
                   help="write the head in a studio topology registered with `topos topology add` (with --server: "
                        "one registered on the server)")
    p.set_defaults(handler=run)


def _face_choice(text: str) -> int | str:
    if text == "all":
        return text
    try:
        index = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a face index (0, 1, …) or `all`, got {text!r}") from None
    if index < 0:
        raise argparse.ArgumentTypeError(f"face index must be 0 or more, got {index}")
    return index


def _progress_bar(index: int, total: int, name: str):
    interactive = sys.stderr.isatty()

    def show(stage: str, fraction: float) -> None:
        done = (index + fraction) / total
        bar = "#" * int(done * 30)
        line = f"[{bar:<30}] {index + 1}/{total} {name}: {stage}"
        if interactive:
            print(f"\r{line:<100}", end="", file=sys.stderr, flush=True)
        elif fraction >= 1.0:  # no carriage returns in logs: one line per finished image
            print(line, file=sys.stderr)

    return show


def run(args) -> int:
    from ..errors import InvalidInputError, ToposError
    from ..generate import MAX_VARIANTS, asset_name_for, check_focal_length, check_output_folder

    token = None
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise ToposError(f"cannot read token file {args.token_file}: {exc.strerror}") from None
    check_focal_length(args.focal_length)
    if args.variants != 1:
        if not 1 <= args.variants <= MAX_VARIANTS:
            raise InvalidInputError(f"--variants must be in [1, {MAX_VARIANTS}], got {args.variants}")
        if args.same_person or args.face == "all":
            raise InvalidInputError("--variants makes several heads of one face: not with --same-person or --face all")
    if args.same_person:
        if not args.name:
            raise InvalidInputError("--same-person makes one asset from all the photos: name it with --name NAME")
        if args.face is not None or args.list_faces:
            raise InvalidInputError("--same-person takes the best face of each photo; --face and --list-faces "
                                    "work on single photos")
    elif args.name and len(args.images) > 1:
        raise InvalidInputError("--name names one asset: give one photo, or --same-person for one head from several")
    if args.name and asset_name_for(args.name) != args.name:
        raise InvalidInputError(f"--name {args.name!r}: use letters, digits and _ (not starting with a digit), "
                                f"e.g. {asset_name_for(args.name)!r}")
    out = check_output_folder(args.out)
    if args.list_faces:
        return _list_faces(args, out, token)

    jobs = []  # (label, [images], name, face index)
    if args.same_person:
        jobs.append((" + ".join(map(str, args.images)), list(args.images), args.name, None))
    else:
        names_seen: set[str] = set()
        for index, image in enumerate(args.images):
            name = args.name or asset_name_for(image)
            if name in names_seen:
                name = f"{name}_{index}"
            names_seen.add(name)
            if args.face == "all":
                jobs.append((str(image), [image], name, "all"))
            else:
                jobs.append((str(image), [image], name, args.face))
    return _generate(args, out, token, jobs)


def _generate(args, out: Path, token: str | None, jobs: list) -> int:
    from ..errors import ToposError
    from ..generate import generate_head, generate_same_person, generate_variants, list_faces

    common = dict(server=args.server, engine=args.engine, seed=args.seed, texture_size=args.texture_size,
                  usdz=args.usdz, overwrite=args.overwrite, token=token, debug=args.debug, device=args.device,
                  focal_length_px=args.focal_length, topology=args.topology, texture=args.texture)
    results, failures = [], 0
    for index, (label, images, name, face) in enumerate(jobs):
        started = time.perf_counter()
        try:
            progress = _progress_bar(index, len(jobs), name)
            if args.same_person:
                written = [generate_same_person(images, out, name=name, on_progress=progress, **common)]
            elif face == "all":
                faces = list_faces(images[0], server=args.server, engine=args.engine, token=token, device=args.device)
                written = [generate_head(images[0], out, name=f"{name}_face{f.index}", face_index=f.index,
                                         on_progress=_progress_bar(index, len(jobs), f"{name}_face{f.index}"),
                                         **common) for f in faces.faces]
            elif args.variants > 1:
                written = generate_variants(images[0], out, variants=args.variants, name=name, face_index=face,
                                            on_progress=progress, **common)
            else:
                written = [generate_head(images[0], out, name=name, face_index=face, on_progress=progress, **common)]
            for usda in written:
                results.append({"image": label, "asset": str(usda), "ok": True, "face": _face_of(usda),
                                "seconds": round(time.perf_counter() - started, 3)})
        except (ToposError, OSError, ValueError) as exc:
            if args.verbose:
                raise
            failures += 1
            if sys.stderr.isatty():
                print(file=sys.stderr)
            print(f"topos generate: {label}: {exc}", file=sys.stderr)
            results.append({"image": label, "ok": False, "error": str(exc)})
    ok = len(results) - failures
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"topos generate: {ok} of {len(results)} written to {out}" + (f", {failures} failed" if failures else ""),
          file=sys.stderr)
    if args.json:
        print(json.dumps({"results": results, "written": ok, "failed": failures}, indent=1))
    else:
        for r in results:
            if r["ok"]:
                face = r.get("face")
                note = (f"  (face {face['index']} of {face['of']}: {face['chosen_by']})"
                        if face and face.get("of", 1) > 1 else "")
                print(r["asset"] + note)
    return 1 if failures else 0


def _face_of(usda: Path) -> dict | None:
    """The asset's provenance note on which face of the photo it is (None if it has none)."""
    from pxr import Usd

    from ..usd import layout
    from ..usd.asset_reader import root_asset_info

    stage = Usd.Stage.Open(str(usda), Usd.Stage.LoadNone)  # the root layer only: no geometry read
    provenance = json.loads(root_asset_info(stage).get(layout.PROVENANCE_KEY, "{}"))
    return provenance.get("extra", {}).get("face")


def _list_faces(args, out: Path, token: str | None) -> int:
    from ..errors import ToposError
    from ..generate import asset_name_for, list_faces, write_face_overlay

    listings, failures = [], 0
    for image in args.images:
        name = args.name or asset_name_for(image)
        try:
            faces = list_faces(image, server=args.server, engine=args.engine, token=token, device=args.device)
            overlay = write_face_overlay(image, faces, out / f"{name}_faces.png")
        except (ToposError, OSError, ValueError) as exc:
            if args.verbose:
                raise
            failures += 1
            print(f"topos generate: {image}: {exc}", file=sys.stderr)
            listings.append({"image": str(image), "ok": False, "error": str(exc)})
            continue
        listings.append({"image": str(image), "ok": True, "overlay": str(overlay), **faces.as_dict()})
        if not args.json:
            print(f"{image}: {len(faces.faces)} face(s), default {faces.chosen_index} "
                  f"({faces.as_dict()['choice_rule']}); overlay {overlay}")
            for face in faces.faces:
                x0, y0, x1, y1 = face.box
                mark = "*" if face.index == faces.chosen_index else " "
                print(f" {mark}{face.index}: box {x0:.0f},{y0:.0f} – {x1:.0f},{y1:.0f}  "
                      f"yaw {face.yaw_deg:+.0f}°  visible {face.visible_fraction:.0%}  score {face.choice_score:.3f}")
    if args.json:
        print(json.dumps({"images": listings}, indent=1))
    return 1 if failures else 0
