"""``topos topology add|list|show|remove``: studio topologies in the asset cache.

``add`` registers a studio's neutral head (OBJ: quads, n-gons, UDIM UVs, materials kept as in the file) onto
the reference head once; afterwards ``topos generate --topology NAME`` and ``topos convert --topology NAME``
write heads in that topology.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("topology", help="register and manage studio topologies (your own head mesh)",
                       description="Studio topologies: heads come out with your mesh's vertices, faces and UVs.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="register a studio head mesh (OBJ) as topology NAME",
                             description="Register the neutral head HEAD.obj onto the reference head (pose, "
                                         "TOPOS-VAE and refinement, as `topos convert`) and store the dense map "
                                         "and the texture lookup in the asset cache.")
    add.add_argument("name", metavar="NAME", help="topology name (a letter, then letters, digits, _ or -)")
    add.add_argument("mesh", type=Path, metavar="HEAD.obj", help="the studio's neutral head (.obj, .obj.xz, .obj.gz)")
    add.add_argument("--landmarks", type=Path, metavar="FILE",
                     help="JSON multipie68 landmarks in the mesh's coordinates (as `topos convert --landmarks`)")
    add.add_argument("--symmetry", choices=("auto", "none"), default="auto",
                     help="auto: store the left/right vertex pairs when the mesh is symmetric (default); none: skip")
    add.add_argument("--units", default="auto", help="mesh units: auto, mm, cm, m, in (default auto)")
    add.add_argument("--texture-size", type=int, default=1024, choices=(0, 512, 1024, 2048),
                     help="build the texture lookup for this tile size now (others are built on first use; 0: none)")
    add.add_argument("--weights", type=Path, metavar="DIR", help="TOPOS-VAE model folder (default: the bundled one)")
    add.add_argument("--overwrite", action="store_true", help="replace a topology of the same name")
    add.add_argument("--json", action="store_true", help="print the manifest as JSON")
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", help="the registered studio topologies")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one topology's manifest (sizes, UDIM tiles, registration residual)")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=run_show)

    remove = actions.add_parser("remove", help="delete a studio topology from the asset cache")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=run_remove)


def run_add(args) -> int:
    from topos_server.pipelines.convert import HeadConverter
    from topos_server.pipelines.studio_topology import TopologyStore, register_studio_head

    store = TopologyStore()
    if args.name in store.names() and not args.overwrite:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"studio topology {args.name!r} exists (remove it first, or --overwrite)")
    registration = register_studio_head(args.mesh, args.name, converter=HeadConverter.load(args.weights),
                                        landmarks_file=args.landmarks, symmetry=args.symmetry, units=args.units)
    folder = store.save(registration, overwrite=args.overwrite, texture_size=args.texture_size)
    manifest = store.manifest(args.name)
    residual = manifest["registration"]["residual_mm"]
    print(f"registered {args.name}: {manifest['vertices']} vertices, {manifest['faces']} faces; residual median "
          f"{residual['median']:.2f} mm, p95 {residual['p95']:.2f} mm; {manifest['add_seconds']:.1f} s "
          f"(+{sum(manifest.get('texel_map_seconds', {}).values()):.1f} s texture lookup) → {folder}", file=sys.stderr)
    for note in manifest["notes"]:
        print(f"  note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(manifest, indent=2))
    return 0


def run_list(args) -> int:
    from topos_server.pipelines.studio_topology import TopologyStore

    store = TopologyStore()
    manifests = [store.manifest(name) for name in store.names()]
    if args.json:
        print(json.dumps({"topologies": manifests}, indent=1))
    elif not manifests:
        print(f"no studio topologies in {store.root} (register one with `topos topology add NAME HEAD.obj`)",
              file=sys.stderr)
    for m in manifests if not args.json else []:
        tiles = ",".join(map(str, m["udim_tiles"])) or "no UVs"
        print(f"{m['name']}\t{m['vertices']} vertices\t{m['faces']} faces\tUDIM {tiles}\t{m['topology_id']}")
    return 0


def run_show(args) -> int:
    from topos_server.pipelines.studio_topology import TopologyStore

    manifest = TopologyStore().manifest(args.name)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    residual = manifest["registration"]["residual_mm"]
    lines = [
        f"name:         {manifest['name']}",
        f"topology id:  {manifest['topology_id']} (on reference {manifest['reference_name']} "
        f"{manifest['reference_topology_id']})",
        f"source:       {manifest['source']['file']} ({manifest['source']['units']}), sha256 "
        f"{manifest['source']['sha256'][:16]}…",
        f"size:         {manifest['vertices']} vertices, {manifest['faces']} faces "
        f"({', '.join(f'{n} with {k} sides' for k, n in manifest['face_sizes'].items())})",
        f"UVs:          {'UDIM ' + ', '.join(map(str, manifest['udim_tiles'])) if manifest['has_uvs'] else 'none'}",
        f"materials:    {', '.join(manifest['materials'])}",
        f"symmetry:     {_symmetry_text(manifest['symmetry'])}",
        f"registration: {manifest['registration']['alignment']}; residual median {residual['median']:.2f} mm, "
        f"p95 {residual['p95']:.2f} mm, max {residual['max']:.2f} mm",
        f"added in:     {manifest['add_seconds']:.1f} s",
    ] + [f"note:         {note}" for note in manifest["notes"]]
    print("\n".join(lines))
    return 0


def _symmetry_text(symmetry: dict | None) -> str:
    return "none stored" if not symmetry else f"{100 * symmetry['pairs_fraction']:.0f} % of the vertices paired"


def run_remove(args) -> int:
    from topos_server.pipelines.studio_topology import TopologyStore

    folder = TopologyStore().remove(args.name)
    print(f"removed {args.name} ({folder})", file=sys.stderr)
    return 0
