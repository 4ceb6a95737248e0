"""Texture bake on the real ICT topology: synthetic portraits rendered from known textures, and the
astronaut photo with a roughly placed head."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.data import astronaut
from topos_server.texture import bake as texture_bake
from topos_server.texture import face_regions as face_regions_module
from topos_server.texture.bake import bake_textures, skin_uv_layout, vertex_normals
from topos_server.texture.face_openings import INNER_LIP_RING, MARGIN, face_openings
from topos_server.fit.landmark_fit import EYE_LIDS
from topos_server.texture.fill import push_pull
from topos_server.texture.skin_lighting import SkinLighting, linear_to_srgb, srgb8_to_linear, srgb_to_linear

from topos_sdk import Camera, InvalidInputError, ReferenceTopology, TopologyMismatchError
from topos_sdk.raster import perspective_correct, rasterize

SIZE = 512
PHOTO = (512, 512)
ICT_DIR = Path(__file__).resolve().parents[2] / "shared" / "ict-facekit" / "FaceXModel"

# multipie68 landmark indices used to find places on the face independently of the region code
LOWER_LIP_CENTRE, BROW_RIGHT_MIDDLE, JAW_RIGHT_3, NOSE_BASE_RIGHT = 57, 19, 3, 31
MOUTH_CORNERS, INNER_UPPER_LIP, INNER_LOWER_LIP = (48, 54), 62, 66
RIGHT_EYE, LEFT_EYE = np.arange(36, 42), np.arange(42, 48)


@pytest.fixture(scope="module")
def ict() -> ReferenceTopology:
    try:
        from topos_server.assets.cache import AssetCache

        return AssetCache.default().ict_topology()
    except Exception:  # cache not imported on this machine: build from the shared ICT files
        pass
    if not (ICT_DIR / "generic_neutral_mesh.obj.xz").exists():
        pytest.skip("ICT-FaceKit data not available")
    from topos_server.assets.ict_topology import build_ict_topology

    return build_ict_topology(ICT_DIR / "generic_neutral_mesh.obj.xz", ICT_DIR / "vertex_indices.json")


def front_camera(yaw_deg: float = 0.0, distance: float = 60.0, focal: float = 1000.0) -> Camera:
    """Camera on +Z looking at the origin; the head is turned by ``yaw`` (positive: its +X side away)."""
    yaw = np.radians(yaw_deg)
    m = np.eye(4)
    m[:3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
    m[:3, 3] = [0.0, 0.0, -distance]
    return Camera(focal, (PHOTO[0] / 2, PHOTO[1] / 2), PHOTO, m)


def render_photo(topology, camera, albedo_fn, shading_fn=None, background=(0.05, 0.3, 0.08)) -> np.ndarray:
    """Our own forward renderer: z-buffered mesh, perspective-correct UVs → ``albedo_fn(uv) (P, 3)``
    linear colour × ``shading_fn(camera-frame normal (P, 3))`` → (H, W, 3) uint8 sRGB."""
    w, h = camera.image_size
    tri, _ = topology.triangles()
    uv_tri = topology.uv_values[topology.uv_triangles()]
    cam = camera.to_camera(topology.rest_points.astype(np.float64))
    depth = -cam[:, 2]
    triangle_id, bary = rasterize(camera.project(topology.rest_points)[tri], w, h, depth[tri])
    bary = perspective_correct(bary, triangle_id, depth[tri])
    covered = triangle_id >= 0
    t, b = triangle_id[covered], bary[covered].astype(np.float64)
    colour = albedo_fn(np.einsum("pc,pcx->px", b, uv_tri[t]))
    if shading_fn is not None:
        normals = vertex_normals(cam.astype(np.float32), tri)
        n = np.einsum("pc,pcx->px", b, normals[tri[t]])
        colour = colour * shading_fn(n / np.linalg.norm(n, axis=1, keepdims=True))[:, None]
    img = np.empty((h, w, 3))
    img[:] = background
    img[covered] = colour
    return np.clip(np.rint(linear_to_srgb(img) * 255), 0, 255).astype(np.uint8)


def texel_uv(tile: int, size: int) -> np.ndarray:
    """(S, S, 2) UV of every texel centre of a tile."""
    cols, rows = np.meshgrid(np.arange(size), np.arange(size))
    return np.stack([(cols + 0.5) / size + (tile - 1001), 1.0 - (rows + 0.5) / size], axis=-1)


def checker_albedo(uv: np.ndarray) -> np.ndarray:
    """Skin tone with a ±8 % checker (16 squares per tile) and a gentle ramp: linear RGB."""
    base = np.array([0.45, 0.30, 0.22])
    check = ((np.floor(uv[:, 0] * 16) + np.floor(uv[:, 1] * 16)) % 2)[:, None] * 0.16 - 0.08
    return base[None] * (1.0 + check) * (1.0 + 0.08 * np.sin(2 * np.pi * uv[:, 0]))[:, None]


def vertex_uv(topology: ReferenceTopology, vertex: int) -> np.ndarray:
    corner = np.flatnonzero(topology.face_vertex_indices == vertex)[0]
    return topology.uv_values[topology.uv_indices[corner]]


def sample_tile(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    size = img.shape[0]
    col = int(np.clip((uv[0] % 1.0) * size, 0, size - 1))
    row = int(np.clip((1.0 - uv[1]) * size, 0, size - 1))
    return img[row, col]


@pytest.fixture(scope="module")
def checker_bake(ict):
    camera = front_camera(yaw_deg=15)
    photo = render_photo(ict, camera, checker_albedo)
    diagnostics = {}
    maps = bake_textures(photo, ict.rest_points, camera, ict, SIZE, diagnostics=diagnostics)
    return photo, camera, maps, diagnostics


# ---- albedo -------------------------------------------------------------------------------------

def test_baked_albedo_recovers_the_known_texture_where_seen(ict, checker_bake):
    _, _, maps, diagnostics = checker_bake
    albedo = maps["albedo"]
    assert albedo.color_space == "sRGB" and sorted(albedo.tiles) == [1001, 1002]
    for tile, img in albedo.tiles.items():
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        truth = linear_to_srgb(checker_albedo(texel_uv(tile, SIZE).reshape(-1, 2))).reshape(SIZE, SIZE, 3)
        seen = diagnostics["direct_weight"][tile] > 0.99
        error = np.abs(img / 255.0 - truth)[seen]
        assert seen.sum() > 2000
        assert error.mean() < 0.025 and np.percentile(error, 95) < 0.06, (tile, error.mean())
        # the checker itself comes back (not just the mean colour)
        baked_lum, true_lum = img[seen].mean(axis=1), truth[seen].mean(axis=1)
        assert np.corrcoef(baked_lum, true_lum)[0, 1] > 0.8
    # a 15° view sees most of the face tile directly
    island = skin_uv_layout(ict, SIZE).tiles[0].island
    assert (diagnostics["direct_weight"][1001] > 0.5).sum() > 0.4 * island.sum()


def test_no_texel_is_left_unfilled(checker_bake):
    """Every texel of every tile (islands and the background between them) holds a colour of the
    skin texture: none at the fill value, none black, none NaN."""
    _, _, maps, diagnostics = checker_bake
    lo = linear_to_srgb(np.array([0.45, 0.30, 0.22]) * 0.92 * 0.92) * 255
    hi = linear_to_srgb(np.array([0.45, 0.30, 0.22]) * 1.08 * 1.08) * 255
    for tile, img in maps["albedo"].tiles.items():
        # (± a little for de-lighting: the checker's ramp looks a bit like light to the fit)
        assert (img >= np.floor(lo) - 15).all() and (img <= np.ceil(hi) + 15).all(), tile
        assert np.isfinite(diagnostics["albedo_linear"][tile]).all()
        # the back of the head is unseen in a frontal photo and still filled
        unseen = diagnostics["coverage"][tile] == 0
        assert unseen.any()


def test_unseen_side_is_filled_from_its_mirror(ict):
    """Left half of the skin light, right half 2.5× darker (same hue); turn the head so its right
    (+X, u > 0.5) side is mostly hidden: those texels come back light, from the seen mirror side,
    while what the photo did see of the right side stays dark."""
    light = np.array([0.6, 0.42, 0.33])
    dark = 0.4 * light

    def sided(uv):
        return np.where((uv[:, 0] % 1.0 < 0.5)[:, None], light, dark)

    camera = front_camera(yaw_deg=35)
    photo = render_photo(ict, camera, sided)
    diagnostics = {}
    maps = bake_textures(photo, ict.rest_points, camera, ict, SIZE, diagnostics=diagnostics)
    green = maps["albedo"].tiles[1001][..., 1].astype(float)
    light_g, dark_g = (linear_to_srgb(c[1]) * 255 for c in (light, dark))
    u = texel_uv(1001, SIZE)[..., 0]
    direct = diagnostics["direct_weight"][1001]
    mirrored = (u > 0.55) & (direct == 0) & (diagnostics["coverage"][1001] > 0.99)
    assert mirrored.sum() > 0.1 * SIZE * SIZE
    assert (np.abs(green[mirrored] - light_g) < 8).mean() > 0.98  # the mirror's colour, not a blend
    seen_dark = (u > 0.55) & (direct > 0.99)
    assert seen_dark.sum() > 500
    assert (np.abs(green[seen_dark] - dark_g) < 8).mean() > 0.95


ASYMMETRY_SIZE = 256
ASYMMETRIC_SKIN = np.array([0.55, 0.38, 0.30])


def asymmetric_skin(uv: np.ndarray) -> np.ndarray:
    """Skin whose +X half (u > 0.5) is ruddier and darker than the other: a smooth step at the midline."""
    side = np.tanh((uv[:, 0] % 1.0 - 0.5) / 0.03)[:, None]
    return ASYMMETRIC_SKIN[None] * (1.0 + side * np.array([0.05, -0.15, -0.15])[None])


def side_light(n: np.ndarray) -> np.ndarray:
    return np.maximum(0.15, 0.6 + 0.4 * n[:, 0] + 0.1 * n[:, 1] + 0.2 * n[:, 2])


@pytest.fixture(scope="module")
def asymmetric_bakes(ict):
    """The asymmetric skin lit from one side, the head turned 20° so most of its +X cheek is hidden; baked
    with the seen asymmetry carried over to the mirror side, without (the default), and with the mirror side
    left out (the direct view alone)."""
    camera = front_camera(yaw_deg=20)
    photo = render_photo(ict, camera, asymmetric_skin, side_light)
    blend_views = texture_bake._blend_views

    def direct_only(tt, direct, need, mirrored, *args):
        mirrored.weight = np.zeros_like(mirrored.weight)
        return blend_views(tt, direct, need, mirrored, *args)

    bakes = {}
    for name, asymmetry, blend in (("corrected", True, blend_views), ("uncorrected", False, blend_views),
                                   ("direct_only", True, direct_only)):
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setattr(texture_bake, "_blend_views", blend)
            bakes[name] = {}
            bake_textures(photo, ict.rest_points, camera, ict, ASYMMETRY_SIZE, mirror_asymmetry=asymmetry,
                          diagnostics=bakes[name])
    assert bakes["uncorrected"]["mirror_asymmetry"] is False  # the default
    return bakes


def test_hidden_cheek_keeps_the_seen_asymmetry(asymmetric_bakes):
    """What the fill copies from the seen cheek gets the left/right difference seen where both halves show:
    the hidden cheek comes back closer to its own (ruddier, darker) skin than to the mirror's."""
    truth = asymmetric_skin(texel_uv(1001, ASYMMETRY_SIZE).reshape(-1, 2)).T.reshape(3, ASYMMETRY_SIZE, ASYMMETRY_SIZE)
    corrected = asymmetric_bakes["corrected"]
    direct, coverage = corrected["direct_weight"][1001], corrected["coverage"][1001]
    seen, hidden = direct > 0.99, (direct == 0) & (coverage > 0.99)  # (S, S) each
    assert hidden.sum() > 0.1 * seen.sum()
    errors = {}
    for name in ("corrected", "uncorrected"):
        albedo = asymmetric_bakes[name]["albedo_linear"][1001]  # (3, S, S)
        gain = np.median(truth[:, seen], axis=1) / np.median(albedo[:, seen], axis=1)  # the exposure is unknowable
        errors[name] = float(np.abs(albedo * gain[:, None, None] - truth)[:, hidden].mean())
    assert errors["corrected"] < 0.85 * errors["uncorrected"], errors
    untouched = asymmetric_bakes["uncorrected"]["albedo_linear"][1001][:, seen]
    np.testing.assert_allclose(corrected["albedo_linear"][1001][:, seen], untouched, atol=0.01)


