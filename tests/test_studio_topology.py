"""Studio topologies: register a studio head, carry reference heads into it, write and verify the assets.

Studio meshes: a procedural all-quad head on the ICT surface with UDIM UVs (and the same without UVs),
ICT's own mesh (the identity), and MediaPipe's canonical face (Apache-2.0, read from ../shared at test time).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from topos_sdk.errors import InvalidInputError, TopologyMismatchError
from topos_sdk.head_result import HeadResult, TextureMap

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ICT_NEUTRAL = SHARED / "ict-facekit" / "FaceXModel" / "generic_neutral_mesh.obj.xz"
MEDIAPIPE_FACE = SHARED / "mediapipe" / "canonical_face_model.obj"
TEXTURE_SIZE = 256


@pytest.fixture(scope="module")
def converter(weights, topology):
    from topos_server.pipelines.convert import HeadConverter

    return HeadConverter.load(weights)


@pytest.fixture(scope="module")
def topos_home(tmp_path_factory):
    """A TOPOS_HOME of its own (studio topologies, UV raster cache) sharing the imported ICT/MediaPipe files."""
    from topos_server.assets.cache import AssetCache

    home = tmp_path_factory.mktemp("topos_home")
    default = AssetCache.default().root
    for kind in ("ict", "facemesh"):
        (home / kind).symlink_to(default / kind, target_is_directory=True)
    return home


@pytest.fixture(scope="module")
def store(topos_home):
    from topos_server.assets.cache import AssetCache
    from topos_server.pipelines.studio_topology import TopologyStore

    return TopologyStore(AssetCache(topos_home))


@pytest.fixture(scope="module")
def quad_head(topology):
    from topos_server.data.quad_heads import quad_head
    from topos_server.data.synthetic_heads import outer_surface

    count, triangles = outer_surface(topology)
    return quad_head(topology.rest_points[:count], triangles, edge_cm=1.5)


@pytest.fixture(scope="module")
def quad_studio(quad_head, converter, store, tmp_path_factory):
    """The quad head with UDIM UVs, in centimetres, registered and stored."""
    from topos_server.pipelines.studio_topology import register_studio_head

    path = quad_head.write_obj(tmp_path_factory.mktemp("studio") / "quad_head.obj")
    store.save(register_studio_head(path, "quad_head", converter=converter), texture_size=TEXTURE_SIZE)
    return store.load("quad_head")


def reference_head(head_model, topology, seed: int, textured: bool = True) -> HeadResult:
    """A reference-topology head: a random identity, the 53+ expression shapes, smooth colour textures."""
    rng = np.random.default_rng(seed)
    identity = rng.normal(size=head_model.identity_basis.shape[0]) * 0.7
    points = head_model.neutral.numpy() + np.tensordot(identity, head_model.identity_basis.numpy(), axes=1)
    textures = {}
    if textured:
        from topos_server.texture.bake import skin_uv_layout

        layout = skin_uv_layout(topology, TEXTURE_SIZE)
        colour = smooth_colour(topology.rest_points)  # (N, 3) in [0, 1]
        albedo, flat_normal = {}, {}
        for tt in layout.tiles:
            albedo[tt.tile] = (255 * tt.image(tt.interpolate(np.ascontiguousarray(colour.T)))).astype(np.uint8).transpose(1, 2, 0)
            flat_normal[tt.tile] = np.broadcast_to(np.array([128, 128, 255], np.uint8), (TEXTURE_SIZE, TEXTURE_SIZE, 3))
        textures = {"albedo": TextureMap("albedo", albedo), "normal": TextureMap("normal", flat_normal, "raw")}
    return HeadResult(points.astype(np.float32), topology=topology, textures=textures,
                      blendshape_names=list(head_model.expression_names),
                      blendshape_deltas=head_model.expression_basis.numpy(),
                      expression_weights={"jawOpen": 0.4, "eyeBlinkLeft": float(seed % 2)})


def smooth_colour(points: np.ndarray) -> np.ndarray:
    """(N, 3) colours in [0, 1] varying smoothly over a head (cm)."""
    p = np.asarray(points, np.float64)
    return np.clip(0.5 + 0.5 * np.stack([np.sin(p[:, 0] / 6), np.cos(p[:, 1] / 7), np.sin(p[:, 2] / 5 + 1)], 1), 0, 1)


# ---- the dense map -----------------------------------------------------------------------------------------------
def test_dense_map_reproduces_the_mesh_it_was_built_on_and_moves_with_its_triangles():
    from topos_server.geometry.dense_map import DenseMap
    from topos_server.geometry.registration import TriangleSurface

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    target = np.column_stack([grid, 0.1 * np.sin(grid[:, 0])])  # (25, 3)
    triangles = np.array([[i + 5 * j, i + 1 + 5 * j, i + 6 + 5 * j] for j in range(4) for i in range(4)]
                         + [[i + 5 * j, i + 6 + 5 * j, i + 5 + 5 * j] for j in range(4) for i in range(4)])
    studio = np.column_stack([rng.uniform(0.2, 3.8, (40, 2)), rng.normal(0, 0.05, 40)])
    hits = TriangleSurface(target, triangles).closest(studio)
    dense = DenseMap.build(studio, target, triangles, hits.triangle, hits.barycentric, units_to_reference=1.0)
    assert np.abs(dense.evaluate(target) - studio).max() < 1e-12
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    moved = 2.0 * target @ rotation.T + np.array([1.0, 2.0, 3.0])
    # the surface point scales with the head; the offset turns with its triangle and keeps its length
    expected = 2.0 * hits.points @ rotation.T + np.array([1.0, 2.0, 3.0]) + (studio - hits.points) @ rotation.T
    assert np.abs(dense.evaluate(moved) - expected).max() < 1e-9
    exact = DenseMap.onto_vertices(np.array([3, 7]))
    assert np.array_equal(exact.evaluate(moved), moved[[3, 7]])


# ---- registration and transfer ----------------------------------------------------------------------------------
@pytest.mark.skipif(not ICT_NEUTRAL.is_file(), reason="ICT-FaceKit not in ../shared")
def test_ict_to_ict_is_the_identity(converter, topology, head_model):
    from topos_server.pipelines.studio_topology import StudioTopology, register_studio_head

    registration = register_studio_head(ICT_NEUTRAL, "ict_again", converter=converter)
    assert registration.manifest["registration"]["vertices_on_reference_vertices"] == 1.0
    assert registration.topology.topology_id == topology.topology_id  # same connectivity and UVs
    studio = StudioTopology(registration.topology, registration.dense_map, registration.manifest)
    head = reference_head(head_model, topology, seed=3, textured=False)
    moved = studio.transfer(head)
    assert np.abs(moved.points - head.points).max() <= 1e-4  # cm
    assert np.abs(moved.blendshape_deltas - head.blendshape_deltas).max() <= 1e-4
    assert moved.blendshape_names == head.blendshape_names


def test_quad_head_registers_with_its_udim_uvs(quad_studio, quad_head):
    manifest = quad_studio.manifest
    assert manifest["face_sizes"] == {"4": len(quad_head.quads)}
    assert manifest["udim_tiles"] == [1001, 1002]
    assert manifest["registration"]["residual_mm"]["median"] < 0.3
    assert manifest["registration"]["vertices_on_reference_vertices"] < 0.01  # a topology of its own
    assert quad_studio.topology.num_points == len(quad_head.points)
    assert np.allclose(quad_studio.topology.uv_values, quad_head.topology().uv_values, atol=1e-6)  # as written (6 digits)
    assert sorted(quad_studio.topology.landmarks) == ["mediapipe", "multipie68"]
    assert sorted(quad_studio.topology.vertex_groups) == ["back", "front", "skin"]  # the OBJ's g groups kept
    assert (Path(quad_studio.folder) / f"texels_{TEXTURE_SIZE}.npz").is_file()


def test_two_heads_share_connectivity_uvs_and_topology_id_and_validate(quad_studio, topology, head_model, tmp_path):
    from topos_sdk.usd import read_head_asset, validate_asset, verify_topology, write_head_asset

    assets = []
    for seed in (1, 2):
        studio_head = quad_studio.transfer(reference_head(head_model, topology, seed))
        assert studio_head.topology_id == quad_studio.topology.topology_id
        assert sorted(studio_head.textures["albedo"].tiles) == [1001, 1002]
        assert studio_head.blendshape_deltas.shape == (len(head_model.expression_names), quad_studio.topology.num_points, 3)
        assert studio_head.provenance.extra["topology"]["name"] == "quad_head"
        assets.append(write_head_asset(studio_head, tmp_path, name=f"head{seed}"))
    for asset in assets:
        assert validate_asset(asset) == []
        assert verify_topology(asset, quad_studio.topology) == []
    first, second = (read_head_asset(a) for a in assets)
    assert first.topology.topology_id == second.topology.topology_id == quad_studio.topology.topology_id
    assert np.array_equal(first.topology.face_vertex_indices, second.topology.face_vertex_indices)
    assert np.array_equal(first.topology.uv_values, second.topology.uv_values)
    assert np.abs(first.points - second.points).max() > 0.1  # two different heads
    assert len(first.blendshape_names) == len(head_model.expression_names)


def test_textures_rebake_into_the_studio_uvs(quad_studio, topology, head_model):
    """A colour that is a smooth function of the rest surface reads the same in the studio UVs."""
    from topos_server.texture.bake import skin_uv_layout
    from topos_server.texture.studio_rebake import skin_materials

    studio_head = quad_studio.transfer(reference_head(head_model, topology, seed=0))
    layout = skin_uv_layout(quad_studio.topology, TEXTURE_SIZE, materials=skin_materials(quad_studio.topology))
    geometry = quad_studio._registration_geometry()
    # the studio vertices' rest positions in the reference frame are the ICT rest surface points
    expected_vertex_colour = smooth_colour(quad_studio.topology.rest_points)
    errors = []
    for tt in layout.tiles:
        got = studio_head.textures["albedo"].tiles[tt.tile].reshape(-1, 3)[tt.texel] / 255.0
        expected = tt.interpolate(np.ascontiguousarray(expected_vertex_colour.T)).T
        errors.append(np.abs(got - expected).mean(1))
    errors = np.concatenate(errors)
    assert geometry["studio_points"].shape == (quad_studio.topology.num_points, 3)
    assert np.median(errors) < 0.02 and np.percentile(errors, 90) < 0.05
    normal = studio_head.textures["normal"].tiles[1001].astype(int)
    assert np.abs(normal - np.array([128, 128, 255])).max() <= 1  # flat stays flat under the UV-frame rotation


def uv_tangent_direction(points: np.ndarray, layout, world: np.ndarray) -> np.ndarray:
    """(T, 2) ``world`` direction in each triangle's tangent frame (unit ∂x/∂u, ∂x/∂v): a tangent-space xy."""
    corners = points[layout.triangles].astype(np.float64)
    uv = layout.uv_triangles.astype(np.float64)
    edges = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], -1)  # (T, 3, 2)
    uv_edges = np.stack([uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]], -1)
    tangents = edges @ np.linalg.inv(uv_edges + 1e-12 * np.eye(2))  # (T, 3, 2)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    return np.einsum("x,txk->tk", world, tangents)


