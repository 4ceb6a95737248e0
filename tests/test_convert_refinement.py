"""``topos convert`` on the scan: refinement after the VAE, face-only inputs, --landmarks, UV textures, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import convert_with_texture, rebaked_albedo_error, write_obj
from scipy.spatial import cKDTree
from topos_server.geometry.registration import uniform_laplacian
from topos_server.pipelines.convert import DEFAULT_WEIGHTS, REGIONS, HeadConverter, load_vae

from topos_sdk.cli import main

needs_trained = pytest.mark.skipif(not (DEFAULT_WEIGHTS / "config.json").is_file(),
                                   reason="needs the committed TOPOS-VAE checkpoint")
OFFSET_MM = np.array([120.0, -40.0, 300.0])  # the remeshed_head fixture's translation


@pytest.fixture(scope="module")
def converter(topology, weights):
    return HeadConverter(load_vae(weights), topology)


def face_only(remeshed_head, topology, group: str = "narrow_face"):
    """The remeshed head cut to ICT's face mask, as a face scanner or another face model delivers it."""
    points, triangles, rotation = remeshed_head
    head_frame = ((points - OFFSET_MM) @ rotation) / 10.0  # cm, ICT frame
    mask = np.zeros(topology.num_points, bool)
    mask[np.asarray(topology.vertex_groups[group])] = True
    _, nearest = cKDTree(topology.rest_points.astype(np.float64)).query(head_frame)
    keep = mask[nearest][triangles].all(1)
    used = np.unique(triangles[keep])
    remap = np.full(len(points), -1)
    remap[used] = np.arange(len(used))
    return points[used], remap[triangles[keep]]


@needs_trained
def test_face_only_crop_lands_on_the_crop_with_a_smooth_back(remeshed_head, topology, converter):
    points, triangles = face_only(remeshed_head, topology)
    refined = converter.convert_surface(points, triangles, units="mm")
    report = refined.report
    assert report["partial_input"] and report["alignment"] == "partial search"
    error = report["surface_error"]["input_to_converted"]
    assert error["mean_mm"] < 0.5 and error["p95_mm"] < 1.5, error  # sub-millimetre on the crop
    regions = report["surface_error"]["regions"]
    assert regions["face"]["constrained_fraction"] > 0.5
    assert regions["back_of_head"]["constrained_fraction"] == 0.0  # nothing there to constrain it
    # the unconstrained back follows the VAE's head: no seam where the constraint ends, no bumps
    prior = converter.convert_surface(points, triangles, units="mm", refine=False, report=False)
    count = converter.surface_vertex_count
    displacement = (refined.points - prior.points)[:count].astype(np.float64)  # cm, reference frame
    laplacian = uniform_laplacian(count, converter.surface_triangles)
    free = ~refined.constrained  # the input has no surface there (measured: 0.25 mm p99, 0.7 mm max; the
    roughness_mm = 10 * np.linalg.norm(laplacian @ displacement, axis=1)[free]  # head's own detail is 3.8 mm p99)
    assert np.percentile(roughness_mm, 99) < 0.5 and roughness_mm.max() < 1.5
    back = converter.regions == REGIONS.index("back_of_head")
    assert 10 * np.linalg.norm(displacement[back], axis=1).mean() < 6.0


@needs_trained
def test_refinement_puts_a_whole_head_on_its_input_and_no_refine_keeps_the_vae(remeshed_head, converter):
    points, triangles, _ = remeshed_head
    refined = converter.convert_surface(points, triangles, units="mm")
    plain = converter.convert_surface(points, triangles, units="mm", refine=False)
    refined_error = refined.report["surface_error"]["input_to_converted"]["mean_mm"]
    plain_error = plain.report["surface_error"]["input_to_converted"]["mean_mm"]
    assert refined_error < 0.3 and refined_error < 0.5 * plain_error
    assert refined.report["refinement"]["refined"] and not plain.report["refinement"]["refined"]
    assert refined.report["alignment"] == "whole-head search"


def landmark_points(remeshed_head, topology, names):
    """The ICT rest head's named landmarks carried into the remeshed head's frame (mm, its pose)."""
    _, _, rotation = remeshed_head
    landmark_set = topology.landmarks["multipie68"]
    rest = landmark_set.evaluate(topology.rest_points.astype(np.float64))  # (68, 3) cm
    rows = [landmark_set.names.index(n) for n in names]
    return 10.0 * rest[rows] @ rotation.T + OFFSET_MM