def test_bake_fill_is_the_bakes_fill(ict, asymmetric_bakes):
    """``texture_pairs.bake_fill`` (training and bench/texture_eval.py) given the bake's direct view fills as
    the bake does, with and without the asymmetry carried over."""
    from topos_server.data.texture_pairs import bake_fill

    direct_only = asymmetric_bakes["direct_only"]
    observed, weight = direct_only["observed_albedo_linear"][1001], direct_only["direct_weight"][1001]
    fill, _ = bake_fill(observed, weight, ict, mirror_asymmetry=True)
    uncorrected_fill, _ = bake_fill(observed, weight, ict)
    bake, uncorrected_bake = (asymmetric_bakes[name]["albedo_linear"][1001] for name in ("corrected", "uncorrected"))
    coverage = asymmetric_bakes["corrected"]["coverage"][1001]
    hidden = (weight == 0) & (coverage > 0.99)
    assert np.abs(fill - bake).mean() < 0.002 and np.abs(uncorrected_fill - uncorrected_bake).mean() < 0.002
    assert np.abs(fill - bake)[:, hidden].mean() < 0.001
    shift, bake_shift = fill - uncorrected_fill, bake - uncorrected_bake
    assert np.abs(bake_shift)[:, hidden].mean() > 0.01  # the asymmetry moved the hidden cheek ...
    assert np.abs(shift - bake_shift)[:, hidden].mean() < 0.001  # ... in both the same way