def test_normal_maps_turn_into_the_studio_uv_frame(quad_studio, topology):
    """A normal map leaning towards world +Y in the reference UVs leans towards world +Y in the studio UVs."""
    from topos_server.texture.bake import skin_uv_layout
    from topos_server.texture.studio_rebake import rebake, skin_materials

    up = np.array([0.0, 1.0, 0.0])
    layout = skin_uv_layout(topology, TEXTURE_SIZE)
    lean = uv_tangent_direction(topology.rest_points, layout, up)
    tiles = {}
    for tt in layout.tiles:
        encoded = np.tile([0.0, 0.0, 1.0], (TEXTURE_SIZE * TEXTURE_SIZE, 1))
        d = lean[tt.triangle]
        encoded[tt.texel, :2] = 0.6 * d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        encoded[tt.texel, 2] = 0.8
        tiles[tt.tile] = np.rint((encoded.reshape(TEXTURE_SIZE, TEXTURE_SIZE, 3) + 1) * 127.5).astype(np.uint8)
    texel_map = quad_studio.texel_map(topology, TEXTURE_SIZE)
    studio_layout = skin_uv_layout(quad_studio.topology, TEXTURE_SIZE, materials=skin_materials(quad_studio.topology))
    expected = uv_tangent_direction(quad_studio.topology.rest_points, studio_layout, up)

    def angle_errors(texture: TextureMap) -> np.ndarray:
        errors = []
        for tt in studio_layout.tiles:
            want = expected[tt.triangle]
            got = texture.tiles[tt.tile].reshape(-1, 3)[tt.texel, :2] / 127.5 - 1.0
            turn = np.arctan2(got[:, 1], got[:, 0]) - np.arctan2(want[:, 1], want[:, 0])
            errors.append(np.degrees(np.abs(np.angle(np.exp(1j * turn))))[np.linalg.norm(want, axis=1) > 0.5])
        return np.concatenate(errors)

    turned = angle_errors(rebake(texel_map, TextureMap("normal", tiles, "raw")))
    copied = angle_errors(rebake(texel_map, TextureMap("not_a_normal_map", tiles, "raw")))  # no turn
    assert np.median(turned) < 8 and np.percentile(turned, 90) < 25
    assert np.percentile(copied, 90) > 2 * np.percentile(turned, 90)


