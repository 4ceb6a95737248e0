import time

import numpy as np
import pytest

from topos_sdk.raster import perspective_correct, rasterize

ICT_NEUTRAL = "../shared/ict-facekit/FaceXModel/generic_neutral_mesh.obj.xz"


def _orient(u, v, p):
    return (u[0] - p[0]) * (v[1] - p[1]) - (u[1] - p[1]) * (v[0] - p[0])


def brute_force(tri_xy, width, height, tri_depth=None):
    """Pixel-by-pixel, triangle-by-triangle reference of the documented rules (Python floats)."""
    tri_xy = np.asarray(tri_xy, np.float64)
    ids = np.full((height, width), -1, np.int64)
    bary = np.zeros((height, width, 3))
    best = np.full((height, width), np.inf)
    for t, (a, b, c) in enumerate(tri_xy.tolist()):
        if not np.isfinite([a, b, c]).all() or _orient(a, b, c) == 0:
            continue
        order = [0, 1, 2] if _orient(a, b, c) > 0 else [0, 2, 1]
        q = [[a, b, c][k] for k in order]
        for y in range(height):
            for x in range(width):
                p = (x + 0.5, y + 0.5)
                e = []
                ok = True
                for u, v in ((1, 2), (2, 0), (0, 1)):
                    w = _orient(q[u], q[v], p)
                    dx, dy = q[v][0] - q[u][0], q[v][1] - q[u][1]
                    owns = dy < 0 or (dy == 0 and dx > 0)
                    ok &= w > 0 or (w == 0 and owns)
                    e.append(w)
                if not ok:
                    continue
                s = e[0] + e[1] + e[2]
                z = 0.0
                if tri_depth is not None:
                    dz = [tri_depth[t][k] for k in order]
                    z = float(np.float32((e[0] * dz[0] + e[1] * dz[1] + e[2] * dz[2]) / s))
                if z < best[y, x]:  # strict: on equal depth the lower index (seen first) stays
                    best[y, x] = z
                    ids[y, x] = t
                    w_orig = np.empty(3)
                    w_orig[order] = np.array(e) / s
                    bary[y, x] = w_orig
    return ids, bary


def random_triangles(rng, n, width, height, grid=None):
    pts = rng.uniform([-4, -4], [width + 4, height + 4], size=(n, 3, 2))
    if grid:
        pts = np.round(pts / grid) * grid  # many pixel centres exactly on edges and corners
    return pts


@pytest.mark.parametrize("seed, grid, with_depth", [(0, None, False), (1, None, True), (2, 0.5, False), (3, 0.5, True), (4, 1.0, True)])
def test_matches_brute_force(seed, grid, with_depth):
    rng = np.random.default_rng(seed)
    width, height = 23, 17
    tri = random_triangles(rng, 12, width, height, grid)
    small = rng.uniform(0, 17, size=(6, 1, 2)) + rng.uniform(-2.5, 2.5, size=(6, 3, 2))  # a few tiny ones
    tri = np.concatenate([tri, small])
    depth = rng.uniform(1, 10, size=(len(tri), 3)) if with_depth else None
    ids, bary = rasterize(tri, width, height, depth)
    ref_ids, ref_bary = brute_force(tri, width, height, depth)
    assert ids.dtype == np.int32 and ids.shape == (height, width)
    assert bary.dtype == np.float32 and bary.shape == (height, width, 3)
    assert (ids >= 0).sum() > 50
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(bary, ref_bary, atol=2e-6)


def test_barycentrics_interpolate_the_pixel_centre():
    rng = np.random.default_rng(7)
    tri = random_triangles(rng, 30, 64, 48)
    ids, bary = rasterize(tri, 64, 48)
    ys, xs = np.nonzero(ids >= 0)
    centre = np.einsum("pk,pkx->px", bary[ys, xs].astype(np.float64), tri[ids[ys, xs]])
    np.testing.assert_allclose(centre, np.stack([xs + 0.5, ys + 0.5], 1), atol=1e-3)
    assert np.all(bary[ys, xs] >= -1e-6) and np.allclose(bary[ys, xs].sum(-1), 1, atol=1e-5)
    assert np.all(bary[ids < 0] == 0)


