"""``topos convert``: mesh readers, conversion of a remeshed ICT head to a valid asset, topology invariance."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from conftest import convert_with_texture, rebaked_albedo_error, write_obj
from topos_server.data.synthetic_heads import outer_surface
from topos_server.geometry.mesh_input import largest_component, read_mesh
from topos_server.pipelines.convert import DEFAULT_WEIGHTS, HeadConverter, load_vae

from topos_sdk.cli import main
from topos_sdk.errors import InvalidInputError

HAVE_TRAINED = (DEFAULT_WEIGHTS / "config.json").is_file()


def test_convert_cli_writes_a_valid_asset_for_a_remeshed_ict_head(remeshed_head, topology, weights, tmp_path, capsys):
    from topos_sdk.usd import read_head_asset, validate_asset, verify_topology

    points, triangles, _ = remeshed_head
    mesh_file = tmp_path / "scan head.obj"
    write_obj(mesh_file, points, triangles)
    rc = main(["convert", str(mesh_file), "-o", str(tmp_path / "out"), "--weights", str(weights), "--json"])
    assert rc == 0
    asset = tmp_path / "out" / "scan_head" / "scan_head.usda"
    assert asset.is_file()
    assert validate_asset(asset) == []
    assert verify_topology(asset, topology) == []
    report = json.loads((tmp_path / "out" / "scan_head.conversion.json").read_text())
    assert report == json.loads(capsys.readouterr().out)
    assert report["units"] == "mm" and report["valid"]
    # the input *is* the ICT rest head: the converted skin lies on it, in the reference frame at metric size
    assert report["surface_error"]["converted_to_input"]["mean_mm"] < 1.5
    assert report["surface_error"]["input_to_converted"]["p95_mm"] < 4.0
    head = read_head_asset(asset)
    count, _ = outer_surface(topology)
    offset = np.linalg.norm(head.points[:count] - topology.rest_points[:count], axis=1)
    assert np.median(offset) < 0.3  # cm; the pose, the mm → cm units and the shape come back


def test_convert_bad_input_is_one_error_and_writes_nothing(tmp_path, weights, capsys):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1 2\n")
    rc = main(["convert", str(bad), "-o", str(tmp_path / "out"), "--weights", str(weights)])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.ply" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(InvalidInputError, match="unsupported mesh format"):
        read_mesh(tmp_path / "x.fbx" if (tmp_path / "x.fbx").write_text("x") else None)


def _write_ply(path, points, triangles, binary: bool):
    header = (f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              f"element face {len(triangles)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    if binary:
        body = np.asarray(points, "<f4").tobytes() + b"".join(struct.pack("<B3i", 3, *t) for t in triangles)
    else:
        body = ("\n".join(" ".join(f"{c:.6f}" for c in p) for p in points) + "\n"
                + "\n".join("3 " + " ".join(map(str, t)) for t in triangles) + "\n").encode()
    path.write_bytes(header + body)


def _write_stl(path, points, triangles, binary: bool):
    corners = np.asarray(points, np.float32)[triangles]
    if binary:
        records = b"".join(struct.pack("<12fH", 0, 0, 0, *c.ravel(), 0) for c in corners)
        path.write_bytes(b"\0" * 80 + struct.pack("<I", len(corners)) + records)
    else:
        facets = "".join("facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {x} {y} {z}\n" for x, y, z in c)
                         + "endloop\nendfacet\n" for c in corners)
        path.write_text(f"solid head\n{facets}endsolid head\n")


def _write_usd(path, points, triangles):
    from pxr import Usd, UsdGeom, Vt

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    root = UsdGeom.Xform.Define(stage, "/Head")
    mesh = UsdGeom.Mesh.Define(stage, "/Head/skin")
    mesh.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(np.asarray(points, np.float32)))
    mesh.GetFaceVertexCountsAttr().Set(Vt.IntArray([3] * len(triangles)))
    mesh.GetFaceVertexIndicesAttr().Set(Vt.IntArray(np.asarray(triangles).ravel().tolist()))
    root.AddTranslateOp().Set((1.0, 2.0, 3.0))
    stage.GetRootLayer().Save()


@pytest.mark.parametrize("kind", ["ply_ascii", "ply_binary", "stl_ascii", "stl_binary", "usda"])
def test_mesh_readers_give_back_the_surface(kind, remeshed_head, tmp_path):
    points, triangles, _ = remeshed_head
    points = np.round(points[:400].astype(np.float32), 3)
    triangles = triangles[(triangles < 400).all(1)][:300]
    suffix = {"ply_ascii": ".ply", "ply_binary": ".ply", "stl_ascii": ".stl", "stl_binary": ".stl", "usda": ".usda"}[kind]
    path = tmp_path / f"mesh{suffix}"
    if kind.startswith("ply"):
        _write_ply(path, points, triangles, binary=kind.endswith("binary"))
    elif kind.startswith("stl"):
        _write_stl(path, points, triangles, binary=kind.endswith("binary"))
    else:
        _write_usd(path, points, triangles)
    mesh = read_mesh(path)
    expected = points[triangles].astype(np.float64) + (np.array([1.0, 2.0, 3.0]) if kind == "usda" else 0.0)
    # STL welds corners into new vertex ids: compare triangles by their corner positions
    np.testing.assert_allclose(mesh.points[mesh.triangles], expected, atol=1e-4)


def test_usd_display_colour_per_vertex_is_read(remeshed_head, tmp_path):
    from pxr import Sdf, Usd, UsdGeom, Vt

    points, triangles, _ = remeshed_head
    path = tmp_path / "painted.usda"
    _write_usd(path, points, triangles)
    colours = np.random.default_rng(0).random((len(points), 3)).astype(np.float32)
    stage = Usd.Stage.Open(str(path))
    primvar = UsdGeom.PrimvarsAPI(stage.GetPrimAtPath("/Head/skin")).CreatePrimvar(
        "displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex)
    primvar.Set(Vt.Vec3fArray.FromNumpy(colours))
    stage.GetRootLayer().Save()
    np.testing.assert_allclose(read_mesh(path).vertex_colors, colours, atol=1e-6)
    primvar.SetInterpolation(UsdGeom.Tokens.faceVarying)  # not per vertex: ignored, points only
    stage.GetRootLayer().Save()
    assert read_mesh(path).vertex_colors is None


def test_largest_component_drops_separate_parts(remeshed_head):
    from topos_server.geometry.mesh_input import InputMesh

    points, triangles, _ = remeshed_head
    extra = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float) + 1000.0
    mesh = InputMesh(np.r_[points, extra], np.r_[triangles, [[len(points), len(points) + 1, len(points) + 2]]])
    kept = largest_component(mesh)
    assert len(kept.points) == len(points) and len(kept.triangles) == len(triangles)


@pytest.mark.skipif(not HAVE_TRAINED, reason="needs the committed TOPOS-VAE checkpoint")
def test_same_head_in_two_topologies_decodes_alike(topology):
    """Topology invariance: the same head as two meshes converts to points within 1 mm of each other on
    average (the issue's goal; 0.45 mm here with the committed checkpoint, 0.69 mm over 20 held-out
    marching-cubes vs isotropic pairs in BENCHMARKS.md). The VAE's own property: the refinement (on by
    default) then puts each result on its own input, so two coarse meshes of one head differ by their
    chordal error as well."""
    from dataclasses import replace

    from topos_server.assets.head_model import HeadModel
    from topos_server.data.synthetic_heads import SyntheticHeads

    converter = HeadConverter(load_vae(DEFAULT_WEIGHTS), topology)
    heads = SyntheticHeads(HeadModel.load(), topology, seed=77)
    heads.options = replace(heads.options, noise_cm=(0.0, 0.0), max_holes=0)
    rng = np.random.default_rng(8)
    head = heads.head(rng)
    results = []
    for method in ("decimation", "isotropic"):
        mesh_points, mesh_triangles = heads.retopologized_surface(head, method, rng)
        results.append(converter.convert_surface(mesh_points, mesh_triangles, units="cm", report=False,
                                                 refine=False).input_frame_points)
    distance_mm = 10.0 * np.linalg.norm(results[0] - results[1], axis=1)
    assert distance_mm.mean() < 1.0


def test_convert_rebakes_vertex_colours_into_the_reference_uvs(remeshed_head, topology, weights, tmp_path):
    """A remeshed ICT head whose vertex colours are a smooth function of position: the albedo texture of
    the converted asset shows that function at the reference surface point of every texel."""
    from topos_sdk.usd import read_head_asset

    points, triangles, rotation = remeshed_head
    head_frame = ((points - np.array([120.0, -40.0, 300.0])) @ rotation) / 10.0  # back to the ICT frame, cm

    def colour_of(p):  # (K, 3) cm → sRGB in [0.1, 0.9]
        return 0.5 + 0.4 * np.stack([np.sin(p[:, 0] / 4.0), np.cos(p[:, 1] / 5.0), np.sin(p[:, 2] / 3.0 + 1.0)], 1)

    colours = colour_of(head_frame)
    lines = [f"v {x:.5f} {y:.5f} {z:.5f} {r:.5f} {g:.5f} {b:.5f}" for (x, y, z), (r, g, b) in zip(points, colours)]
    mesh_file = tmp_path / "painted.obj"
    mesh_file.write_text("\n".join(lines + [f"f {a} {b} {c}" for a, b, c in triangles + 1]) + "\n")
    asset, report = convert_with_texture(mesh_file, tmp_path / "out", weights)
    assert report["colour"]["observed_skin_fraction"] > 0.8
    error = rebaked_albedo_error(asset, topology, colour_of)
    assert np.median(error) < 0.03 and np.percentile(error, 90) < 0.1
    # an input without colours stays points-only
    plain = tmp_path / "plain.obj"
    write_obj(plain, points, triangles)
    assert main(["convert", str(plain), "-o", str(tmp_path / "out2"), "--weights", str(weights)]) == 0
    assert read_head_asset(tmp_path / "out2" / "plain" / "plain.usda").textures == {}