def test_landmarks_pin_a_deliberately_rotated_input(remeshed_head, topology, weights, tmp_path, capsys):
    """An input turned upside down and backwards: the landmarks give the pose, and the converted head's
    landmarks land on them."""
    points, triangles, _ = remeshed_head
    flip = np.diag([-1.0, -1.0, 1.0])  # 180° about z of the input frame
    centre = points.mean(0)
    turned = (points - centre) @ flip.T + centre
    names = ["jaw00", "jaw08", "jaw16", "nose_bridge3", "eye_right0", "eye_right3", "eye_left0", "eye_left3",
             "lip_outer00", "lip_outer06", "brow_right2", "brow_left2"]
    given = (landmark_points(remeshed_head, topology, names) - centre) @ flip.T + centre
    mesh_file = tmp_path / "turned.obj"
    write_obj(mesh_file, turned, triangles)
    landmarks_file = tmp_path / "turned.landmarks.json"
    landmarks_file.write_text(json.dumps({"landmarks": {n: p.tolist() for n, p in zip(names, given)}}))
    rc = main(["convert", str(mesh_file), "-o", str(tmp_path / "out"), "--weights", str(weights),
               "--landmarks", str(landmarks_file), "--texture-size", "0", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["alignment"] == "landmarks"
    from topos_sdk.usd import read_head_asset

    head = read_head_asset(tmp_path / "out" / "turned" / "turned.usda")
    landmark_set = topology.landmarks["multipie68"]
    rows = [landmark_set.names.index(n) for n in names]
    converted = landmark_set.evaluate(head.points.astype(np.float64))[rows]  # (K, 3) cm, reference pose
    # compare shapes up to the similarity convert removed: distances between landmark pairs, mm
    pairs_given = np.linalg.norm(given[:, None] - given[None], axis=-1)
    pairs_converted = 10.0 * np.linalg.norm(converted[:, None] - converted[None], axis=-1)
    assert np.abs(pairs_given - pairs_converted).mean() < 2.0
    # and the pose was found: without landmarks the same file still converts (search), with them it's exact
    assert report["surface_error"]["input_to_converted"]["mean_mm"] < 0.5


@pytest.mark.parametrize("content, message", [
    ({"landmarks": {"nose_tip": [0, 0, 0], "jaw00": [1, 0, 0], "jaw08": [0, 1, 0], "jaw16": [0, 0, 1]}}, "unknown landmark"),
    ([[0.0, 0.0, 0.0]] * 10, "68 Multi-PIE points"),
    ({"jaw00": [0, 0, 0], "jaw08": [1, 0, 0]}, "at least 4"),
    ({"jaw00": [0, 0, 0], "jaw08": [1, 0, 0], "jaw16": [2, 0, 0], "nose_bridge0": [3, 0, 0]}, "one line"),
    ({"jaw00": [0, 0, "a"], "jaw08": [1, 0, 0], "jaw16": [2, 0, 0], "nose_bridge0": [3, 0, 0]}, "three numbers"),
])
def test_bad_landmarks_file_is_one_clear_error(remeshed_head, weights, tmp_path, capsys, content, message):
    points, triangles, _ = remeshed_head
    mesh_file = tmp_path / "head.obj"
    write_obj(mesh_file, points, triangles)
    landmarks_file = tmp_path / "bad.json"
    landmarks_file.write_text(json.dumps(content))
    rc = main(["convert", str(mesh_file), "-o", str(tmp_path / "out"), "--weights", str(weights),
               "--landmarks", str(landmarks_file)])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "bad.json" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name, text, message", [
    ("empty.obj", "# nothing here\n", "no vertices"),
    ("nan.obj", "v nan 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nv 1 1 1\nf 1 2 3\nf 1 3 4\nf 2 3 4\nf 1 2 4\nf 2 4 5\n",
     "not all finite"),
    ("cloud.obj", "".join(f"v {i} {i * i % 7} {i % 3}\n" for i in range(50)), "too few"),
    ("two.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\n", "too few"),
])
def test_bad_meshes_are_one_clear_error_each(tmp_path, weights, capsys, name, text, message):
    mesh_file = tmp_path / name
    mesh_file.write_text(text)
    rc = main(["convert", str(mesh_file), "-o", str(tmp_path / "out"), "--weights", str(weights)])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and name in err[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_textured_obj_rebakes_into_the_reference_uvs(remeshed_head, topology, weights, tmp_path):
    """An OBJ with its own UVs (a cylindrical unwrap) and a map_Kd image: the converted asset's albedo shows the
    image's colour at every reference texel's surface point."""
    import cv2


    points, triangles, rotation = remeshed_head
    head_frame = ((points - OFFSET_MM) @ rotation) / 10.0  # cm

    def uv_of(p):  # cylindrical unwrap around the head's vertical axis
        return np.stack([np.arctan2(p[:, 0], p[:, 2]) / (2 * np.pi) + 0.5, (p[:, 1] + 20.0) / 40.0], 1)

    def colour_of_uv(uv):  # sRGB in [0.1, 0.9], smooth
        return 0.5 + 0.4 * np.stack([np.sin(2 * np.pi * uv[:, 0]), np.cos(3.0 * uv[:, 1]), np.sin(5.0 * uv[:, 1])], 1)

    size = 512
    grid = (np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2) + 0.5) / size
    image = colour_of_uv(np.c_[grid[:, 0], 1.0 - grid[:, 1]]).reshape(size, size, 3)
    cv2.imwrite(str(tmp_path / "skin colour.png"), (255 * image[:, :, ::-1]).round().astype(np.uint8))
    (tmp_path / "head.mtl").write_text("newmtl Skin\nKd 1 1 1\nmap_Kd -s 1 1 1 skin colour.png\n")
    corner_uvs = uv_of(head_frame)[triangles]  # (T, 3, 2)
    # the unwrap's seam at the back: a triangle crossing it takes u + 1 on its small-u corners (the image repeats)
    crossing = np.ptp(corner_uvs[:, :, 0], axis=1) > 0.5
    corner_uvs[:, :, 0] += crossing[:, None] & (corner_uvs[:, :, 0] < 0.5)
    lines = ["mtllib head.mtl"] + [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in points]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in corner_uvs.reshape(-1, 2)] + ["usemtl Skin"]
    lines += [f"f {a}/{3 * i + 1} {b}/{3 * i + 2} {c}/{3 * i + 3}" for i, (a, b, c) in enumerate(triangles + 1)]
    mesh_file = tmp_path / "textured.obj"
    mesh_file.write_text("\n".join(lines) + "\n")
    asset, report = convert_with_texture(mesh_file, tmp_path / "out", weights)
    assert report["colour"]["source"].startswith("UV texture") and report["colour"]["observed_skin_fraction"] > 0.8
    error = rebaked_albedo_error(asset, topology, lambda p: colour_of_uv(uv_of(p)))
    assert np.median(error) < 0.03 and np.percentile(error, 90) < 0.1