# ---- lighting -----------------------------------------------------------------------------------

def key_light(n: np.ndarray) -> np.ndarray:
    """Known smooth lighting (camera frame): key from the right (+X), some from above and the front."""
    return np.maximum(0.15, 0.55 + 0.45 * n[:, 0] + 0.2 * n[:, 1] + 0.25 * n[:, 2])


@pytest.fixture(scope="module")
def shaded_bake(ict):
    skin = np.array([0.55, 0.38, 0.30])
    camera = front_camera(yaw_deg=0)
    photo = render_photo(ict, camera, lambda uv: np.repeat(skin[None], len(uv), axis=0), key_light)
    diagnostics = {}
    maps = bake_textures(photo, ict.rest_points, camera, ict, SIZE, diagnostics=diagnostics)
    return photo, camera, maps, diagnostics, skin


def test_lighting_removal_flattens_a_shading_gradient(ict, shaded_bake, monkeypatch):
    photo, camera, maps, diagnostics, skin = shaded_bake
    lighting = diagnostics["lighting"]
    c = lighting.coefficients
    assert lighting.order == 2 and c[1] > 0.2 and c[1] > c[2] > 0  # key from +X, fill from above

    monkeypatch.setattr(texture_bake, "fit_skin_lighting", lambda *a, **k: SkinLighting.flat())
    flat_diag = {}
    bake_textures(photo, ict.rest_points, camera, ict, SIZE, diagnostics=flat_diag)

    seen = (diagnostics["direct_weight"][1001] > 0.99) & (flat_diag["direct_weight"][1001] > 0.99)
    delit = diagnostics["albedo_linear"][1001][:, seen]  # (3, P)
    shaded = flat_diag["albedo_linear"][1001][:, seen]
    spread = lambda x: np.std(x.mean(axis=0)) / np.mean(x.mean(axis=0))  # noqa: E731
    assert spread(delit) < 0.4 * spread(shaded), (spread(delit), spread(shaded))
    # colour balance kept: the albedo's chromaticity is the skin's
    chroma = delit.mean(axis=1) / delit.mean(axis=1).sum()
    np.testing.assert_allclose(chroma, skin / skin.sum(), atol=0.01)


def test_background_seen_past_a_too_wide_mesh_stays_out(ict, monkeypatch):
    """The mesh baked is 8 % wider than the head in the photo: its cheek sides land on a blue
    background. Grazing texels that do not look like skin are dropped and the blue does not spread
    into the fill (without the skin-colour check, a third of the face tile turns blue)."""
    skin = np.array([0.55, 0.38, 0.30])
    camera = front_camera(yaw_deg=0)
    photo = render_photo(ict, camera, lambda uv: np.repeat(skin[None], len(uv), axis=0), key_light,
                         background=(0.1, 0.2, 0.8))
    wide = ict.rest_points * np.array([1.08, 1.0, 1.0], np.float32)

    def blue_fraction(maps):
        return {tile: float((img[..., 2].astype(int) > img[..., 0]).mean())
                for tile, img in maps["albedo"].tiles.items()}

    checked = blue_fraction(bake_textures(photo, wide, camera, ict, SIZE))
    assert max(checked.values()) < 0.01, checked
    monkeypatch.setattr(texture_bake, "fit_skin_colour", lambda *a, **k: None)
    unchecked = blue_fraction(bake_textures(photo, wide, camera, ict, SIZE))
    assert min(unchecked.values()) > 0.1, unchecked  # the scene does put background under the mesh


# ---- normal and roughness maps ------------------------------------------------------------------

def decode_normals(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / 127.5 - 1.0


def tilt_degrees(n: np.ndarray) -> np.ndarray:
    """Angle from the flat (0, 0, 1) normal (from x, y: z is too coarsely quantised near 1)."""
    return np.degrees(np.arctan2(np.hypot(n[..., 0], n[..., 1]), n[..., 2]))


def test_normal_map_is_unit_length_and_flat_without_detail(ict, shaded_bake, checker_bake):
    layout = skin_uv_layout(ict, SIZE)
    for name, bake in (("shaded", shaded_bake), ("checker", checker_bake)):
        normal = bake[2]["normal"]
        assert normal.color_space == "raw" and sorted(normal.tiles) == [1001, 1002]
        for tt in layout.tiles:
            img = normal.tiles[tt.tile]
            assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
            n = decode_normals(img)
            np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=0.015)
            assert (img[~tt.island] == (128, 128, 255)).all()  # background: flat
            tilt = tilt_degrees(n)
            assert tilt.max() < 21.5  # gentle: at most MAX_TILT_DEGREES (+ quantisation)
            if name == "shaded":  # a constant albedo has no detail: flat (smooth shading is not detail)
                assert (tilt[tt.island] < 3.0).mean() > 0.98, tt.tile
    # the checker's edges show up as gentle detail where the photo saw them
    tilt = tilt_degrees(decode_normals(checker_bake[2]["normal"].tiles[1001]))
    assert (tilt > 1.0).sum() > 1000


def test_roughness_follows_region_priors(ict, checker_bake):
    roughness = checker_bake[2]["roughness"]
    assert roughness.color_space == "raw" and sorted(roughness.tiles) == [1001, 1002]
    face = roughness.tiles[1001]
    assert face.shape == (SIZE, SIZE, 1) and face.dtype == np.uint8
    values = np.concatenate([t.ravel() for t in roughness.tiles.values()]) / 255.0
    assert values.min() >= 0.3 and values.max() <= 0.75
    lm = ict.landmarks["multipie68"].vertices[:, 0]
    rest = ict.rest_points
    cheek_point = 0.5 * (rest[lm[JAW_RIGHT_3]] + rest[lm[NOSE_BASE_RIGHT]])
    cheek = int(np.argmin(np.linalg.norm(rest[:9409] - cheek_point, axis=1)))
    lip = sample_tile(face, vertex_uv(ict, lm[LOWER_LIP_CENTRE]))[0] / 255.0
    brow = sample_tile(face, vertex_uv(ict, lm[BROW_RIGHT_MIDDLE]))[0] / 255.0
    skin = sample_tile(face, vertex_uv(ict, cheek))[0] / 255.0
    assert lip < skin - 0.1 < brow - 0.15, (lip, skin, brow)
    assert 0.5 <= skin <= 0.6


