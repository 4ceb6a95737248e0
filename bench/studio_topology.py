"""Studio topologies: ``topology add`` time, per-head transfer time at 1K textures, ICT → ICT identity and the
round trip ICT head → studio topology → ``topos convert`` back.

    python bench/studio_topology.py [--heads 3] [--edge 0.8] [--repeats 5]

Studio meshes: the procedural all-quad head with UDIM UVs (``data/quad_heads.py``, on the ICT rest surface),
MediaPipe's canonical face (468 vertices, ../shared) and ICT's own mesh. Heads to carry: random ICT identities
with the 53 ARKit shapes (+ ICT's extras) and albedo/normal/roughness at 1024² per tile (tiles 1001, 1002).
Times are wall and CPU seconds (the machine may be shared: CPU time is what the work costs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
ICT_NEUTRAL = SHARED / "ict-facekit" / "FaceXModel" / "generic_neutral_mesh.obj.xz"
MEDIAPIPE_FACE = SHARED / "mediapipe" / "canonical_face_model.obj"


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def reference_head(head_model, topology, seed: int, size: int = 1024):
    from topos_sdk.head_result import HeadResult, TextureMap

    rng = np.random.default_rng(seed)
    identity = rng.normal(size=head_model.identity_basis.shape[0]) * 0.7
    points = head_model.neutral.numpy() + np.tensordot(identity, head_model.identity_basis.numpy(), axes=1)
    textures = {name: TextureMap(name, {tile: rng.integers(0, 255, (size, size, channels), dtype=np.uint8)
                                        for tile in (1001, 1002)}, space)
                for name, channels, space in (("albedo", 3, "sRGB"), ("normal", 3, "raw"), ("roughness", 1, "raw"))}
    return HeadResult(points.astype(np.float32), topology=topology, textures=textures,
                      blendshape_names=list(head_model.expression_names),
                      blendshape_deltas=head_model.expression_basis.numpy(), expression_weights={"jawOpen": 0.3})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=3, help="heads for the round trip")
    parser.add_argument("--edge", type=float, default=0.8, help="re-mesh edge (cm) of the quad head (quads ~ half)")
    parser.add_argument("--repeats", type=int, default=5, help="transfers timed per topology")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()

    from topos_server.assets.cache import AssetCache
    from topos_server.assets.head_model import HeadModel
    from topos_server.data.quad_heads import quad_head
    from topos_server.data.synthetic_heads import outer_surface
    from topos_server.pipelines.convert import HeadConverter
    from topos_server.pipelines.studio_topology import TopologyStore, register_studio_head

    reference = AssetCache.default().ict_topology()
    head_model = HeadModel.load()
    converter = HeadConverter.load()
    count, skin_triangles = outer_surface(reference)
    work = Path(tempfile.mkdtemp(prefix="studio_bench_"))
    home = work / "home"
    home.mkdir()
    for kind in ("ict", "facemesh"):
        (home / kind).symlink_to(AssetCache.default().root / kind, target_is_directory=True)
    store = TopologyStore(AssetCache(home))
    quad = quad_head(reference.rest_points[:count], skin_triangles, edge_cm=args.edge)
    meshes = {"quad_head": quad.write_obj(work / "quad_head.obj")}
    if MEDIAPIPE_FACE.is_file():
        meshes["mediapipe_face"] = MEDIAPIPE_FACE
    if ICT_NEUTRAL.is_file():
        meshes["ict"] = ICT_NEUTRAL
    out = {"machine": machine_description(), "topologies": {}}
    for name, path in meshes.items():
        registration, wall, cpu = timed(register_studio_head, path, name, converter=converter)
        _, save_wall, save_cpu = timed(store.save, registration, texture_size=1024)
        studio = store.load(name)
        transfers = []
        for repeat in range(args.repeats + 1):
            head = reference_head(head_model, reference, seed=repeat)
            moved, t_wall, t_cpu = timed(studio.transfer, head)
            if repeat:  # the first loads the texel map from disk
                transfers.append((t_wall, t_cpu, moved.provenance.timings_s["topology_transfer_geometry"]))
        transfers = np.array(transfers)
        row = {"vertices": registration.topology.num_points, "faces": registration.topology.num_faces,
               "add_s": {"wall": wall, "cpu": cpu}, "texel_map_1k_and_save_s": {"wall": save_wall, "cpu": save_cpu},
               "registration": registration.manifest["registration"],
               "transfer_1k_s": {"wall_median": float(np.median(transfers[:, 0])),
                                 "cpu_median": float(np.median(transfers[:, 1])),
                                 "geometry_wall_median": float(np.median(transfers[:, 2]))}}
        if name == "ict":
            head = reference_head(head_model, reference, seed=99)
            moved = studio.transfer(head)
            row["identity_max_cm"] = {"points": float(np.abs(moved.points - head.points).max()),
                                      "blendshapes": float(np.abs(moved.blendshape_deltas - head.blendshape_deltas).max())}
        out["topologies"][name] = row
        print(name, json.dumps(row), flush=True)

    # round trip: ICT head → quad studio topology → topos convert back to ICT
    studio = store.load("quad_head")
    triangles, _ = studio.topology.triangles()
    rows = []
    for seed in range(args.heads):
        head = reference_head(head_model, reference, seed=100 + seed)
        moved = studio.transfer(head)
        back = converter.convert_surface(moved.points.astype(np.float64), triangles, units="cm", seed=seed)
        direct = converter.convert_surface(head.points[:count].astype(np.float64), skin_triangles, units="cm", seed=seed)
        vertex_mm = 10 * np.linalg.norm(back.input_frame_points[:count] - head.points[:count], axis=1)
        direct_mm = 10 * np.linalg.norm(direct.input_frame_points[:count] - head.points[:count], axis=1)
        # the converted skin against the original head's surface (both directions, like convert's report)
        error = converter.surface_error(back.input_frame_points, head.points[:count].astype(np.float64), skin_triangles,
                                        1.0, np.random.default_rng(seed))
        rows.append({"surface_converted_to_original_mm": error["converted_to_input"]["mean_mm"],
                     "surface_original_to_converted_mm": error["input_to_converted"]["mean_mm"],
                     "vertex_mm": float(vertex_mm.mean()), "vertex_mm_convert_of_the_ict_mesh": float(direct_mm.mean())})
        print("round trip", json.dumps(rows[-1]), flush=True)
    out["round_trip"] = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    print("round trip mean", json.dumps(out["round_trip"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