def _coverage_count(tri, width, height):
    count = np.zeros((height, width), np.int64)
    for t in tri:
        count += rasterize(t[None], width, height)[0] >= 0
    return count


@pytest.mark.parametrize("diagonal", ["main", "anti"])
def test_quad_split_into_two_triangles_covers_each_pixel_once(diagonal):
    # corners on pixel centres and half-pixels: the diagonal passes exactly through centres
    a, b, c, d = (2.5, 1.5), (18.5, 1.5), (18.5, 17.5), (2.5, 17.5)
    tri = np.array([[a, b, c], [a, c, d]] if diagonal == "main" else [[a, b, d], [b, c, d]])
    count = _coverage_count(tri, 24, 20)
    ys, xs = np.mgrid[0:20, 0:24]
    in_quad = (xs + 0.5 >= 2.5) & (xs + 0.5 <= 18.5) & (ys + 0.5 >= 1.5) & (ys + 0.5 <= 17.5)
    assert count.max() == 1
    # the union follows the top-left rule on the quad's own outline: left and top edges included
    expected = (xs + 0.5 >= 2.5) & (xs + 0.5 < 18.5) & (ys + 0.5 >= 1.5) & (ys + 0.5 < 17.5)
    np.testing.assert_array_equal(count == 1, expected)
    assert expected.sum() == in_quad.sum() - 16 - 16 - 1  # right column and bottom row belong to neighbours
    ids, _ = rasterize(tri, 24, 20)
    np.testing.assert_array_equal(ids >= 0, expected)


def test_jittered_mesh_with_mixed_winding_has_no_cracks_or_overlaps():
    rng = np.random.default_rng(3)
    nx, ny, width, height = 6, 5, 30, 25
    gx, gy = np.meshgrid(np.linspace(0, width, nx + 1), np.linspace(0, height, ny + 1))
    pts = np.stack([gx, gy], -1)
    inner = (slice(1, -1), slice(1, -1))
    pts[inner] += rng.uniform(-1.5, 1.5, size=pts[inner].shape)
    pts[2, 3] = (15.5, 10.5)  # a vertex exactly on a pixel centre
    tris = []
    for j in range(ny):
        for i in range(nx):
            p00, p10, p01, p11 = pts[j, i], pts[j, i + 1], pts[j + 1, i], pts[j + 1, i + 1]
            t1, t2 = [p00, p10, p11], [p00, p11, p01]
            if (i + j) % 2:
                t1 = t1[::-1]  # flipped winding must not matter
            tris += [t1, t2]
    count = _coverage_count(np.array(tris), width, height)
    assert np.all(count == 1)


def test_nearest_depth_wins_in_any_order_and_ties_go_to_lower_index():
    big = [[-1, -1], [41, -1], [-1, 41]]
    small = [[2, 2], [15, 2], [2, 15]]
    tri = np.array([big, small], float)
    only_big = rasterize(tri[:1], 20, 20)[0] >= 0
    in_small = rasterize(tri[1:], 20, 20)[0] >= 0
    assert only_big.all() and 50 < in_small.sum() < 150
    for depth_big, depth_small in ((5.0, 1.0), (1.0, 5.0)):
        depth = np.array([[depth_big] * 3, [depth_small] * 3])
        ids, _ = rasterize(tri, 20, 20, depth)
        ids_swapped, _ = rasterize(tri[::-1], 20, 20, depth[::-1])
        np.testing.assert_array_equal(ids_swapped, 1 - ids)  # the same geometric winner in either order
        small_wins = depth_small < depth_big
        np.testing.assert_array_equal(ids == 1, in_small & small_wins)
    # a tilted plane against a flat one: the winner switches where their depths cross
    ys, xs = np.mgrid[0:20, 0:20]
    ids, _ = rasterize(np.array([big, big], float), 20, 20, np.array([[10, -11, 10], [5, 5, 5]], float))
    z_tilted = 10 - 21 * (xs + 0.5 + 1) / 42  # depth of the first along x
    np.testing.assert_array_equal(ids, np.where(z_tilted < 5, 0, 1))
    # equal depth, or no depth at all: the lower index wins
    assert np.all(rasterize(np.array([big, big], float), 20, 20, np.full((2, 3), 2.0))[0] == 0)
    assert np.all(rasterize(np.array([big, small], float), 20, 20)[0] == 0)


