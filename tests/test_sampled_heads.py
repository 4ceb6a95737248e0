"""Issue 3 must-show: heads sampled from the ICT HeadModel, written as USD assets with all expression
blendshapes, validate, share one topology id, and differ in their skin points."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pxr import Usd, UsdGeom
from topos_server.assets.cache import AssetCache
from topos_server.assets.head_model import HeadModel

from topos_sdk import HeadResult, Provenance
from topos_sdk.usd import read_head_asset, validate_asset, verify_topology, write_head_asset


@pytest.fixture(scope="module")
def written_heads(tmp_path_factory):
    cache = AssetCache.default()
    topology = cache.ict_topology()
    model = HeadModel.load(cache)
    deltas = model.expression_basis.numpy()  # (E, N, 3)
    names = list(model.expression_names)
    out = tmp_path_factory.mktemp("sampled")
    generator = torch.Generator().manual_seed(7)
    points = model.sample(generator, n=5).numpy()  # (5, N, 3)
    paths = []
    for i, pts in enumerate(points):
        weights = {name: float(w) for name, w in zip(names, np.random.default_rng(i).uniform(0, 0.5, len(names)))}
        head = HeadResult(points=pts, topology=topology, expression_weights=weights, blendshape_names=names,
                          blendshape_deltas=deltas, provenance=Provenance(engine="sample", seed=i))
        paths.append(write_head_asset(head, out, name=f"sampled_{i}", thumbnail=(i == 0)))
    return topology, names, deltas, points, paths


def test_sampled_heads_validate_and_share_the_topology(written_heads):
    topology, names, deltas, points, paths = written_heads
    ids = set()
    for path in paths:
        assert validate_asset(path) == [], path
        assert verify_topology(path, topology) == []
        stage = Usd.Stage.Open(str(path))
        ids.add(stage.GetDefaultPrim().GetAssetInfo()["topos"]["topologyId"])
    assert ids == {topology.topology_id}


def test_all_expression_blendshapes_are_written(written_heads):
    topology, names, deltas, points, paths = written_heads
    head = read_head_asset(paths[0])
    assert len(names) >= 53
    assert head.blendshape_names == names
    assert np.array_equal(head.blendshape_deltas, deltas)
    stage = Usd.Stage.Open(str(paths[0]))
    shapes = [p for p in stage.Traverse() if p.GetTypeName() == "BlendShape"]
    assert {p.GetName() for p in shapes} >= set(names)


def test_sampled_skin_points_differ_and_connectivity_is_identical(written_heads):
    topology, names, deltas, points, paths = written_heads
    skin = topology.submesh("face")
    read = [read_head_asset(p) for p in paths]
    for i in range(len(read)):
        assert np.array_equal(read[i].points, points[i].astype(np.float32))
        for j in range(i + 1, len(read)):
            gap = np.linalg.norm(read[i].points[skin.vertex_start:skin.vertex_stop]
                                 - read[j].points[skin.vertex_start:skin.vertex_stop], axis=1).mean()
            assert gap > 0.05, f"heads {i} and {j} are nearly identical ({gap:.3f} cm mean)"
    stages = [Usd.Stage.Open(str(p)) for p in paths]
    meshes = [UsdGeom.Mesh(stage.GetPrimAtPath(f"/{p.stem}/Geom/skin")) for stage, p in zip(stages, paths)]
    assert all(meshes)
    first = np.asarray(meshes[0].GetFaceVertexIndicesAttr().Get())
    for mesh in meshes[1:]:
        assert np.array_equal(np.asarray(mesh.GetFaceVertexIndicesAttr().Get()), first)
