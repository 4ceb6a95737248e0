from pathlib import Path

import numpy as np
import pytest

from topos_sdk import MaterialRange, ReferenceTopology, SubMesh


def make_quad_grid(nx: int = 6, ny: int = 4, name: str = "grid") -> ReferenceTopology:
    """A small procedural quad mesh with a UV seam down the middle column (duplicated uv ids).

    Two sub-meshes in one mesh ("left", "right" halves), one material per half.
    """
    xs, ys = np.meshgrid(np.linspace(-1, 1, nx + 1), np.linspace(-1, 1, ny + 1))
    points = np.stack([xs.ravel(), ys.ravel(), 0.1 * np.sin(xs.ravel() * 2)], axis=1).astype(np.float32)
    vid = lambda i, j: j * (nx + 1) + i  # noqa: E731
    seam = nx // 2
    uv_vals, uv_key = [], {}

    def uv(i, j, side):
        key = (i, j, side if i == seam else 0)
        if key not in uv_key:
            u = i / nx * 0.5 + (0.5 if side and i == seam else 0.0) + (0.5 if i > seam else 0.0)
            uv_key[key] = len(uv_vals)
            uv_vals.append((u, j / ny))
        return uv_key[key]

    counts, idx, uvi = [], [], []
    for side, irange in ((0, range(0, seam)), (1, range(seam, nx))):
        for j in range(ny):
            for i in irange:
                corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
                counts.append(4)
                idx += [vid(a, b) for a, b in corners]
                uvi += [uv(a, b, side) for a, b in corners]
    half = len(counts) // 2
    return ReferenceTopology(
        name=name, rest_points=points, face_vertex_counts=counts, face_vertex_indices=idx,
        uv_values=np.array(uv_vals, np.float32), uv_indices=uvi,
        submeshes=[SubMesh("left", 0, len(points), 0, half, mesh="skin"),
                   SubMesh("right", 0, len(points), half, len(counts), mesh="skin")],
        materials=[MaterialRange("M_Left", 0, half), MaterialRange("M_Right", half, len(counts))],
    )


@pytest.fixture
def quad_topology() -> ReferenceTopology:
    return make_quad_grid()


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ICT_SOURCE = SHARED / "ict-facekit"
ICT_NEUTRAL_MESH = ICT_SOURCE / "FaceXModel" / "generic_neutral_mesh.obj.xz"
MEDIAPIPE_CANONICAL = SHARED / "mediapipe" / "canonical_face_model.obj"
MEDIAPIPE_WITH_IRIS = SHARED / "mediapipe" / "face_model_with_iris.obj"
needs_ict_and_mediapipe = pytest.mark.skipif(not (ICT_NEUTRAL_MESH.is_file() and MEDIAPIPE_WITH_IRIS.is_file()),
                                             reason="needs ../shared/ict-facekit and ../shared/mediapipe")


@pytest.fixture(scope="session")
def ict_neutral() -> ReferenceTopology:
    """ICT's neutral mesh from ../shared as a bare topology (no asset cache)."""
    return ReferenceTopology.from_obj(ICT_NEUTRAL_MESH)


@pytest.fixture(scope="session")
def mediapipe_registration(ict_neutral):
    """MediaPipe's canonical face (with irises) registered to ``ict_neutral``, no learned offsets."""
    from topos_server.assets.correspondence import register_mediapipe

    return register_mediapipe(ict_neutral, MEDIAPIPE_CANONICAL, MEDIAPIPE_WITH_IRIS)


@pytest.fixture(scope="session")
def ict_cache(tmp_path_factory):
    """The default asset cache (filled by .ci/setup); imported into a temporary one only if it is not there."""
    from topos_server.assets.cache import AssetCache
    from topos_server.assets.importing import import_ict

    default = AssetCache.default()
    if default.verify("ict", checksums=False).ok:
        return default
    tmp = AssetCache(tmp_path_factory.mktemp("topos_home"))
    import_ict(ICT_SOURCE, tmp)
    return tmp


@pytest.fixture(scope="session")
def topology():
    """The ICT reference topology from the default asset cache (filled by .ci/setup)."""
    from topos_server.assets.cache import AssetCache

    return AssetCache.default().ict_topology()


@pytest.fixture(scope="session")
def head_model():
    """The ICT head model from the default asset cache."""
    from topos_server.assets.head_model import HeadModel

    return HeadModel.load()


# ---- topos convert inputs ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def weights(topology, tmp_path_factory):
    """The committed checkpoint when there is one, else an untrained tiny model (decodes the mean head)."""
    from topos_server.pipelines.convert import DEFAULT_WEIGHTS

    if (DEFAULT_WEIGHTS / "config.json").is_file():
        return DEFAULT_WEIGHTS
    from topos_server.assets.head_model import HeadModel
    from topos_server.training.vae import TrainingConfig, build_model

    folder = tmp_path_factory.mktemp("vae") / "tiny"
    build_model(TrainingConfig(size="tiny"), HeadModel.load(), topology).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def remeshed_head(topology):
    """The ICT rest head's outer skin, isotropically remeshed, in millimetres and a random pose."""
    from topos_server.data.synthetic_heads import outer_surface, random_rotation
    from topos_server.geometry.retopology import retopologize

    count, triangles = outer_surface(topology)
    rest = topology.rest_points[:count].astype(np.float64)
    op = retopologize("isotropic", rest, triangles, np.random.default_rng(4))
    rotation = random_rotation(np.random.default_rng(5))
    points = 10.0 * op.apply(rest) @ rotation.T + np.array([120.0, -40.0, 300.0])
    return points, op.triangles, rotation


def write_obj(path, points, triangles):
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in points] + [f"f {a} {b} {c}" for a, b, c in triangles + 1]
    path.write_text("\n".join(lines) + "\n")


def convert_with_texture(mesh_file: Path, out: Path, weights, texture_size: int = 256):
    """``topos convert`` through the CLI with an albedo re-bake: (asset path, report); the asset must validate."""
    import json

    from topos_sdk.cli import main
    from topos_sdk.usd import validate_asset

    rc = main(["convert", str(mesh_file), "-o", str(out), "--weights", str(weights),
               "--texture-size", str(texture_size)])
    assert rc == 0
    name = mesh_file.name.rsplit(".", 1)[0]
    asset = out / name / f"{name}.usda"
    assert validate_asset(asset) == []
    report = json.loads((out / f"{name}.conversion.json").read_text())
    assert report["colour"]["texture_size"] == texture_size
    return asset, report


def rebaked_albedo_error(asset: Path, topology, expected_colour, size: int = 256) -> np.ndarray:
    """(K,) mean |albedo − expected| per skin texel, ``expected_colour`` (K, 3) cm on the rest head → sRGB [0, 1]."""
    from topos_server.texture.bake import skin_uv_layout

    from topos_sdk.usd import read_head_asset

    albedo = read_head_asset(asset).textures["albedo"]
    layout = skin_uv_layout(topology, size)
    assert set(albedo.tiles) == {tt.tile for tt in layout.tiles}
    errors = []
    for tt in layout.tiles:
        at_texels = tt.interpolate(np.ascontiguousarray(topology.rest_points.T.astype(np.float64))).T  # (K, 3) cm
        got = albedo.tiles[tt.tile].reshape(-1, 3)[tt.texel] / 255.0
        errors.append(np.abs(got - expected_colour(at_texels)).mean(1))
    return np.concatenate(errors)