def test_usd_input_with_a_uv_texture_is_read(remeshed_head, tmp_path):
    """USD input: the UsdUVTexture on the bound UsdPreviewSurface's diffuseColor and primvars:st are read."""
    import cv2
    from pxr import Sdf, Usd, UsdGeom, UsdShade, Vt
    from topos_server.geometry.mesh_input import read_mesh

    points, triangles, _ = remeshed_head
    cv2.imwrite(str(tmp_path / "red.png"), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    stage = Usd.Stage.CreateNew(str(tmp_path / "head.usda"))
    mesh = UsdGeom.Mesh.Define(stage, "/Head/skin")
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points.astype(np.float32)))
    mesh.CreateFaceVertexCountsAttr([3] * len(triangles))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(triangles.ravel().astype(np.int32)))
    st = UsdGeom.PrimvarsAPI(mesh.GetPrim()).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                           UsdGeom.Tokens.vertex)
    st.Set(Vt.Vec2fArray.FromNumpy(np.random.default_rng(0).random((len(points), 2)).astype(np.float32)))
    material = UsdShade.Material.Define(stage, "/Head/Skin")
    surface = UsdShade.Shader.Define(stage, "/Head/Skin/Surface")
    surface.CreateIdAttr("UsdPreviewSurface")
    texture = UsdShade.Shader.Define(stage, "/Head/Skin/Albedo")
    texture.CreateIdAttr("UsdUVTexture")
    texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set("./red.png")
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
        texture.ConnectableAPI(), "rgb")
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()
    read = read_mesh(tmp_path / "head.usda")
    assert read.textures is not None and read.textures.names == ["red.png"]
    assert read.textures.corner_uvs.shape == (len(triangles), 3, 2)
    np.testing.assert_allclose(read.textures.images[0][0, 0], [1.0, 0.0, 0.0])