def test_transfer_refuses_a_head_of_another_topology(quad_studio, quad_topology):
    with pytest.raises(TopologyMismatchError, match="registered on reference"):
        quad_studio.transfer(HeadResult(quad_topology.rest_points, topology=quad_topology))


def test_studio_head_without_uvs_drops_textures_said_once(quad_head, converter, topology, head_model, tmp_path):
    from topos_sdk.usd import validate_asset, verify_topology, write_head_asset
    from topos_server.pipelines.studio_topology import StudioTopology, register_studio_head

    path = quad_head.write_obj(tmp_path / "no_uvs.obj", uvs=False)
    registration = register_studio_head(path, "no_uvs", converter=converter, symmetry="none")
    assert registration.topology.uv_values is None
    assert any("no UVs" in note for note in registration.manifest["notes"])
    studio = StudioTopology(registration.topology, registration.dense_map, registration.manifest)
    moved = studio.transfer(reference_head(head_model, topology, seed=4))
    assert moved.textures == {}
    assert "no UVs" in moved.provenance.extra["topology"]["textures"]
    asset = write_head_asset(moved, tmp_path, name="no_uvs_head")
    assert validate_asset(asset) == []
    assert verify_topology(asset, registration.topology) == []


@pytest.mark.skipif(not MEDIAPIPE_FACE.is_file(), reason="MediaPipe canonical face not in ../shared")
def test_mediapipe_canonical_face_registers_as_a_face_only_topology(converter, topology, head_model, tmp_path):
    from topos_sdk.usd import validate_asset, verify_topology, write_head_asset
    from topos_server.pipelines.studio_topology import StudioTopology, register_studio_head

    registration = register_studio_head(MEDIAPIPE_FACE, "mediapipe_face", converter=converter)
    assert registration.topology.num_points == 468
    assert registration.manifest["registration"]["residual_mm"]["median"] < 1.0
    assert registration.topology.symmetry is not None  # the canonical face is symmetric
    studio = StudioTopology(registration.topology, registration.dense_map, registration.manifest)
    head = reference_head(head_model, topology, seed=5, textured=False)
    moved = studio.transfer(head)
    asset = write_head_asset(moved, tmp_path, name="mp")
    assert validate_asset(asset) == [] and verify_topology(asset, registration.topology) == []
    # the face lands where the reference's face is: its nose tip (multipie68 #30) near the reference's
    nose = registration.topology.landmarks["multipie68"].evaluate(moved.points)[30]
    assert np.linalg.norm(nose - topology.landmarks["multipie68"].evaluate(head.points)[30]) < 0.5