# ---- determinism, other topologies, bad input ---------------------------------------------------

def test_bake_is_deterministic(ict, checker_bake):
    photo, camera, maps, _ = checker_bake
    texture_bake._LAYOUTS.clear()  # recompute everything, caches included
    face_regions_module._CACHE.clear()
    again = bake_textures(photo, ict.rest_points, camera, ict, SIZE)
    assert again.keys() == maps.keys()
    for name in maps:
        assert again[name] == maps[name], name


def test_uv_layout_disk_cache_reads_back_identically(ict, tmp_path, monkeypatch):
    monkeypatch.setattr(texture_bake, "_layout_cache_dir", lambda: tmp_path)
    monkeypatch.setattr(texture_bake, "_LAYOUTS", type(texture_bake._LAYOUTS)())
    fresh = skin_uv_layout(ict, 128)  # rasterised, then written
    files = list(tmp_path.glob("uv-layout-128-*.npz"))
    assert len(files) == 1
    texture_bake._LAYOUTS.clear()
    from_disk = skin_uv_layout(ict, 128)
    # a damaged cache file is rebuilt, not trusted (it is replaced, not overwritten in place: like every
    # writer of the cache, since a process may hold the previous file as a memory map)
    files[0].unlink()
    files[0].write_bytes(b"not an npz")
    texture_bake._LAYOUTS.clear()
    rebuilt = skin_uv_layout(ict, 128)
    for other in (from_disk, rebuilt):
        assert other is not fresh
        for a, b in zip(fresh.tiles, other.tiles):
            for field in ("texel", "triangle", "corners", "barycentric", "vertex_sample"):
                assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert files[0].read_bytes()[:2] == b"PK"  # rewritten