def test_degenerate_and_invalid_triangles_are_ignored():
    tri = np.array([
        [[1, 1], [10, 10], [5, 5]],  # collinear
        [[3, 3], [3, 3], [9, 2]],  # repeated corner
        [[0, 0], [np.nan, 4], [9, 9]],  # non-finite
        [[-50, -50], [-40, -50], [-50, -40]],  # off screen
        [[0, 0], [12, 0], [0, 12]],  # the only visible one
    ], float)
    ids, bary = rasterize(tri, 12, 12, np.ones((5, 3)))
    assert set(np.unique(ids)) == {-1, 4}
    assert rasterize(tri[:4], 12, 12)[0].max() == -1
    assert rasterize(np.zeros((0, 3, 2)), 5, 4)[0].shape == (4, 5)
    with pytest.raises(ValueError):
        rasterize(np.zeros((2, 3)), 5, 5)
    with pytest.raises(ValueError):
        rasterize(tri, 12, 12, np.ones((4, 3)))


def test_huge_triangle_is_chunked_and_exact():
    # larger than one chunk of candidates; clipped by the image on two sides
    tri = np.array([[[-300.0, -10.0], [700.2, 40.3], [120.7, 900.9]]])
    ids, bary = rasterize(tri, 640, 480)
    ys, xs = np.mgrid[0:480, 0:640]
    a, b, c = tri[0]
    p = (xs + 0.5, ys + 0.5)
    e = [_orient(b, c, p), _orient(c, a, p), _orient(a, b, p)]
    inside = (e[0] > 0) & (e[1] > 0) & (e[2] > 0)  # no centre lies exactly on these edges
    np.testing.assert_array_equal(ids == 0, inside)
    np.testing.assert_allclose(bary[inside], np.stack(e, -1)[inside] / np.sum(e, 0)[inside][:, None], atol=1e-6)


def test_perspective_correct_barycentrics_hit_the_surface_point():
    f, size = 100.0, 64
    corners = np.array([[-1.0, -1.0, -3.0], [1.5, -0.5, -6.0], [-0.5, 1.5, -9.0]])  # camera looks down −Z

    def project(p):
        return np.stack([size / 2 + f * p[..., 0] / -p[..., 2], size / 2 - f * p[..., 1] / -p[..., 2]], -1)

    ids, bary = rasterize(project(corners)[None], size, size)
    pc = perspective_correct(bary, ids, -corners[None, :, 2])
    ys, xs = np.nonzero(ids == 0)
    assert len(xs) > 100
    surface = pc[ys, xs].astype(np.float64) @ corners  # (P, 3) 3D points
    np.testing.assert_allclose(project(surface), np.stack([xs + 0.5, ys + 0.5], 1), atol=2e-3)
    naive = bary[ys, xs].astype(np.float64) @ corners
    assert np.abs(project(naive) - np.stack([xs + 0.5, ys + 0.5], 1)).max() > 0.5  # the correction matters


def test_ict_mesh_speed_and_coverage():
    from topos_sdk import ReferenceTopology

    topo = ReferenceTopology.from_obj(ICT_NEUTRAL)
    tri, _ = topo.triangles()
    p = topo.rest_points.astype(np.float64)
    lo, hi = p.min(0), p.max(0)
    scale = 0.9 * 1024 / (hi - lo)[:2].max()
    xy = np.stack([(p[:, 0] - (lo[0] + hi[0]) / 2) * scale + 512, 512 - (p[:, 1] - (lo[1] + hi[1]) / 2) * scale], 1)
    start = time.perf_counter()
    ids, _ = rasterize(xy[tri], 1024, 1024, -p[tri, 2])
    elapsed = time.perf_counter() - start
    assert 0.2 < (ids >= 0).mean() < 0.6
    assert elapsed < 5.0  # ~0.25 s measured on the dev machine; loose for shared CI cores
