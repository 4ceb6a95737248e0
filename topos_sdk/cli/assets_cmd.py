"""``topos assets import | status | fetch``: fill and inspect the local model-file cache."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("assets", help="import, check or fetch the model files (ICT-FaceKit, MediaPipe)",
                                   description="Manage the asset cache ($TOPOS_HOME, default ~/.cache/topos).")
    parser.add_argument("--home", metavar="DIR", help="cache folder (default: $TOPOS_HOME or ~/.cache/topos)")
    sub = parser.add_subparsers(dest="assets_command", metavar="ACTION", required=True)

    imp = sub.add_parser("import", help="import from local folders (idempotent)")
    imp.add_argument("--ict", metavar="PATH", help="ICT-FaceKit checkout (or its FaceXModel folder)")
    imp.add_argument("--facemesh", metavar="PATH", help="folder with the MediaPipe FaceMesh files")
    imp.add_argument("--force", action="store_true", help="re-import even when the sources are unchanged")
    imp.set_defaults(handler=_import)

    status = sub.add_parser("status", help="what the cache holds; exit 1 if something is missing or corrupt")
    status.add_argument("--no-checksums", action="store_true", help="check sizes only (faster)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    fetch = sub.add_parser("fetch", help="download from the public sources (needs internet), then import")
    fetch.add_argument("--only", choices=["ict", "facemesh"], help="fetch one kind only")
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(handler=_fetch)


def _cache(args: argparse.Namespace):
    from topos_server.assets.cache import AssetCache

    return AssetCache(args.home)


def _print_outcomes(outcomes) -> None:
    for outcome in outcomes:
        print(outcome.summary())


def _import(args: argparse.Namespace) -> int:
    from topos_server.assets.importing import import_assets

    if not args.ict and not args.facemesh:
        print("topos assets import: error: give --ict PATH and/or --facemesh PATH", file=sys.stderr)
        return 2
    cache = _cache(args)
    print(f"asset cache: {cache.root}")
    _print_outcomes(import_assets(cache, ict=args.ict, facemesh=args.facemesh, force=args.force))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from topos_server.assets.importing import fetch_assets

    cache = _cache(args)
    _print_outcomes(fetch_assets(cache, ict=args.only in (None, "ict"), facemesh=args.only in (None, "facemesh"),
                                 force=args.force))
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    cache = _cache(args)
    report = cache.status(checksums=not args.no_checksums)
    if args.json:
        print(json.dumps({"root": str(cache.root), **{
            kind: {"ok": st.ok, "problems": st.problems,
                   "imported_at": (st.manifest or {}).get("imported_at"),
                   "source": (st.manifest or {}).get("source"),
                   "importer_version": (st.manifest or {}).get("importer_version")}
            for kind, st in report.items()}}, indent=1))
        return 0 if all(st.ok for st in report.values()) else 1
    print(f"asset cache: {cache.root}")
    for kind, st in report.items():
        state = "ok" if st.ok else ("corrupt" if st.present else "missing")
        print(f"{kind:9s} {state}")
        m = st.manifest or {}
        if m:
            print(f"  imported {m.get('imported_at')} from {m.get('source')} (importer v{m.get('importer_version')})")
            outputs = m.get("outputs", {})
            print(f"  {len(outputs)} files, {sum(r['size'] for r in outputs.values()) / 1e6:.1f} MB"
                  + ("" if args.no_checksums else ", sha256 checked"))
        if kind == "ict" and m:
            print(f"  {m.get('num_vertices')} vertices / {m.get('num_faces')} faces, {m.get('identity_modes')} identity "
                  f"modes, {len(m.get('expressions', []))} expression shapes, topology {m.get('topology_id')}")
            if st.ok:
                landmarks = sorted(cache.ict_topology().landmarks)
                print(f"  landmark sets: {', '.join(landmarks)}"
                      + ("" if "mediapipe" in landmarks else " (no mediapipe: import --facemesh too)"))
        if kind == "facemesh" and m:
            print(f"  MediaPipe {m.get('mediapipe_version')}: {', '.join(sorted(n for n in m.get('outputs', {}) if n != 'LICENSE'))}")
        for problem in st.problems:
            print(f"  problem: {problem}")
    if not all(st.ok for st in report.values()):
        print("run `topos assets import --ict PATH --facemesh PATH` to repair", file=sys.stderr)
        return 1
    return 0