def test_bake_cache_keeps_to_its_budget_least_recently_used_first(tmp_path, monkeypatch):
    """Writing past the budget removes the files used longest ago (a read counts as a use), never the one just
    written; a removed file is simply missing (rebuilt by whoever needs it)."""
    import os

    from topos_server.texture.disk_cache import keep_within_budget, load_arrays, save_arrays

    monkeypatch.setenv("TOPOS_BAKE_CACHE_MB", "3.5")
    megabyte = np.zeros(2**20 // 4, np.float32)  # 1 MiB
    paths = [tmp_path / f"entry-{i}.npz" for i in range(3)]
    for age, path in zip((300, 200, 100), paths):  # entry-0 used longest ago
        save_arrays(path, {"a": megabyte})
        os.utime(path, (path.stat().st_atime - age,) * 2)
    assert load_arrays(paths[0], ["a"]) is not None  # entry-0 used just now: entry-1 is now the oldest
    save_arrays(tmp_path / "entry-3.npz", {"a": megabyte})  # 4 MiB > 3.5: the oldest goes
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["entry-0.npz", "entry-2.npz", "entry-3.npz"]
    assert load_arrays(paths[1], ["a"]) is None
    assert keep_within_budget(tmp_path, keep=tmp_path / "entry-3.npz", budget_mb=0) == [paths[2], paths[0]]
    assert [p.name for p in tmp_path.glob("*.npz")] == ["entry-3.npz"]


def test_bake_cache_budget_that_is_not_a_size_is_logged_and_the_default_used(tmp_path, monkeypatch, caplog):
    from topos_server.texture.disk_cache import keep_within_budget, save_arrays

    save_arrays(tmp_path / "entry.npz", {"a": np.zeros(16, np.float32)})
    for value in ("lots", "-5", "nan"):
        monkeypatch.setenv("TOPOS_BAKE_CACHE_MB", value)
        with caplog.at_level("WARNING", logger="topos_server.texture.disk_cache"):
            assert keep_within_budget(tmp_path) == []  # the default 1 GiB: nothing goes
        assert f"TOPOS_BAKE_CACHE_MB={value!r} is not a size in MB" in caplog.text
    assert (tmp_path / "entry.npz").is_file()


def test_any_topology_with_named_materials(quad_topology):
    """The procedural quad grid (no landmarks, no symmetry): its own materials, one tile, no holes."""
    m = np.eye(4)
    m[:3, 3] = [0.0, 0.0, -6.0]
    camera = Camera(300.0, (64, 64), (128, 128), m)
    ramp = np.zeros((128, 128, 3), np.uint8)
    ramp[..., 0] = np.linspace(60, 200, 128).astype(np.uint8)[None, :]
    ramp[..., 1] = 120
    ramp[..., 2] = np.linspace(200, 60, 128).astype(np.uint8)[:, None]
    maps = bake_textures(ramp, quad_topology.rest_points, camera, quad_topology, 64, materials=("M_Left", "M_Right"))
    albedo = maps["albedo"].tiles
    assert sorted(albedo) == [1001]
    img = albedo[1001].astype(int)
    assert img.shape == (64, 64, 3)
    assert (img[..., 0] >= 50).all() and (img[..., 0] <= 210).all() and (img[..., 2] >= 50).all()
    assert img[..., 0].std() > 10  # the ramp came through
    assert (maps["roughness"].tiles[1001] == np.rint(0.55 * 255)).all()  # no landmarks: plain skin


@pytest.mark.parametrize("bad, error", [
    (dict(image=np.zeros((64, 64), np.uint8)), InvalidInputError),
    (dict(image=np.zeros((64, 64, 3), np.float32)), InvalidInputError),
    (dict(points=np.zeros((10, 3), np.float32)), TopologyMismatchError),
    (dict(points="nan"), InvalidInputError),
    (dict(size=8), InvalidInputError),
    (dict(size=1024.0), InvalidInputError),
    (dict(size=True), InvalidInputError),
    (dict(camera="not a camera"), InvalidInputError),
    (dict(materials=("M_Nope",)), InvalidInputError),
    (dict(landmarks=np.zeros((68, 2))), InvalidInputError),
    (dict(landmarks=np.zeros((478, 4))), InvalidInputError),
    (dict(landmarks=np.full((478, 3), np.nan)), InvalidInputError),
    (dict(landmarks="not points"), InvalidInputError),
])
def test_bad_input_gives_one_clear_error(ict, bad, error):
    args = dict(image=np.zeros((64, 64, 3), np.uint8), points=ict.rest_points, camera=front_camera(),
                topology=ict, size=64)
    args.update(bad)
    if isinstance(args["points"], str):
        args["points"] = ict.rest_points.copy()
        args["points"][5, 1] = np.nan
    with pytest.raises(error) as info:
        bake_textures(**args)
    assert "\n" not in str(info.value)


def test_head_out_of_view_is_a_clear_error(ict):
    m = np.eye(4)
    m[:3, 3] = [0.0, 0.0, 60.0]  # the head is behind the camera
    with pytest.raises(InvalidInputError, match="no skin texel is visible"):
        bake_textures(np.full((64, 64, 3), 128, np.uint8), ict.rest_points, Camera(100.0, (32, 32), (64, 64), m), ict, 64)


def test_a_tile_the_photo_does_not_see_at_all(ict):
    """A close-up of the middle of the face: the back of the head (tile 1002) is seen neither directly
    nor through its mirror, so its per-texel sets are empty; they go through every step (this used to
    fail with "cannot reshape array of size 0")."""
    camera = front_camera(focal=6000.0)
    diagnostics = {}
    maps = bake_textures(render_photo(ict, camera, checker_albedo), ict.rest_points, camera, ict, 64,
                         diagnostics=diagnostics)
    assert (diagnostics["coverage"][1002] == 0).all() and (diagnostics["coverage"][1001] > 0).any()
    assert maps["albedo"].tiles[1002].shape == (64, 64, 3)
    tt = skin_uv_layout(ict, 64).tiles[0]
    nothing = np.zeros(0, np.int32)
    assert (tt.image(np.zeros((3, 0), np.float32), fill=0.5, rows=nothing) == 0.5).all()
    assert tt.image(np.zeros(0, np.float32), rows=nothing).shape == (64, 64)
    assert tt.interpolate(np.ones((2, ict.num_points), np.float32), nothing).shape == (2, 0)


def test_photo_at_another_resolution_than_the_camera(ict, checker_bake):
    """The camera was fitted on a 512² image; baking from the same photo at 1024² gives the same albedo."""
    photo, camera, maps, diagnostics = checker_bake
    import cv2

    large = cv2.resize(photo, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    again = bake_textures(large, ict.rest_points, camera, ict, SIZE)
    seen = diagnostics["direct_weight"][1001] > 0.99
    difference = np.abs(again["albedo"].tiles[1001].astype(int) - maps["albedo"].tiles[1001])[seen]
    assert difference.mean() < 3


# ---- real photo ---------------------------------------------------------------------------------

def test_astronaut_with_a_roughly_placed_head(ict):
    """The neutral head placed over the face box (~x 180–300, y 60–230 px) of the astronaut."""
    image = astronaut()
    focal, distance = 1000.0, 1000.0 * 14.7 / 120  # ~120 px between the jaw corners
    m = np.eye(4)
    m[:3, 3] = [(240 - 256) * distance / focal, (256 - 145) * distance / focal, -distance]
    camera = Camera(focal, (256, 256), (512, 512), m)
    xy = camera.project(ict.landmarks["multipie68"].evaluate(ict.rest_points))
    assert 170 < xy[:, 0].min() and xy[:, 0].max() < 310 and 60 < xy[:, 1].min() and xy[:, 1].max() < 230

    diagnostics = {}
    maps = bake_textures(image, ict.rest_points, camera, ict, SIZE, diagnostics=diagnostics)
    assert set(maps) == {"albedo", "normal", "roughness"}
    for name, texture in maps.items():
        assert sorted(texture.tiles) == [1001, 1002], name
    layout = skin_uv_layout(ict, SIZE)
    for tt in layout.tiles:
        albedo = maps["albedo"].tiles[tt.tile]
        assert np.isfinite(diagnostics["albedo_linear"][tt.tile]).all()
        assert albedo.std() > 10  # not constant
        assert albedo[~tt.island].std() > 2  # the background between islands is extended, not one colour
        # no hole: no texel far from all its neighbours (a left-over fill value would be)
        neighbours = np.stack([np.roll(albedo, s, axis=a) for a in (0, 1) for s in (-2, 2)])  # (4, S, S, 3)
        blurred = np.median(neighbours, axis=0)
        assert (np.abs(albedo.astype(int) - blurred).max(axis=-1) > 120).mean() < 1e-3
    face = maps["albedo"].tiles[1001]
    seen = diagnostics["direct_weight"][1001] > 0.99
    assert seen.sum() > 0.2 * SIZE * SIZE
    # the face skin in the photo is warm: so is what was baked from it
    assert face[seen][:, 0].mean() > face[seen][:, 2].mean() + 20


# ---- the photo's mouth and eye openings (landmarks) --------------------------------------------

def ellipse(centre: np.ndarray, radii: np.ndarray, count: int) -> np.ndarray:
    """(count, 2) points around an ellipse, in order."""
    angle = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
    return centre + radii * np.stack([np.cos(angle), np.sin(angle)], axis=1)


@pytest.fixture(scope="module")
def smile(ict):
    """A plain-skin photo of the closed-mouth head with a bright "teeth" patch painted over its lips, and
    478 landmarks whose inner-lip ring is that patch's outline (the photo opens the mouth wider than the
    mesh does: the lip texels look at teeth). Returns (photo, camera, landmarks, the patch's centre and radii)."""
    skin = np.array([0.55, 0.38, 0.30])
    camera = front_camera()
    photo = render_photo(ict, camera, lambda uv: np.repeat(skin[None], len(uv), axis=0))
    multipie = camera.project(ict.landmarks["multipie68"].evaluate(ict.rest_points))  # (68, 2) px
    corners = multipie[list(MOUTH_CORNERS)]
    centre = np.array([corners[:, 0].mean(), 0.5 * (multipie[INNER_UPPER_LIP, 1] + multipie[INNER_LOWER_LIP, 1])])
    radii = np.array([0.35 * np.ptp(corners[:, 0]), multipie[LOWER_LIP_CENTRE, 1] - centre[1]])
    # the landmarks: spread over the face (its size sets the mask's margin), the openings where they belong
    landmarks = np.zeros((478, 3))
    landmarks[:, :2] = ellipse(multipie.mean(axis=0), 0.5 * np.ptp(multipie, axis=0), 478)
    landmarks[INNER_LIP_RING, :2] = ellipse(centre, radii, len(INNER_LIP_RING))
    for lids, eye in zip(EYE_LIDS, (RIGHT_EYE, LEFT_EYE)):
        landmarks[lids, :2] = ellipse(multipie[eye].mean(axis=0), 0.5 * np.ptp(multipie[eye], axis=0), len(lids))
    rows, cols = np.mgrid[0:PHOTO[1], 0:PHOTO[0]] + 0.5
    inside = ((cols - centre[0]) / radii[0]) ** 2 + ((rows - centre[1]) / radii[1]) ** 2 < 1.0
    photo[inside] = (245, 245, 240)
    return photo, camera, landmarks, centre, radii


def texels_looking_at_the_patch(ict, camera, centre, radii, shrink: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the face tile's texels whose surface point projects well inside the patch (any
    visibility: the caller keeps those the photo saw)."""
    tt = next(t for t in skin_uv_layout(ict, SIZE).tiles if t.tile == 1001)
    xy = tt.interpolate(np.ascontiguousarray(camera.project(ict.rest_points).T, np.float32))  # (2, K) px
    inside = ((xy[0] - centre[0]) / radii[0]) ** 2 + ((xy[1] - centre[1]) / radii[1]) ** 2 < shrink ** 2
    texel = tt.texel[inside]
    return texel // SIZE, texel % SIZE


def test_landmarks_keep_teeth_off_the_lips(ict, smile):
    """Without landmarks the lip texels under the patch bake teeth-white (the skin-colour test leaves
    texels seen face-on alone); with them those texels lose their weight, directly and through their
    mirror (the patch is symmetric), and the fill gives them the skin around."""
    photo, camera, landmarks, centre, radii = smile
    skin = linear_to_srgb(np.array([0.55, 0.38, 0.30])) * 255
    plain, masked = {}, {}
    plain_maps = bake_textures(photo, ict.rest_points, camera, ict, SIZE, diagnostics=plain)
    masked_maps = bake_textures(photo, ict.rest_points, camera, ict, SIZE, landmarks=landmarks, diagnostics=masked)
    rows, cols = texels_looking_at_the_patch(ict, camera, centre, radii)
    seen = plain["direct_weight"][1001][rows, cols] > 0.99
    rows, cols = rows[seen], cols[seen]
    assert rows.size > 300  # lip texels the photo sees face-on
    before = plain_maps["albedo"].tiles[1001][rows, cols].astype(float)  # (P, 3) sRGB
    after = masked_maps["albedo"].tiles[1001][rows, cols].astype(float)
    assert (before.min(axis=1) > 200).mean() > 0.9  # teeth on the lips
    assert (np.abs(after - skin).max(axis=1) < 12).mean() > 0.98, np.abs(after - skin).max(axis=1).mean()
    assert (masked["coverage"][1001][rows, cols] == 0).all()  # neither the texel nor its mirror point counts
    # the rest of the face is the same bake (the masks end a few pixels outside the openings)
    far = (plain["direct_weight"][1001] > 0.99) & (masked["direct_weight"][1001] > 0.99)
    difference = np.abs(plain_maps["albedo"].tiles[1001].astype(int) - masked_maps["albedo"].tiles[1001])[far]
    assert (difference.max(axis=1) <= 2).mean() > 0.99


def test_landmarks_of_the_fitted_image_on_a_larger_photo(ict, smile):
    """The landmarks refer to the image the camera was fitted on (512²); the photo baked is twice as large:
    the mask is scaled with it and still covers the teeth."""
    import cv2

    photo, camera, landmarks, centre, radii = smile
    large = cv2.resize(photo, (2 * PHOTO[0], 2 * PHOTO[1]), interpolation=cv2.INTER_LINEAR)
    diagnostics = {}
    maps = bake_textures(large, ict.rest_points, camera, ict, SIZE, landmarks=landmarks[:, :2], diagnostics=diagnostics)
    rows, cols = texels_looking_at_the_patch(ict, camera, centre, radii)
    assert (diagnostics["coverage"][1001][rows, cols] == 0).all()
    assert (maps["albedo"].tiles[1001][rows, cols].min(axis=1) < 200).all()


def test_openings_away_from_the_face_change_nothing(ict, checker_bake):
    """Landmarks whose openings lie where no texel looks give the bake without landmarks, bit for bit (the
    clothing mask, which would take everything below such a "face" that is not skin-coloured, is off)."""
    photo, camera, maps, _ = checker_bake
    landmarks = ellipse(np.array([30.0, 30.0]), np.array([20.0, 12.0]), 478)  # the photo's top-left corner
    assert face_openings(landmarks, PHOTO, PHOTO).keep.min() == 0.0
    again = bake_textures(photo, ict.rest_points, camera, ict, SIZE, landmarks=landmarks, clothing=False)
    for name in maps:
        assert again[name] == maps[name], name


def test_openings_mask_is_soft_and_grows_with_the_face():
    """0 inside the mouth ring, 1 from twice the margin outside it, in between over a few pixels; at twice the
    face size the mask's edge reaches twice as far."""
    for scale in (1.0, 2.0):
        landmarks = ellipse(np.array([256.0, 256.0]), scale * np.array([100.0, 120.0]), 478)
        landmarks[INNER_LIP_RING] = ellipse(np.array([256.0, 300.0]), scale * np.array([30.0, 10.0]), 20)
        for lids, side in zip(EYE_LIDS, (-1, 1)):
            landmarks[lids] = ellipse(np.array([256.0 + side * 40 * scale, 200.0]), scale * np.array([15.0, 5.0]), 16)
        openings = face_openings(landmarks, (1024, 1024), (1024, 1024))
        x = np.arange(256.0, 256.0 + scale * 60) + 0.5
        keep = openings.weight_at(np.stack([x, np.full_like(x, 300.5)]))  # along the mouth's long axis
        assert keep[0] == 0.0 and keep[-1] == 1.0 and (np.diff(keep) >= 0).all()
        soft = x[(keep > 0) & (keep < 1)] - 256.0  # px from the mouth's centre where the edge is soft
        margin = MARGIN * 2 * np.hypot(100, 120) * scale  # × the face's diagonal
        assert soft.size >= 2 * scale and soft.min() > 30 * scale - 1
        assert soft.max() < 30 * scale + 2 * margin + 1


# ---- the hair above the brows (landmarks + the portrait's colours) -------------------------------

HAIR_SKIN, HAIR = np.array([0.55, 0.38, 0.30]), np.array([0.07, 0.045, 0.03])  # linear RGB


@pytest.fixture(scope="module")
def fringe(ict):
    """A plain-skin photo of the head with dark "hair" painted over it from just above the brows up (a fringe and
    the hair above it), its true FaceMesh landmarks, and the same photo without hair."""
    from topos_server.texture.face_openings import EYE_CORNERS
    from topos_server.texture.hair_mask import BROWS

    camera = front_camera()
    bare = render_photo(ict, camera, lambda uv: np.repeat(HAIR_SKIN[None], len(uv), axis=0))
    landmarks = camera.project(ict.landmarks["mediapipe"].evaluate(ict.rest_points))  # (478, 2) px
    iod = float(np.linalg.norm(landmarks[EYE_CORNERS[0]] - landmarks[EYE_CORNERS[1]]))
    fringe_bottom = landmarks[BROWS, 1].min() - 0.2 * iod  # image rows grow downwards
    photo = bare.copy()
    head = np.any(bare != bare[0, 0], axis=2)  # not the background
    rows = np.arange(PHOTO[1])[:, None]
    photo[head & (rows < fringe_bottom)] = np.rint(linear_to_srgb(HAIR) * 255).astype(np.uint8)
    return photo, bare, camera, landmarks, fringe_bottom


def test_hair_mask_takes_the_fringe_and_keeps_the_brows_and_skin(ict, fringe):
    from topos_server.texture.hair_mask import BROWS, hair_mask

    photo, bare, camera, landmarks, fringe_bottom = fringe
    planes = [srgb8_to_linear(photo[:, :, c]) for c in range(3)]
    mask = hair_mask(planes, landmarks, camera.image_size)
    assert mask is not None
    centre_x = landmarks[BROWS, 0].mean()
    above = np.array([[centre_x + dx, fringe_bottom - dy] for dx in (-30, 0, 30) for dy in (8, 20, 40)]).T
    assert mask.weight_at(above).max() == 0.0  # on the hair: no weight at all (not even a little for the fill)
    skin = np.concatenate([landmarks[list(BROWS)] + (0.0, 3.0), landmarks[[205, 425, 1, 152]]]).T  # brows, cheeks…
    assert mask.weight_at(skin).min() == 1.0
    # a head whose "hair" is its skin (a bald one): nothing to tell apart, no mask
    assert hair_mask([srgb8_to_linear(bare[:, :, c]) for c in range(3)], landmarks, camera.image_size) is None


def test_the_bake_fills_the_forehead_with_skin_not_hair(ict, fringe):
    """With the mask, the forehead texels that saw the fringe are filled with the skin around them; without it
    they keep the hair. Without hair in the photo the mask changes nothing, bit for bit."""
    photo, bare, camera, landmarks, _ = fringe
    regions = face_regions_module.face_regions(ict)
    tt = next(t for t in skin_uv_layout(ict, SIZE).tiles if t.tile == 1001)
    forehead = tt.image(tt.interpolate(regions.get("forehead", ict.num_points)[None])[0]) > 0.5
    skin = linear_to_srgb(HAIR_SKIN) * 255
    error = {}
    for with_hair in (False, True):
        albedo = bake_textures(photo, ict.rest_points, camera, ict, SIZE, landmarks=landmarks, hair=with_hair)
        error[with_hair] = np.abs(albedo["albedo"].tiles[1001][forehead].astype(float) - skin).mean()
    assert error[False] > 40.0 and error[True] < 0.15 * error[False], error
    plain = [bake_textures(bare, ict.rest_points, camera, ict, SIZE, landmarks=landmarks, hair=with_hair)
             for with_hair in (False, True)]
    for name in plain[0]:
        assert plain[0][name] == plain[1][name], name


# ---- clothing around the neck (landmarks + the portrait's skin colour) ---------------------------

SHIRT = np.array([0.75, 0.76, 0.78])  # linear RGB: a white collar, brighter than the lit skin and grey


@pytest.fixture(scope="module")
def collar(ict):
    """A plain-skin photo of the head with a white collar painted over the neck (outside the face oval, from a
    little below the chin down), its true FaceMesh landmarks, the same photo without the collar, and the row where
    the collar starts."""
    from topos_server.fit.landmark_fit import FACE_OVAL
    from topos_server.texture.clothing_mask import CHIN
    from topos_server.texture.face_openings import EYE_CORNERS

    camera = front_camera()
    bare = render_photo(ict, camera, lambda uv: np.repeat(HAIR_SKIN[None], len(uv), axis=0))
    landmarks = camera.project(ict.landmarks["mediapipe"].evaluate(ict.rest_points))  # (478, 2) px
    iod = float(np.linalg.norm(landmarks[EYE_CORNERS[0]] - landmarks[EYE_CORNERS[1]]))
    collar_top = landmarks[CHIN, 1] + 0.15 * iod  # image rows grow downwards
    outside_face = np.ones(bare.shape[:2], np.uint8)
    cv2.fillPoly(outside_face, [np.round(landmarks[FACE_OVAL]).astype(np.int32)], 0)
    head = np.any(bare != bare[0, 0], axis=2)
    rows = np.arange(PHOTO[1])[:, None]
    painted = head & (outside_face > 0) & (rows > collar_top)
    photo = bare.copy()
    photo[painted] = np.rint(linear_to_srgb(SHIRT) * 255).astype(np.uint8)
    return photo, bare, camera, landmarks, painted


def test_clothing_mask_takes_the_collar_and_keeps_the_skin(ict, collar):
    from topos_server.texture.clothing_mask import CHIN, clothing_mask

    photo, bare, camera, landmarks, painted = collar
    mask = clothing_mask([srgb8_to_linear(photo[:, :, c]) for c in range(3)], landmarks, camera.image_size)
    assert mask is not None
    inner = cv2.erode(painted.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0  # away from the collar's edge
    rows, cols = np.nonzero(inner)
    assert mask.weight_at(np.stack([cols + 0.5, rows + 0.5])).max() == 0.0  # no weight on the collar at all
    skin = landmarks[[205, 425, 1, 199, 61, 291, CHIN]] + (0.0, -3.0)  # cheeks, nose, chin, mouth corners
    assert mask.weight_at(skin.T).min() == 1.0
    # no collar: the skin of the neck keeps its weight (away from the background beside it, which is not skin)
    bare_mask = clothing_mask([srgb8_to_linear(bare[:, :, c]) for c in range(3)], landmarks, camera.image_size)
    neck = cv2.erode(painted.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    rows, cols = np.nonzero(neck)
    assert rows.size > 1000 and bare_mask.weight_at(np.stack([cols + 0.5, rows + 0.5])).min() == 1.0


def test_the_bake_fills_the_neck_with_skin_not_the_collar(ict, collar):
    """Without the mask, neck texels of the face tile bake the collar's white; with it they are filled with the skin
    around them."""
    photo, _, camera, landmarks, _ = collar
    skin = linear_to_srgb(HAIR_SKIN) * 255
    albedo = {with_clothing: bake_textures(photo, ict.rest_points, camera, ict, SIZE, landmarks=landmarks,
                                           clothing=with_clothing)["albedo"].tiles
              for with_clothing in (False, True)}
    without, with_mask = (albedo[key][1001].astype(float) for key in (False, True))
    white = np.abs(without - skin).max(axis=2) > 30  # texels that baked the collar
    assert white.sum() > 200  # 304 at SIZE 512
    error = {key: np.abs(value[white] - skin).mean() for key, value in (("without", without), ("with", with_mask))}
    assert error["with"] < 0.2 * error["without"], error


def test_engines_pass_the_detected_landmarks_to_the_bake(monkeypatch):
    """The classic engine bakes with the landmarks it detected and fitted on."""
    from topos_server.engines import GenerateOptions, shared_engine
    from topos_server.texture import learned

    given = []

    def recording_bake(*args, **kwargs):
        given.append(kwargs.get("landmarks"))
        return bake_textures(*args, **kwargs)

    monkeypatch.setattr(learned, "bake_textures", recording_bake)
    result = shared_engine("classic", "cpu").generate([astronaut()], GenerateOptions(texture_size=512))[0]
    assert len(given) == 1 and given[0] is not None and given[0].shape == (478, 3)
    assert sorted(result.textures["albedo"].tiles) == [1001, 1002]
    assert result.provenance.extra["texture_bake_size"] == 512


def test_photo_texture_size_is_what_the_photo_fills(ict):
    """A power of two or 1.5 times one between MIN_WORKING_SIZE and the size asked for, growing with the photo's
    resolution."""
    from topos_server.texture.bake import MIN_WORKING_SIZE, photo_texture_size

    camera = front_camera()
    sizes = [photo_texture_size((PHOTO[0] * scale // 4, PHOTO[1] * scale // 4), ict.rest_points, camera, ict, 8192)
             for scale in (1, 2, 8)]  # this close-up fills 2048² texels from 512² pixels
    assert all(MIN_WORKING_SIZE <= s <= 8192 and (s & (s - 1) == 0 or (2 * s // 3) & (2 * s // 3 - 1) == 0)
               for s in sizes), sizes  # 512, 768, 1024, 1536, …
    assert sizes == [512, 1024, 4096], sizes  # twice the pixels per side: twice the texels per side
    assert photo_texture_size(PHOTO, ict.rest_points, camera, ict, 256) == 256  # never above the size asked for
    turned_away = front_camera(yaw_deg=180)
    assert photo_texture_size(PHOTO, ict.rest_points, turned_away, ict, 1024) == 1024  # nothing seen: the bake says so


def test_a_bake_at_a_working_size_is_the_full_bake_scaled_up(ict):
    """Baked at 256² and scaled up, the 512² maps of a 512² photo (whose face covers ~200 pixels) are the
    full bake's within a few 8-bit levels; the diagnostics stay at the working size."""
    camera = front_camera(yaw_deg=15)
    photo = render_photo(ict, camera, checker_albedo)
    full = bake_textures(photo, ict.rest_points, camera, ict, SIZE)
    diagnostics = {}
    small = bake_textures(photo, ict.rest_points, camera, ict, SIZE, working_size=SIZE // 2, diagnostics=diagnostics)
    assert diagnostics["albedo_linear"][1001].shape == (3, SIZE // 2, SIZE // 2)
    island = next(t for t in skin_uv_layout(ict, SIZE).tiles if t.tile == 1001).island
    for name in ("albedo", "normal", "roughness"):
        for tile, image in full[name].tiles.items():
            assert small[name].tiles[tile].shape == image.shape and small[name].tiles[tile].dtype == np.uint8
        difference = np.abs(small[name].tiles[1001].astype(float) - full[name].tiles[1001].astype(float))[island]
        psnr = 10 * np.log10(255.0 ** 2 / max((difference ** 2).mean(), 1e-9))
        assert psnr > 30.0, (name, psnr)  # the checker's hard edges are the worst case: ~2 levels on average
    assert bake_textures(photo, ict.rest_points, camera, ict, SIZE, working_size=4 * SIZE)["albedo"].tiles[1001].shape \
        == (SIZE, SIZE, 3)  # a working size above the size asked for is the size


def test_multiview_bakes_each_photo_with_its_own_landmarks(ict, monkeypatch):
    from topos_server.texture import multiview

    given = []

    def recording_bake(image, *args, landmarks=None, diagnostics=None, **kwargs):
        given.append(landmarks)
        return bake_textures(image, *args, diagnostics=diagnostics, **kwargs)

    monkeypatch.setattr(multiview, "bake_textures", recording_bake)
    camera = front_camera()
    photo = render_photo(ict, camera, checker_albedo)
    views = [np.full((478, 2), 50.0 + view) for view in range(2)]
    multiview.bake_views([photo, photo], [ict.rest_points] * 2, [camera] * 2, ict.rest_points, ict, 64,
                         landmarks=views)
    assert [g[0, 0] for g in given] == [50.0, 51.0]
    with pytest.raises(InvalidInputError, match="1 landmark sets for 2 photos"):
        multiview.bake_views([photo, photo], [ict.rest_points] * 2, [camera] * 2, ict.rest_points, ict, 64,
                             landmarks=views[:1])


# ---- fill primitive -----------------------------------------------------------------------------

def test_push_pull_fills_holes_smoothly():
    rows, cols = np.mgrid[0:64, 0:64].astype(np.float32)
    ramp = np.stack([cols / 63.0, rows / 63.0])  # (2, 64, 64)
    weight = ((rows - 30) ** 2 + (cols - 34) ** 2 > 12 ** 2).astype(np.float32)  # a round hole
    filled = push_pull(ramp * weight, weight)
    np.testing.assert_allclose(filled[:, weight == 1], ramp[:, weight == 1], atol=1e-5)
    hole = weight == 0
    assert (filled[:, hole] >= -1e-6).all() and (filled[:, hole] <= 1 + 1e-6).all()
    assert np.abs(filled - ramp)[:, hole].max() < 0.12  # close to the ramp it interrupts
    assert np.abs(np.diff(filled, axis=2)).max() < 0.1 and np.abs(np.diff(filled, axis=1)).max() < 0.1
    constant = push_pull(np.full((3, 40, 50), 0.3, np.float32) * weight[:40, :50], weight[:40, :50])
    np.testing.assert_allclose(constant, 0.3, atol=1e-5)
    assert push_pull(np.zeros((1, 8, 8), np.float32), np.zeros((8, 8), np.float32)).max() == 0.0


def test_srgb_round_trip():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