# ---- bad meshes --------------------------------------------------------------------------------------------------
def write_obj(path: Path, points, faces) -> Path:
    lines = [f"v {x} {y} {z}" for x, y, z in points] + ["f " + " ".join(str(i + 1) for i in f) for f in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_non_manifold_mesh_is_refused(tmp_path, converter):
    from topos_server.pipelines.studio_topology import register_studio_head

    points = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1)]
    path = write_obj(tmp_path / "fin.obj", points, [(0, 1, 2), (1, 0, 3), (0, 1, 4)])
    with pytest.raises(InvalidInputError, match="non-manifold: 1 edges"):
        register_studio_head(path, "fin", converter=converter)


def test_piece_outside_the_head_is_refused(tmp_path, converter, quad_head):
    from topos_server.pipelines.studio_topology import register_studio_head

    far = np.array([[100.0, 0, 0], [101, 0, 0], [100, 1, 0]])
    points = np.concatenate([quad_head.points, far])
    faces = list(quad_head.quads) + [np.arange(3) + len(quad_head.points)]
    path = write_obj(tmp_path / "with_debris.obj", points, faces)
    with pytest.raises(InvalidInputError, match="disconnected: a second piece of 3 vertices lies outside"):
        register_studio_head(path, "debris", converter=converter)


