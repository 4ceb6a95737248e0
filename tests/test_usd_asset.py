"""USD head assets: structure, round trip, validation, topology verification, atomic writes, ICT."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pxr = pytest.importorskip("pxr")
from conftest import make_quad_grid  # noqa: E402
from pxr import Sdf, Usd, UsdGeom, UsdShade, UsdSkel, UsdValidation  # noqa: E402

from topos_sdk import AssetError, Camera, HeadResult, Provenance, ReferenceTopology, TextureMap, TopologyMismatchError  # noqa: E402
from topos_sdk.usd import (  # noqa: E402
    png_io,  # noqa: E402
    read_head_asset,
    validate_asset,
    verify_topology,
    write_head_asset,
)
from topos_sdk.usd.camera import projection_through_usd_camera  # noqa: E402
from topos_sdk.usd.materials import material_tiles  # noqa: E402
from topos_sdk.usd.validation import sdr_knows_materialx  # noqa: E402

ICT_NEUTRAL = Path(__file__).resolve().parents[1].parent / "shared/ict-facekit/FaceXModel/generic_neutral_mesh.obj.xz"


def udim_grid() -> ReferenceTopology:
    """The quad grid with its right half moved to UDIM tile 1002 (like ICT's back of head)."""
    grid = make_quad_grid()
    half = grid.num_faces // 2
    right_uvs = np.unique(grid.uv_indices[grid.face_offsets[half]:])
    uv = grid.uv_values.copy()
    uv[right_uvs, 0] += 1.0
    return ReferenceTopology(name="udim_grid", rest_points=grid.rest_points, face_vertex_counts=grid.face_vertex_counts,
                             face_vertex_indices=grid.face_vertex_indices, uv_values=uv, uv_indices=grid.uv_indices,
                             submeshes=grid.submeshes, materials=grid.materials)


def look_at_camera(points: np.ndarray, size=(320, 240)) -> Camera:
    """A camera 6 units in front of the mesh (+Z), slightly off-axis, looking at it."""
    eye = points.mean(0) + np.array([0.7, 0.4, 6.0])
    forward = points.mean(0) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    to_world = np.eye(4)
    to_world[:3, 0], to_world[:3, 1], to_world[:3, 2], to_world[:3, 3] = right, up, -forward, eye
    return Camera(focal_length_px=410.5, principal_point_px=(size[0] / 2 + 3.25, size[1] / 2 - 1.5), image_size=size,
                  world_to_camera=np.linalg.inv(to_world))


def make_head(topology: ReferenceTopology, seed: int = 0, shapes: bool = True, textures: bool = True,
              camera: bool = True) -> HeadResult:
    rng = np.random.default_rng(seed)
    n = topology.num_points
    points = topology.rest_points + rng.normal(scale=0.05, size=(n, 3)).astype(np.float32)
    kwargs = {}
    if shapes:
        names = ["jawOpen", "eyeBlink_L", "never moves"]
        deltas = np.zeros((3, n, 3), np.float32)
        deltas[0, : n // 2] = rng.normal(scale=0.1, size=(n // 2, 3))
        deltas[1, [3, 7, 11]] = rng.normal(scale=0.2, size=(3, 3))
        kwargs.update(blendshape_names=names, blendshape_deltas=deltas)
    if textures:
        tiles = sorted(set().union(*material_tiles(topology).values()))
        kwargs["textures"] = {
            "albedo": TextureMap("albedo", {t: rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for t in tiles}, "sRGB"),
            "normal": TextureMap("normal", {t: rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for t in tiles}, "raw"),
            "roughness": TextureMap("roughness", {t: rng.integers(0, 65536, (24, 32, 1), dtype=np.uint16) for t in tiles}, "raw"),
        }
    return HeadResult(points=points, topology=topology,
                      expression_weights={"jawOpen": 0.3141592653589793, "eyeBlink_L": 1e-7, "smile": 0.5},
                      camera=look_at_camera(points) if camera else None,
                      provenance=Provenance(engine="test", seed=seed, source_image_sha256="ab" * 32,
                                            timings_s={"fit": 0.125}, versions={"topos": "0.1.0"}, extra={"note": "x"}),
                      **kwargs)


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- structure ---------------------------------------------------------------------------------

def test_asset_folder_follows_the_usd_conventions(tmp_path, quad_topology):
    head = make_head(quad_topology)
    root_file = write_head_asset(head, tmp_path, name="bob", thumbnail=False)
    folder = tmp_path / "bob"
    assert root_file == folder / "bob.usda"
    assert sorted(p.name for p in folder.iterdir()) == ["bob.usda", "geo.usdc", "mtl.usda", "payload.usda", "textures"]
    assert (folder / "geo.usdc").read_bytes()[:8] == b"PXR-USDC"  # binary crate
    assert (folder / "mtl.usda").read_text().startswith("#usda")

    root_layer = Sdf.Layer.FindOrOpen(str(root_file))
    assert root_layer.defaultPrim == "bob"
    stage = Usd.Stage.Open(str(root_file))
    prim = stage.GetDefaultPrim()
    assert Usd.ModelAPI(prim).GetKind() == "component"
    assert UsdGeom.GetStageUpAxis(stage) == "Y" and UsdGeom.GetStageMetersPerUnit(stage) == 0.01
    info = Usd.ModelAPI(prim).GetAssetInfo()
    assert info["name"] == "bob" and info["topos"]["topologyId"] == quad_topology.topology_id
    assert prim.GetAssetInfoByKey("topos:topologyId") == quad_topology.topology_id
    assert info["identifier"].path == "./bob.usda" and info["version"]
    payloads = root_layer.GetPrimAtPath("/bob").payloadList.GetAddedOrExplicitItems()
    assert [p.assetPath for p in payloads] == ["./payload.usda"]
    assert list(Sdf.Layer.FindOrOpen(str(folder / "payload.usda")).subLayerPaths) == ["./mtl.usda", "./geo.usdc"]

    # one mesh per mesh part, connectivity and IDs as the topology
    parts = quad_topology.mesh_parts()
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert [m.GetName() for m in meshes] == [p.name for p in parts] == ["skin"]
    mesh = UsdGeom.Mesh(meshes[0])
    assert mesh.GetOrientationAttr().Get() == "rightHanded"
    assert mesh.GetSubdivisionSchemeAttr().HasAuthoredValue()
    np.testing.assert_array_equal(np.asarray(mesh.GetPointsAttr().Get()), head.points)
    np.testing.assert_array_equal(np.asarray(mesh.GetFaceVertexCountsAttr().Get()), quad_topology.face_vertex_counts)
    assert (np.asarray(mesh.GetFaceVertexCountsAttr().Get()) == 4).all()  # quads stay quads
    np.testing.assert_array_equal(np.asarray(mesh.GetExtentAttr().Get()), [head.points.min(0), head.points.max(0)])
    assert not mesh.GetNormalsAttr().HasAuthoredValue()
    assert meshes[0].GetCustomDataByKey("topos:topologyId") == quad_topology.topology_id
    primvars = UsdGeom.PrimvarsAPI(mesh)
    st = primvars.GetPrimvar("st")
    assert st.GetTypeName() == Sdf.ValueTypeNames.TexCoord2fArray
    assert st.GetInterpolation() == "faceVarying" and st.IsIndexed()
    assert st.GetAttr().GetCustomDataByKey("Maya:name") == "map1"
    np.testing.assert_array_equal(np.asarray(st.ComputeFlattened()),
                                  quad_topology.uv_values[quad_topology.uv_indices])
    vertex_id = primvars.GetPrimvar("topos:vertexId")
    assert vertex_id.GetInterpolation() == "vertex" and vertex_id.GetTypeName() == Sdf.ValueTypeNames.IntArray
    # the vertex order is the ID contract (Maya drops int primvars): id == position in the points array
    np.testing.assert_array_equal(np.asarray(vertex_id.Get()), np.arange(quad_topology.num_points))

    subsets = {s.GetPrim().GetName(): s for s in UsdGeom.Subset.GetAllGeomSubsets(mesh)}
    assert UsdGeom.Subset.GetFamilyType(mesh, "materialBind") == "partition"
    assert UsdGeom.Subset.GetFamilyType(mesh, "part") == "partition"
    half = quad_topology.num_faces // 2
    np.testing.assert_array_equal(np.asarray(subsets["M_Left"].GetIndicesAttr().Get()), np.arange(half))
    np.testing.assert_array_equal(np.asarray(subsets["part_right"].GetIndicesAttr().Get()),
                                  np.arange(half, quad_topology.num_faces))
    assert subsets["M_Left"].GetFamilyNameAttr().Get() == "materialBind"


def test_materials_preview_surface_materialx_and_bindings(tmp_path, quad_topology):
    root_file = write_head_asset(make_head(quad_topology), tmp_path, thumbnail=False)
    stage = Usd.Stage.Open(str(root_file))
    material = UsdShade.Material(stage.GetPrimAtPath("/head/Looks/M_Left"))
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetShaderId() == "UsdPreviewSurface"
    mtlx = material.ComputeSurfaceSource("mtlx")[0]
    assert mtlx.GetShaderId() == "ND_standard_surface_surfaceshader"

    def texture_of(input_name):
        source = surface.GetInput(input_name).GetConnectedSources()[0][0].source
        return UsdShade.Shader(source.GetPrim())

    albedo, normal, rough = texture_of("diffuseColor"), texture_of("normal"), texture_of("roughness")
    assert albedo.GetShaderId() == normal.GetShaderId() == rough.GetShaderId() == "UsdUVTexture"
    assert albedo.GetInput("sourceColorSpace").Get() == "sRGB"
    assert normal.GetInput("sourceColorSpace").Get() == "raw" and rough.GetInput("sourceColorSpace").Get() == "raw"
    assert tuple(normal.GetInput("scale").Get()) == (2, 2, 2, 1) and tuple(normal.GetInput("bias").Get()) == (-1, -1, -1, 0)
    assert albedo.GetInput("file").Get().path == "./textures/albedo.png"  # relative
    reader = UsdShade.Shader(albedo.GetInput("st").GetConnectedSources()[0][0].source.GetPrim())
    assert reader.GetShaderId() == "UsdPrimvarReader_float2"
    assert reader.GetInput("varname").Get() == "st" and reader.GetInput("varname").GetTypeName() == Sdf.ValueTypeNames.String
    base_color = mtlx.GetInput("base_color").GetConnectedSources()[0][0].source
    assert UsdShade.Shader(base_color.GetPrim()).GetShaderId() == "ND_image_color3"

    mesh = stage.GetPrimAtPath("/head/Geom/skin")
    assert mesh.HasAPI(UsdShade.MaterialBindingAPI)
    for subset, material_name in (("M_Left", "M_Left"), ("M_Right", "M_Right")):
        prim = mesh.GetChild(subset)
        assert prim.HasAPI(UsdShade.MaterialBindingAPI)
        bound = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()[0]
        assert bound.GetPath() == f"/head/Looks/{material_name}"


def test_eye_and_mouth_materials_get_constant_looks_not_the_skin_textures(tmp_path):
    grid = make_quad_grid()
    half = grid.num_faces // 2
    from topos_sdk import MaterialRange
    topo = ReferenceTopology(name="eyes", rest_points=grid.rest_points, face_vertex_counts=grid.face_vertex_counts,
                             face_vertex_indices=grid.face_vertex_indices, uv_values=grid.uv_values,
                             uv_indices=grid.uv_indices, submeshes=grid.submeshes,
                             materials=[MaterialRange("M_Face", 0, half), MaterialRange("M_IrisLeft", half, grid.num_faces)])
    root_file = write_head_asset(make_head(topo), tmp_path, thumbnail=False)
    stage = Usd.Stage.Open(str(root_file))
    face = UsdShade.Material(stage.GetPrimAtPath("/head/Looks/M_Face")).ComputeSurfaceSource()[0]
    iris = UsdShade.Material(stage.GetPrimAtPath("/head/Looks/M_IrisLeft")).ComputeSurfaceSource()[0]
    assert face.GetInput("diffuseColor").HasConnectedSource()
    assert not iris.GetInput("diffuseColor").HasConnectedSource()
    r, g, b = iris.GetInput("diffuseColor").Get()
    assert r > g > b  # brown


def test_blendshapes_are_sparse_usdskel(tmp_path, quad_topology):
    head = make_head(quad_topology)
    root_file = write_head_asset(head, tmp_path, thumbnail=False)
    stage = Usd.Stage.Open(str(root_file))
    assert stage.GetPrimAtPath("/head/Geom").IsA(UsdSkel.Root)
    mesh = stage.GetPrimAtPath("/head/Geom/skin")
    binding = UsdSkel.BindingAPI(mesh)
    assert mesh.HasAPI(UsdSkel.BindingAPI)
    assert list(binding.GetBlendShapesAttr().Get()) == ["jawOpen", "eyeBlink_L"]  # "never moves" is left out
    assert binding.GetSkeletonRel().GetTargets() == [Sdf.Path("/head/Geom/Skel")]
    targets = binding.GetBlendShapeTargetsRel().GetTargets()
    blink = UsdSkel.BlendShape(stage.GetPrimAtPath(targets[1]))
    assert blink.GetPrim().IsA(UsdSkel.BlendShape) and blink.GetPrim().IsDefined()
    for attr in (blink.GetPointIndicesAttr(), blink.GetOffsetsAttr()):  # as the schema declares them
        assert attr.GetVariability() == Sdf.VariabilityUniform
    assert blink.GetOffsetsAttr().GetTypeName() == Sdf.ValueTypeNames.Vector3fArray
    np.testing.assert_array_equal(np.asarray(blink.GetPointIndicesAttr().Get()), [3, 7, 11])
    np.testing.assert_array_equal(np.asarray(blink.GetOffsetsAttr().Get()), head.blendshape_deltas[1, [3, 7, 11]])
    anim = UsdSkel.Animation(stage.GetPrimAtPath("/head/Geom/Anim"))
    assert list(anim.GetBlendShapesAttr().Get()) == head.blendshape_names
    np.testing.assert_allclose(np.asarray(anim.GetBlendShapeWeightsAttr().Get()), [0.3141592653589793, 1e-7, 0.0], rtol=1e-6)
    # UsdSkel itself can evaluate the binding
    cache = UsdSkel.Cache()
    skel_root = UsdSkel.Root(stage.GetPrimAtPath("/head/Geom"))
    cache.Populate(skel_root, Usd.TraverseInstanceProxies())
    query = cache.GetSkinningQuery(mesh)
    assert query.HasBlendShapes()


# ---- round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("topology_factory", [make_quad_grid, udim_grid])
def test_round_trip_is_exact(tmp_path, topology_factory):
    topology = topology_factory()
    head = make_head(topology)
    root_file = write_head_asset(head, tmp_path, name="rt", thumbnail=False, usdz=True)
    for source in (tmp_path / "rt", root_file, tmp_path / "rt" / "rt.usdz"):
        back = read_head_asset(source)
        assert back.differences(head) == [], source
        assert back.provenance == head.provenance
        assert list(back.expression_weights.items()) == list(head.expression_weights.items())
        assert back.topology.topology_id == topology.topology_id == back.topology_id
        np.testing.assert_array_equal(back.topology.face_vertex_indices, topology.face_vertex_indices)
        np.testing.assert_array_equal(back.topology.uv_values, topology.uv_values)
        np.testing.assert_array_equal(back.topology.uv_indices, topology.uv_indices)
        assert back.topology.submeshes == topology.submeshes
        assert back.topology.materials == topology.materials


def test_round_trip_without_optional_parts(tmp_path, quad_topology):
    head = make_head(quad_topology, shapes=False, textures=False, camera=False)
    back = read_head_asset(write_head_asset(head, tmp_path, thumbnail=False))
    assert back.differences(head) == []
    assert back.camera is None and back.blendshape_deltas is None and back.textures == {}


def test_udim_textures_are_named_per_tile(tmp_path):
    head = make_head(udim_grid())
    root_file = write_head_asset(head, tmp_path, thumbnail=False, usdz=True)
    textures = sorted(p.name for p in (root_file.parent / "textures").iterdir())
    assert textures == [f"{m}.{t}.png" for m in ("albedo", "normal", "roughness") for t in (1001, 1002)]
    stage = Usd.Stage.Open(str(root_file))
    surface = UsdShade.Material(stage.GetPrimAtPath("/head/Looks/M_Right")).ComputeSurfaceSource()[0]
    albedo = UsdShade.Shader(surface.GetInput("diffuseColor").GetConnectedSources()[0][0].source.GetPrim())
    assert albedo.GetInput("file").Get().path == "./textures/albedo.1002.png"  # the one tile M_Right's UVs use
    assert albedo.GetInput("wrapS").Get() == "repeat"
    import zipfile
    names = zipfile.ZipFile(root_file.parent / "head.usdz").namelist()
    assert names[0] == "head.usda" and {"textures/albedo.1001.png", "textures/albedo.1002.png"} <= set(names)
    np.testing.assert_array_equal(png_io.read_png(root_file.parent / "textures/roughness.1002.png"),
                                  head.textures["roughness"].tiles[1002])


def test_material_spanning_tiles_samples_the_udim_pattern(tmp_path):
    from topos_sdk import MaterialRange
    grid = udim_grid()
    topo = ReferenceTopology(name="one_skin", rest_points=grid.rest_points, face_vertex_counts=grid.face_vertex_counts,
                             face_vertex_indices=grid.face_vertex_indices, uv_values=grid.uv_values,
                             uv_indices=grid.uv_indices, submeshes=grid.submeshes,
                             materials=[MaterialRange("M_Skin", 0, grid.num_faces)])
    head = make_head(topo)
    root_file = write_head_asset(head, tmp_path, thumbnail=False, usdz=True)
    stage = Usd.Stage.Open(str(root_file))
    surface = UsdShade.Material(stage.GetPrimAtPath("/head/Looks/M_Skin")).ComputeSurfaceSource()[0]
    normal = UsdShade.Shader(surface.GetInput("normal").GetConnectedSources()[0][0].source.GetPrim())
    assert normal.GetInput("file").Get().path == "./textures/normal.<UDIM>.png"
    assert validate_asset(root_file) == [] and validate_asset(root_file.parent / "head.usdz") == []
    assert read_head_asset(root_file.parent / "head.usdz").differences(head) == []
    (root_file.parent / "textures/normal.1001.png").unlink()
    (root_file.parent / "textures/normal.1002.png").unlink()
    assert any("no UDIM tile" in p for p in validate_asset(root_file))


def test_camera_prim_overlays_the_portrait(tmp_path, quad_topology):
    head = make_head(quad_topology)
    root_file = write_head_asset(head, tmp_path, thumbnail=False)
    stage = Usd.Stage.Open(str(root_file))
    camera_prim = stage.GetPrimAtPath("/head/Camera")
    assert camera_prim.IsA(UsdGeom.Camera)
    through_usd = projection_through_usd_camera(camera_prim, head.points, head.camera.image_size)
    np.testing.assert_allclose(through_usd, head.camera.project(head.points), atol=1e-3)


def test_thumbnail_when_a_preview_renderer_exists(tmp_path, quad_topology):
    pytest.importorskip("topos_sdk.preview")
    root_file = write_head_asset(make_head(quad_topology), tmp_path, thumbnail=True)
    thumb = png_io.read_png(root_file.parent / "thumbnail.png")
    assert thumb.ndim == 3 and thumb.shape[2] == 3 and thumb.std() > 0
    stage = Usd.Stage.Open(str(root_file))
    info = Usd.ModelAPI(stage.GetDefaultPrim()).GetAssetInfo()
    assert info["thumbnail"].path == "./thumbnail.png"
    assert validate_asset(root_file) == []


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("shapes,textures", [(True, True), (False, True), (True, False), (False, False)])
def test_usd_validation_reports_nothing(tmp_path, quad_topology, shapes, textures):
    root_file = write_head_asset(make_head(quad_topology, shapes=shapes, textures=textures), tmp_path,
                                 thumbnail=False, usdz=True)
    assert validate_asset(root_file, include_warnings=True) == []
    assert validate_asset(root_file.parent / "head.usdz", include_warnings=True) == []


def test_raw_usd_validation_only_misses_materialx_node_definitions(tmp_path):
    """Every registered validator on the written stage: nothing at all, except — in USD builds without
    MaterialX (usd-core) — 'unknown shader id' for the MaterialX nodes, which validate_asset explains away."""
    root_file = write_head_asset(make_head(udim_grid()), tmp_path, thumbnail=False)
    stage = Usd.Stage.Open(str(root_file))
    registry = UsdValidation.ValidationRegistry()
    errors = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators()).Validate(stage)
    assert len(registry.GetOrLoadAllValidators()) >= 20
    findings = [e for e in errors if e.GetType() != UsdValidation.ValidationErrorType.Info]
    if sdr_knows_materialx():
        assert findings == []
    else:
        assert {e.GetName() for e in findings} <= {"MissingShaderIdInRegistry"}, [e.GetMessage() for e in findings]
        assert all("'ND_" in e.GetMessage() for e in findings)


def test_validate_reports_broken_assets(tmp_path, quad_topology):
    root_file = write_head_asset(make_head(quad_topology), tmp_path, thumbnail=False)
    (root_file.parent / "textures" / "normal.png").unlink()
    layer = Sdf.Layer.FindOrOpen(str(root_file.parent / "geo.usdc"))
    layer.GetAttributeAtPath("/head/Geom/skin.primvars:st").SetInfo("customData", {})
    layer.Save()
    problems = validate_asset(root_file)
    assert any("normal.png" in p for p in problems)
    assert any("Maya:name" in p for p in problems)


# ---- stable topology across heads ---------------------------------------------------------------

def test_two_heads_share_connectivity_uvs_and_ids(tmp_path, quad_topology):
    paths = [write_head_asset(make_head(quad_topology, seed=s), tmp_path / f"h{s}", thumbnail=False) for s in (1, 2)]
    stages = [Usd.Stage.Open(str(p)) for p in paths]
    meshes = [UsdGeom.Mesh(stage.GetPrimAtPath("/head/Geom/skin")) for stage in stages]
    a, b = meshes
    assert not np.array_equal(np.asarray(a.GetPointsAttr().Get()), np.asarray(b.GetPointsAttr().Get()))
    for get in (lambda m: m.GetFaceVertexCountsAttr().Get(), lambda m: m.GetFaceVertexIndicesAttr().Get(),
                lambda m: UsdGeom.PrimvarsAPI(m).GetPrimvar("st").Get(),
                lambda m: UsdGeom.PrimvarsAPI(m).GetPrimvar("st").GetIndices()):
        np.testing.assert_array_equal(np.asarray(get(a)), np.asarray(get(b)))
    assert a.GetPrim().GetCustomDataByKey("topos:topologyId") == b.GetPrim().GetCustomDataByKey("topos:topologyId")
    assert all(verify_topology(p, quad_topology) == [] for p in paths)


def test_verify_topology_names_the_changed_index(tmp_path, quad_topology):
    root_file = write_head_asset(make_head(quad_topology), tmp_path, thumbnail=False)
    layer = Sdf.Layer.FindOrOpen(str(root_file.parent / "geo.usdc"))
    attr = layer.GetAttributeAtPath("/head/Geom/skin.faceVertexIndices")
    indices = np.asarray(attr.default).copy()
    original = int(indices[17])
    indices[17] = (original + 1) % quad_topology.num_points
    attr.default = pxr.Vt.IntArray.FromNumpy(indices)
    layer.Save()
    del layer
    problems = verify_topology(root_file, quad_topology)
    assert problems == [f"mesh skin: faceVertexIndices[17] is {indices[17]}, topology has {original}"]
    with pytest.raises(TopologyMismatchError, match="verify_topology"):
        read_head_asset(root_file)
    other = make_quad_grid(nx=4, ny=4)
    assert any("topos:topologyId" in p or "faceVertexCounts" in p for p in verify_topology(root_file, other))


# ---- atomic writes -------------------------------------------------------------------------------

def test_failed_write_leaves_previous_asset_intact(tmp_path, quad_topology, monkeypatch):
    first = make_head(quad_topology, seed=1)
    root_file = write_head_asset(first, tmp_path, thumbnail=False)
    before = tree_digest(tmp_path)

    calls = {"n": 0}
    real_write = png_io.write_png

    def failing_write(path, image, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (injected)")
        return real_write(path, image, *args, **kwargs)

    monkeypatch.setattr(png_io, "write_png", failing_write)
    with pytest.raises(OSError, match="injected"):
        write_head_asset(make_head(quad_topology, seed=2), tmp_path, thumbnail=False)
    assert calls["n"] >= 2
    assert tree_digest(tmp_path) == before  # same files, same bytes, no temp leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head"]
    assert read_head_asset(root_file).differences(first) == []


def test_failure_in_usd_authoring_also_leaves_nothing(tmp_path, quad_topology, monkeypatch):
    from topos_sdk.usd import asset_writer
    monkeypatch.setattr(asset_writer, "define_camera", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        write_head_asset(make_head(quad_topology), tmp_path, thumbnail=False)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_false_refuses_existing_asset(tmp_path, quad_topology):
    write_head_asset(make_head(quad_topology), tmp_path, thumbnail=False)
    with pytest.raises(AssetError, match="exists"):
        write_head_asset(make_head(quad_topology), tmp_path, thumbnail=False, overwrite=False)
    with pytest.raises(ValueError, match="asset name"):
        write_head_asset(make_head(quad_topology), tmp_path, name="../evil", thumbnail=False)


# ---- the real ICT mesh ---------------------------------------------------------------------------

@pytest.mark.skipif(not ICT_NEUTRAL.is_file(), reason="ICT-FaceKit data not present")
def test_ict_neutral_keeps_the_obj_connectivity(tmp_path):
    from topos_sdk.obj_reader import read_obj
    topology = ReferenceTopology.from_obj(ICT_NEUTRAL)
    obj = read_obj(ICT_NEUTRAL)
    assert topology.num_points == 26719 and topology.num_faces == 26384
    head = HeadResult(points=obj.points, topology=topology)
    root_file = write_head_asset(head, tmp_path, name="ict", thumbnail=False)
    stage = Usd.Stage.Open(str(root_file))
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/ict/Geom/mesh"))
    counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get())
    np.testing.assert_array_equal(counts, obj.face_vertex_counts)
    assert (counts == 4).sum() > 25000  # quads stay quads
    np.testing.assert_array_equal(np.asarray(mesh.GetFaceVertexIndicesAttr().Get()), obj.face_vertex_indices)
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
    np.testing.assert_array_equal(np.asarray(st.ComputeFlattened()), obj.uv_values[obj.uv_indices])
    assert verify_topology(root_file, topology) == []
    back = read_head_asset(root_file)
    assert back.topology.topology_id == topology.topology_id
    assert [m.name for m in back.topology.materials] == [m.name for m in topology.materials]
    assert validate_asset(root_file) == []


def test_ict_topology_with_its_parts_writes_one_mesh_per_part(tmp_path):
    try:
        from topos_server.assets.cache import AssetCache
        topology = AssetCache.default().ict_topology()
    except Exception as exc:  # the cache is filled by .ci/setup (topos assets import)
        pytest.skip(f"ICT asset cache not available: {exc}")
    rng = np.random.default_rng(5)
    names = ["jawOpen", "eyeBlink_L"]
    deltas = np.zeros((2, topology.num_points, 3), np.float32)
    deltas[0, rng.choice(topology.num_points, 500, replace=False)] = 0.3
    deltas[1, rng.choice(topology.num_points, 50, replace=False)] = -0.2
    skin_tiles = {t: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for t in (1001, 1002)}
    head = HeadResult(points=topology.rest_points, topology=topology, blendshape_names=names, blendshape_deltas=deltas,
                      expression_weights={"jawOpen": 0.5}, textures={"albedo": TextureMap("albedo", skin_tiles, "sRGB")})
    root_file = write_head_asset(head, tmp_path, name="ict", thumbnail=False)
    stage = Usd.Stage.Open(str(root_file))
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert [m.GetName() for m in meshes] == [p.name for p in topology.mesh_parts()]
    skin = UsdGeom.Mesh(stage.GetPrimAtPath("/ict/Geom/skin"))
    parts = [s.GetPrim().GetName() for s in UsdGeom.Subset.GetGeomSubsets(skin, "face", "part")]
    assert "part_face" in parts and "part_head_neck" in parts
    looks = {m.GetName(): UsdShade.Material(m).ComputeSurfaceSource()[0] for m in stage.GetPrimAtPath("/ict/Looks").GetChildren()}
    assert looks["M_Face"].GetInput("diffuseColor").HasConnectedSource()
    assert looks["M_BackHead"].GetInput("diffuseColor").HasConnectedSource()
    for constant in ("M_ScleraLeft", "M_IrisLeft", "M_Teeth", "M_GumsTongue", "M_EyeLashes"):
        assert not looks[constant].GetInput("diffuseColor").HasConnectedSource(), constant
    assert verify_topology(root_file, topology) == []
    assert validate_asset(root_file) == []
    back = read_head_asset(root_file)
    assert back.differences(head) == [] and back.topology.topology_id == topology.topology_id
    assert back.topology.submeshes == topology.submeshes
