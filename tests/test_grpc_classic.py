"""Server path vs in-process path with the real classic engine on a real portrait: the HeadResult
and the USD asset `topos generate --server` writes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("topos_server.engines.classic") is None,
                                reason="the classic engine module is not present")


@pytest.fixture(scope="module")
def server():
    from topos_server.serving.server import ServerConfig, start_in_thread

    with start_in_thread(ServerConfig(host="127.0.0.1", port=0, device="cpu", engines=["classic"])) as srv:
        yield srv


def test_same_portrait_and_seed_give_the_same_head_over_the_wire(server):
    from test_grpc_server import PORTRAIT
    from topos_server.engines import GenerateOptions, get_engine

    from topos_sdk.client import Client

    with Client(server.address, retries=0, timeout=300) as client:
        remote = client.generate(PORTRAIT, seed=3, engine="classic", texture_size=512)
        info = client.server_info()
    local = get_engine("classic", device="cpu").generate([PORTRAIT], GenerateOptions(seed=3, texture_size=512))[0]

    assert remote.topology_id == local.topology_id == local.topology.topology_id
    assert info["engines"][0]["topology_ids"] == [local.topology_id]
    np.testing.assert_allclose(remote.points, local.points, rtol=0, atol=1e-5)
    assert remote.textures.keys() == local.textures.keys() and len(local.textures) > 0
    for name, texture in local.textures.items():
        assert remote.textures[name] == texture, name  # every tile, bit for bit
    assert remote.differences(local, atol=1e-5) == []
    # the topology came over the wire and is the importer's, array for array
    np.testing.assert_array_equal(remote.topology.face_vertex_indices, local.topology.face_vertex_indices)
    np.testing.assert_array_equal(remote.topology.uv_values, local.topology.uv_values)
    assert remote.topology.submeshes == local.topology.submeshes


def test_topos_generate_with_server_writes_the_in_process_asset(server, tmp_path):
    from test_grpc_server import PORTRAIT

    from topos_sdk.cli import main
    from topos_sdk.usd import read_head_asset

    (tmp_path / "astronaut.png").write_bytes(PORTRAIT)
    common = [str(tmp_path / "astronaut.png"), "--seed", "3", "--texture-size", "512"]
    assert main(["generate", *common, "-o", str(tmp_path / "remote"), "--server", server.address]) == 0
    assert main(["generate", *common, "-o", str(tmp_path / "local")]) == 0
    remote = read_head_asset(tmp_path / "remote" / "astronaut" / "astronaut.usda")
    local = read_head_asset(tmp_path / "local" / "astronaut" / "astronaut.usda")
    assert remote.differences(local, atol=1e-5) == []
    remote_files = sorted(p.relative_to(tmp_path / "remote") for p in (tmp_path / "remote").rglob("*"))
    assert remote_files == sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*"))