def test_a_mesh_that_is_not_a_head_is_refused(tmp_path, converter):
    from topos_server.pipelines.studio_topology import NotAHead, register_studio_head

    # a closed box the size of a head
    corners = np.array([[x, y, z] for x in (-9, 9) for y in (-12, 12) for z in (-10, 10)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    from topos_sdk.topology import ReferenceTopology

    box = ReferenceTopology("box", corners, [4] * 6, np.ravel(quads))
    for _ in range(4):  # subdivide so the registration has surface to work with
        box = subdivide_quads(box)
    path = write_obj(tmp_path / "box.obj", box.rest_points, box.face_vertex_indices.reshape(-1, 4))
    with pytest.raises(NotAHead, match="does not register onto a head"):
        register_studio_head(path, "box", converter=converter)


def subdivide_quads(topology):
    """Each quad → 4 (edge midpoints + centre), shared edges welded."""
    from topos_sdk.topology import ReferenceTopology

    points = [tuple(p) for p in topology.rest_points.astype(np.float64)]
    index = {p: i for i, p in enumerate(points)}

    def vertex(p):
        p = tuple(np.round(p, 9))
        if p not in index:
            index[p] = len(points)
            points.append(p)
        return index[p]

    quads = []
    rest = topology.rest_points.astype(np.float64)
    for quad in topology.face_vertex_indices.reshape(-1, 4):
        c = [vertex(rest[v]) for v in quad]
        m = [vertex(0.5 * (rest[quad[k]] + rest[quad[(k + 1) % 4]])) for k in range(4)]
        centre = vertex(rest[quad].mean(0))
        quads += [(c[k], m[k], centre, m[(k - 1) % 4]) for k in range(4)]
    return ReferenceTopology("box", np.array(points), [4] * len(quads), np.ravel(quads))


def test_bad_names_and_unknown_topologies_give_one_line(store):
    from topos_server.pipelines.studio_topology import TopologyNotFound, check_name

    with pytest.raises(InvalidInputError, match="use a letter"):
        check_name("../etc")
    with pytest.raises(TopologyNotFound, match="no studio topology 'missing'"):
        store.load("missing")


# ---- CLI and the generate / convert paths -----------------------------------------------------------------------
def test_topology_cli_add_list_show_remove(quad_head, topos_home, tmp_path, monkeypatch, capsys):
    from topos_sdk.cli import main

    monkeypatch.setenv("TOPOS_HOME", str(topos_home))
    path = quad_head.write_obj(tmp_path / "cli_head.obj")
    assert main(["topology", "add", "cli_head", str(path), "--texture-size", "0", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["name"] == "cli_head" and "registered cli_head" in out.err
    assert main(["topology", "add", "cli_head", str(path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["topology", "list"]) == 0
    assert "cli_head" in capsys.readouterr().out
    assert main(["topology", "show", "cli_head"]) == 0
    assert "UDIM 1001, 1002" in capsys.readouterr().out
    assert main(["topology", "remove", "cli_head"]) == 0
    assert main(["topology", "show", "cli_head"]) == 1
    assert "no studio topology 'cli_head'" in capsys.readouterr().err
    assert main(["topology", "add", "x", str(tmp_path / "missing.obj")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_generate_and_convert_write_the_studio_topology(quad_studio, topos_home, tmp_path, monkeypatch, capsys,
                                                        remeshed_head):
    from conftest import write_obj as write_triangles
    from topos_sdk.cli import main
    from topos_sdk.usd import read_head_asset, validate_asset, verify_topology

    monkeypatch.setenv("TOPOS_HOME", str(topos_home))
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "astronaut.png"
    assert main(["generate", str(example), "-o", str(tmp_path), "--topology", "quad_head", "--texture-size", "512"]) == 0
    asset = tmp_path / "astronaut" / "astronaut.usda"
    assert validate_asset(asset) == [] and verify_topology(asset, quad_studio.topology) == []
    head = read_head_asset(asset)
    assert head.topology_id == quad_studio.topology.topology_id
    assert sorted(head.textures) == ["albedo", "normal", "roughness"]
    assert len(head.blendshape_names) >= 53

    points, triangles, _ = remeshed_head
    mesh = tmp_path / "scan.obj"
    write_triangles(mesh, points, triangles)
    assert main(["convert", str(mesh), "-o", str(tmp_path / "converted"), "--topology", "quad_head"]) == 0
    converted = tmp_path / "converted" / "scan" / "scan.usda"
    assert verify_topology(converted, quad_studio.topology) == []
    assert main(["generate", str(example), "-o", str(tmp_path), "--topology", "nope", "--overwrite"]) == 1
    assert "no studio topology 'nope'" in capsys.readouterr().err


def test_grpc_generate_in_a_studio_topology_and_get_topology(quad_studio, topos_home, tmp_path, monkeypatch):
    import topos_sdk.client as client_module
    from test_grpc_server import PORTRAIT
    from topos_sdk.cli import main
    from topos_sdk.client import Client
    from topos_sdk.usd import validate_asset, verify_topology
    from topos_server.serving.server import ServerConfig, start_in_thread

    monkeypatch.setenv("TOPOS_HOME", str(topos_home))
    studio_id = quad_studio.topology.topology_id
    with start_in_thread(ServerConfig(host="127.0.0.1", port=0, device="cpu", engines=["classic"])) as server:
        with Client(server.address, retries=0, timeout=300) as client:
            client_module._topology_cache.pop(studio_id, None)
            assert client.topology(studio_id).topology_id == studio_id  # registered, not used by a request yet
            remote = client.generate(PORTRAIT, seed=1, texture_size=512, topology="quad_head")
            assert remote.topology_id == studio_id and remote.provenance.extra["topology"]["name"] == "quad_head"
            assert np.array_equal(remote.topology.face_vertex_indices, quad_studio.topology.face_vertex_indices)
            assert sorted(remote.textures["albedo"].tiles) == [1001, 1002]
            client_module._topology_cache.pop(studio_id, None)
            fetched = client.topology(studio_id)  # GetTopology serves the studio topology
            assert fetched.topology_id == studio_id
            assert np.array_equal(fetched.uv_indices, quad_studio.topology.uv_indices)
            with pytest.raises(InvalidInputError, match="no studio topology 'nope'"):
                client.generate(PORTRAIT, seed=1, texture_size=512, topology="nope")
        (tmp_path / "astronaut.png").write_bytes(PORTRAIT)
        assert main(["generate", str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "remote"), "--server",
                     server.address, "--topology", "quad_head", "--texture-size", "512"]) == 0
    asset = tmp_path / "remote" / "astronaut" / "astronaut.usda"
    assert validate_asset(asset) == [] and verify_topology(asset, quad_studio.topology) == []


# ---- DCC menus ---------------------------------------------------------------------------------------------------
def fake_registered_topology(home: Path, name: str) -> None:
    folder = home / "topologies" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": name}))


def test_maya_dialog_offers_registered_topologies_and_passes_the_choice(monkeypatch, tmp_path):
    from conftest import make_quad_grid
    from fakes import install_fake_maya
    from fakes.head_assets import head_result
    from test_maya_integration import fake_generate, fill_dialog, run_to_completion

    home = tmp_path / "home"
    fake_registered_topology(home, "studio_a")
    monkeypatch.setenv("TOPOS_HOME", str(home))
    maya = install_fake_maya(monkeypatch)
    portrait = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(portrait)
    fake = fake_generate(monkeypatch, head_result(make_quad_grid(), seed=1), tmp_path)
    dialog = fill_dialog(maya, portrait, tmp_path / "heads")
    labels = [c["label"] for c in maya.calls_to("menuItem") if "label" in c]
    assert "reference" in labels and "studio_a" in labels
    assert maya.controls[dialog.TOPOLOGY]["value"] == "reference"
    maya.controls[dialog.TOPOLOGY]["value"] = "studio_a"
    run_to_completion(maya, dialog.on_generate())
    (call,) = fake.calls
    assert call["topology"] == "studio_a"
    assert maya.option_vars["topos_topology"] == "studio_a"


def test_houdini_cache_key_and_menu_know_the_topology(monkeypatch, tmp_path):
    import hashlib

    from fakes import install_fake_hou

    install_fake_hou(monkeypatch)
    from topos_houdini.generation_cache import GenerationKey
    from topos_houdini.head_lop import topology_menu

    home = tmp_path / "home"
    fake_registered_topology(home, "studio_b")
    monkeypatch.setenv("TOPOS_HOME", str(home))
    reference = GenerationKey("0" * 64, 1, "classic", 1024)
    studio = GenerationKey("0" * 64, 1, "classic", 1024, "studio_b")
    assert reference.digest != studio.digest
    # reference-topology keys hash as before topologies existed (cached heads are still found)
    assert reference.digest == hashlib.sha256(json.dumps(
        {"engine": "classic", "image_sha256": "0" * 64, "seed": 1, "texture_size": 1024}, sort_keys=True).encode()).hexdigest()
    assert topology_menu() == ["", "Reference (ICT-FaceKit)", "studio_b", "studio_b"]


def test_landmarks_file_sets_the_pose_of_an_upside_down_studio_head(quad_head, converter, topology, tmp_path):
    from topos_server.pipelines.studio_topology import register_studio_head

    turn = np.diag([1.0, -1.0, -1.0])  # upside down, in millimetres
    points = 10.0 * quad_head.points @ turn.T
    mesh = quad_head.write_obj(tmp_path / "upside_down.obj", points=points, uvs=False)
    landmarks = 10.0 * topology.landmarks["multipie68"].evaluate(topology.rest_points.astype(np.float64)) @ turn.T
    (tmp_path / "landmarks.json").write_text(json.dumps(landmarks.tolist()))
    registration = register_studio_head(mesh, "pinned", converter=converter, landmarks_file=tmp_path / "landmarks.json")
    assert registration.manifest["registration"]["alignment"] == "landmarks"
    assert registration.manifest["source"]["units"] == "mm"
    assert registration.manifest["registration"]["residual_mm"]["median"] < 0.3
    # rest points come back in the reference frame and centimetres
    assert np.abs(registration.topology.rest_points - quad_head.points).mean() < 0.1
