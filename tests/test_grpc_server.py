"""The gRPC server and SDK client against a real server on 127.0.0.1 (in-process, free port), with a
deterministic synthetic engine injected through ``start_in_thread(config, engines=...)``."""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from conftest import make_quad_grid
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_synthetic_engine import SyntheticEngine
from PIL import Image
from skimage import data as skimage_data
from topos_server.engines.base import GenerateOptions
from topos_server.serving.server import ServerConfig, start_in_thread
from topos_server.serving.service import Limits

from topos_sdk import AssetError, InvalidInputError, LandmarkSet, NoFaceFound, ReferenceTopology, wire
from topos_sdk._proto.v1 import topos_pb2 as pb
from topos_sdk._proto.v1 import topos_pb2_grpc as pb_grpc
from topos_sdk.client import Client
from topos_sdk.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    RemoteError,
    ServerBusy,
    ServerUnavailable,
    Unauthenticated,
)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


ASTRONAUT = skimage_data.astronaut()  # (512, 512, 3) uint8
PORTRAIT = png(ASTRONAUT)


def rich_topology() -> ReferenceTopology:
    """The conftest quad grid plus groups, landmarks and symmetry (everything the wire carries)."""
    topo = make_quad_grid(12, 10)
    n = topo.num_points
    topo.vertex_groups = {"fitting": np.arange(0, n, 3, dtype=np.int32), "rigid": np.array([0, 5, 9], np.int32)}
    topo.landmarks = {"test": LandmarkSet(["a", "b"], np.array([[0, 1, 2], [3, 3, 3]]),
                                          np.array([[0.2, 0.3, 0.5], [1, 0, 0]], np.float32))}
    topo.symmetry = np.arange(n, dtype=np.int32)[::-1].copy()
    topo.info = {"source": "procedural"}
    return topo


def config(**kwargs) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=0, engines=[], **kwargs)


def health_status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def assert_healthy(server, client: Client) -> None:
    """SERVING, and a real request still goes through."""
    assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(server.address, "topos.v1.HeadGenerator") == health_pb2.HealthCheckResponse.SERVING
    assert client.generate(PORTRAIT, seed=1, texture_size=512).num_points > 0


@pytest.fixture(scope="module")
def engine():
    return SyntheticEngine(rich_topology())


@pytest.fixture(scope="module")
def server(engine):
    # small pieces so every array and texture tile crosses the wire in several messages
    with start_in_thread(config(limits=Limits(max_image_bytes=1 << 20, max_image_pixels=1_000_000,
                                              piece_bytes=8192)), {"synthetic": engine}) as srv:
        yield srv


@pytest.fixture
def client(server):
    with Client(server.address, timeout=30, retries=0) as c:
        yield c


# ---- results over the wire ---------------------------------------------------------------------

def test_result_over_the_wire_equals_the_in_process_result(engine, client):
    stages = []
    result = client.generate(PORTRAIT, seed=11, texture_size=2048, on_progress=lambda s, f: stages.append((s, f)))
    expected = engine.generate([PORTRAIT], GenerateOptions(seed=11, texture_size=2048))[0]
    assert result.differences(expected) == []
    assert result.provenance == expected.provenance
    assert result.topology_id == engine.topology.topology_id
    assert result.textures["normal"].tiles[1001].dtype == np.uint16
    # progress: queued first, then the engine's stages, fractions non-decreasing
    assert stages[0] == ("queued", 0.0) and [s for s, _ in stages[1:]] == ["decode", "detect", "fit", "texture"]
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_topology_arrives_whole_and_is_cached_by_id(engine, client, monkeypatch):
    import topos_sdk.client as client_module

    monkeypatch.setattr(client_module, "_topology_cache", {})
    # the first result brings its topology in the same stream: no second call (none could be made
    # once a draining server has finished the request)
    get_topology = client._stub.GetTopology
    monkeypatch.setattr(client._stub, "GetTopology", None)
    result = client.generate(PORTRAIT, seed=2, texture_size=512)
    topo, ref = result.topology, engine.topology
    assert topo.topology_id == ref.topology_id
    for name in ("rest_points", "face_vertex_counts", "face_vertex_indices", "uv_values", "uv_indices", "symmetry"):
        np.testing.assert_array_equal(getattr(topo, name), getattr(ref, name))
    assert topo.submeshes == ref.submeshes and topo.materials == ref.materials and topo.info == ref.info
    assert topo.vertex_groups.keys() == ref.vertex_groups.keys()
    np.testing.assert_array_equal(topo.vertex_groups["fitting"], ref.vertex_groups["fitting"])
    np.testing.assert_array_equal(topo.landmarks["test"].weights, ref.landmarks["test"].weights)
    assert topo.landmarks["test"].names == ["a", "b"]
    # a second result reuses the cached topology; the server is told and sends none
    assert client.generate(PORTRAIT, seed=3, texture_size=512).topology is topo
    with grpc.insecure_channel(client.address) as channel:
        stub = pb_grpc.HeadGeneratorStub(channel)
        cached = pb.GenerateRequest(encoded_image=PORTRAIT, cached_topology_ids=[ref.topology_id])
        assert "topology" not in [e.WhichOneof("event") for e in stub.Generate(cached, timeout=30)]
    # GetTopology serves it on its own too
    monkeypatch.setattr(client._stub, "GetTopology", get_topology)
    monkeypatch.setattr(client_module, "_topology_cache", {})
    fetched = client.topology(ref.topology_id)
    assert fetched.topology_id == ref.topology_id and fetched is not topo
    assert client.topology(ref.topology_id) is fetched


def test_raw_array_and_encoded_image_give_the_same_head(client):
    from_png = client.generate(PORTRAIT, seed=5, texture_size=512)
    from_array = client.generate(ASTRONAUT, seed=5, texture_size=512)
    assert from_array.differences(from_png) == []
    assert client.generate(PORTRAIT, seed=6, texture_size=512).differences(from_png) != []


def test_ict_topology_survives_the_wire_format():
    from topos_server.assets.cache import AssetCache

    ict = AssetCache.default().ict_topology()
    back = wire.topology_from_parts(wire.topology_parts(ict))
    assert back.topology_id == ict.topology_id and back.num_points == ict.num_points
    assert set(back.landmarks) == set(ict.landmarks) and back.submeshes == ict.submeshes
    np.testing.assert_array_equal(back.rest_points, ict.rest_points)


def test_every_message_stays_small(engine, server):
    """No message of a 2048 result needs more than a piece plus a little header."""
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.HeadGeneratorStub(channel)
        events = list(stub.Generate(pb.GenerateRequest(encoded_image=PORTRAIT, seed=4, texture_size=2048), timeout=30))
        parts = list(stub.GetTopology(pb.GetTopologyRequest(topology_id=engine.topology.topology_id), timeout=30))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "done" and kinds.count("geometry") == 1
    assert kinds.index("geometry") < kinds.index("topology") < kinds.index("blendshape") < kinds.index("texture")
    assert kinds.count("texture") > 3  # tiles split into pieces
    biggest = max(e.ByteSize() for e in events if e.WhichOneof("event") != "geometry")
    assert biggest <= 8192 + 256
    assert max(p.ByteSize() for p in parts[1:]) <= 8192 + 256


def test_server_info_lists_engines_limits_and_topologies(engine, client):
    info = client.server_info()
    assert info["default_engine"] == "synthetic"
    assert info["engines"][0]["topology_ids"] == [engine.topology.topology_id]
    assert info["engines"][0]["texture_sizes"] == [512, 1024, 2048]
    assert info["limits"]["max_image_bytes"] == 1 << 20 and info["limits"]["max_piece_bytes"] == 8192
    assert info["limits"]["max_queue"] == 32 and info["auth_required"] is False
    assert info["devices"] == ["cpu"] and info["versions"]["grpcio"] == grpc.__version__


def test_reflection_lists_the_service(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(server.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "topos.v1.HeadGenerator" in services and "grpc.health.v1.Health" in services


# ---- errors over the wire ----------------------------------------------------------------------

@pytest.mark.parametrize("image, error, words", [
    (b"", InvalidInputError, "empty"),
    (np.random.default_rng(0).bytes(5000), InvalidInputError, "not a readable"),
    (b"\x89PNG" + bytes(2 << 20), InvalidInputError, "MiB; the limit is 1.0 MiB"),
    (png(np.zeros((1200, 1000, 3), np.uint8)), InvalidInputError, "1000×1200 pixels; the limit"),
    (png(np.full((64, 64, 3), 128, np.uint8)), NoFaceFound, "no face"),
], ids=["empty", "random-bytes", "oversize-bytes", "oversize-pixels", "no-face"])
def test_bad_images_get_invalid_argument_with_a_message(server, client, image, error, words):
    with pytest.raises(error, match=words) as caught:
        client.generate(image, seed=1, texture_size=512)
    assert caught.value.code == "INVALID_ARGUMENT" and caught.value.request_id
    assert type(caught.value) is error  # NoFaceFound is told apart through the topos-error metadata
    assert_healthy(server, client)


def test_request_ids_reach_the_caller(server, client):
    with pytest.raises(InvalidInputError) as caught:
        client.generate(b"", request_id="shot-042_take-3")
    assert caught.value.request_id == "shot-042_take-3"  # the id the server logged the request under
    with grpc.insecure_channel(server.address) as channel:  # an unusable id is replaced, not trusted
        call = pb_grpc.HeadGeneratorStub(channel).Generate(
            pb.GenerateRequest(encoded_image=PORTRAIT, request_id="bad id; rm -rf"), timeout=30)
        first = next(call)
        assert dict(call.initial_metadata())["x-request-id"] == first.queued.request_id
        assert first.queued.request_id != "bad id; rm -rf" and len(first.queued.request_id) == 16
        assert [e.WhichOneof("event") for e in call][-1] == "done"
    with grpc.insecure_channel(server.address) as channel:  # a raw image whose size lies
        call = pb_grpc.HeadGeneratorStub(channel).Generate(
            pb.GenerateRequest(raw_image=pb.RawImage(width=10, height=10, rgb=bytes(299))), timeout=30)
        with pytest.raises(grpc.RpcError) as raw_error:
            list(call)
    assert raw_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "299 bytes do not make a 10×10 RGB image" in raw_error.value.details()


def test_unknown_engine_is_not_found(server, client):
    with pytest.raises(EngineUnavailable, match="'nope' is not served here; available: synthetic") as caught:
        client.generate(PORTRAIT, engine="nope")
    assert caught.value.code == "NOT_FOUND"
    assert_healthy(server, client)


def test_bad_seed_type_and_range(server, client):
    # a client built from a wrong schema sends the seed as a string: the server names the field
    raw = pb.GenerateRequest(encoded_image=PORTRAIT).SerializeToString() + b"\x22\x03abc"  # field 4, length-delimited
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_stream("/topos.v1.HeadGenerator/Generate", request_serializer=lambda b: b,
                                    response_deserializer=pb.GenerateEvent.FromString)
        with pytest.raises(grpc.RpcError) as caught:
            list(call(raw, timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "field 'seed' has the wrong type" in caught.value.details()
    # in range for uint64 but not for the engine: the server's GenerateOptions rejects it
    with pytest.raises(InvalidInputError, match=r"seed must be an integer in \[0, 2\^63\)"):
        client.generate(PORTRAIT, seed=2**63)
    # the SDK client refuses a non-integer seed before sending anything
    with pytest.raises(InvalidInputError, match="seed must be an integer, got str"):
        client.generate(PORTRAIT, seed="7")
    with pytest.raises(InvalidInputError, match="texture size must be one of"):
        client.generate(PORTRAIT, texture_size=300)
    assert_healthy(server, client)


@pytest.mark.parametrize("failure, code", [(RuntimeError("engine bug"), "INTERNAL"),
                                           (AssetError("head model file is gone"), "FAILED_PRECONDITION")])
def test_engine_failures_keep_the_server_serving(engine, server, client, failure, code):
    engine.fail_with = failure
    with pytest.raises(RemoteError, match=str(failure)) as caught:
        client.generate(PORTRAIT, seed=1, texture_size=512)
    assert caught.value.code == code
    assert_healthy(server, client)


def test_bearer_token(engine):
    with start_in_thread(config(token="s3cret-token"), {"synthetic": engine}) as srv:
        for token, words in ((None, "needs a bearer token"), ("guess", "wrong bearer token")):
            with Client(srv.address, token=token, retries=0) as anonymous:
                with pytest.raises(Unauthenticated, match=words) as caught:
                    anonymous.generate(PORTRAIT)
                assert caught.value.code == "UNAUTHENTICATED"
                with pytest.raises(Unauthenticated):
                    anonymous.server_info()
        with Client(srv.address, token="s3cret-token") as authorised:
            assert authorised.server_info()["auth_required"] is True
            assert_healthy(srv, authorised)  # health checks need no token


def test_expired_deadline_stops_the_work():
    slow = SyntheticEngine(make_quad_grid(), delay_s=0.4)
    with start_in_thread(config(), {"synthetic": slow}) as srv, Client(srv.address, retries=0) as client:
        with pytest.raises(DeadlineExceeded) as caught:
            client.generate(PORTRAIT, timeout=0.6)
        assert caught.value.code == "DEADLINE_EXCEEDED"
        time.sleep(1.0)  # the engine notices at its next progress call
        assert len(slow.stages_run) < 4
        slow.delay_s = 0
        assert_healthy(srv, client)


def test_cancelled_call_stops_the_work():
    slow = SyntheticEngine(make_quad_grid(), delay_s=0.4)
    with start_in_thread(config(), {"synthetic": slow}) as srv, Client(srv.address, retries=0) as client:
        def cancel_at_first_stage(stage, fraction):
            if stage == "decode":
                raise KeyboardInterrupt  # what a cancel button in a DCC does through on_progress

        with pytest.raises(KeyboardInterrupt):
            client.generate(PORTRAIT, on_progress=cancel_at_first_stage)
        time.sleep(1.0)
        # the server notices the cancel at one of the engine's next progress reports: right after "decode" (the
        # event the client cancelled on) or a stage later when the cancel arrives while that report is on its way
        assert slow.stages_run[0] == "decode" and len(slow.stages_run) < 4
        # a raw stub sees CANCELLED after cancelling its own call
        with grpc.insecure_channel(srv.address) as channel:
            call = pb_grpc.HeadGeneratorStub(channel).Generate(pb.GenerateRequest(encoded_image=PORTRAIT), timeout=10)
            assert next(call).WhichOneof("event") == "queued"
            call.cancel()
            with pytest.raises(grpc.RpcError) as caught:
                list(call)
            assert caught.value.code() == grpc.StatusCode.CANCELLED
        slow.delay_s = 0
        assert_healthy(srv, client)


def test_full_queue_is_resource_exhausted_and_the_queued_work_still_finishes():
    slow = SyntheticEngine(make_quad_grid(), delay_s=0.4)
    with start_in_thread(config(max_queue=1, max_batch=1), {"synthetic": slow}) as srv, \
            grpc.insecure_channel(srv.address) as channel, Client(srv.address, retries=0) as client:
        stub = pb_grpc.HeadGeneratorStub(channel)
        running = stub.Generate(pb.GenerateRequest(encoded_image=PORTRAIT, seed=1), timeout=20)
        assert next(running).queued.position == 0
        assert slow.started.wait(5)
        waiting = stub.Generate(pb.GenerateRequest(encoded_image=PORTRAIT, seed=2), timeout=20)
        assert next(waiting).queued.position == 0  # first in the queue (the other one is running)
        with pytest.raises(ServerBusy, match=r"queue is full \(1 requests waiting\)") as caught:
            client.generate(PORTRAIT, seed=3)
        assert caught.value.code == "RESOURCE_EXHAUSTED"
        for call in (running, waiting):
            assert [e.WhichOneof("event") for e in call][-1] == "done"
        slow.delay_s = 0
        assert_healthy(srv, client)


def test_client_retries_unavailable_until_the_server_is_up(engine):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"127.0.0.1:{port}", retries=1, backoff_s=0.05) as client:
        t = time.monotonic()
        with pytest.raises(ServerUnavailable):
            client.server_info()
        assert time.monotonic() - t < 5
    holder = {}
    starter = threading.Timer(0.8, lambda: holder.setdefault(
        "srv", start_in_thread(ServerConfig(host="127.0.0.1", port=port, engines=[]), {"synthetic": engine})))
    starter.start()
    try:
        with Client(f"127.0.0.1:{port}", retries=8, backoff_s=0.2, max_backoff_s=0.5) as client:
            assert client.generate(PORTRAIT, seed=1, texture_size=512).num_points == engine.topology.num_points
    finally:
        starter.join()
        holder["srv"].close()


def test_dynamic_batching_groups_compatible_requests_and_isolates_a_bad_image():
    batching = SyntheticEngine(make_quad_grid(), max_batch_size=4)
    with start_in_thread(config(max_batch=4, max_batch_wait_s=0.5), {"synthetic": batching}) as srv, \
            Client(srv.address, retries=0) as client:
        images = [png(np.ascontiguousarray(ASTRONAUT[i * 20:i * 20 + 300, i * 30:i * 30 + 300])) for i in range(4)]
        results = client.generate_many(images, concurrency=4, seed=9, texture_size=512)
        assert max(batching.calls) > 1  # several requests shared one engine call
        for image, result in zip(images, results):  # each result went back to its own caller
            expected = batching.generate([image], GenerateOptions(seed=9, texture_size=512))[0]
            assert result.differences(expected) == []
        flat = png(np.full((64, 64, 3), 90, np.uint8))
        with pytest.raises(NoFaceFound):
            client.generate_many([images[0], flat, images[1]], concurrency=3, seed=9, texture_size=512)
        assert client.generate_many(images[:2], concurrency=2, seed=9, texture_size=512)[1].differences(results[1]) == []


def test_graceful_drain_finishes_in_flight_and_refuses_new_work():
    slow = SyntheticEngine(make_quad_grid(), delay_s=0.5)
    srv = start_in_thread(config(), {"synthetic": slow})
    try:
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.setdefault(
            "result", Client(srv.address, retries=0).generate(PORTRAIT, seed=4, texture_size=512)))
        worker.start()
        assert slow.started.wait(5)
        drained = srv.shutdown(grace_s=20, wait=False)
        time.sleep(0.2)
        assert health_status(srv.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        with Client(srv.address, retries=0) as late:
            with pytest.raises(ServerUnavailable, match="shutting down"):
                late.generate(PORTRAIT, seed=5)
        worker.join(10)
        assert outcome["result"].num_points == slow.topology.num_points
        assert drained.result(20) is True
    finally:
        srv.close()


def test_prometheus_metrics(engine):
    with start_in_thread(config(metrics_port=0), {"synthetic": engine}) as srv, Client(srv.address, retries=0) as client:
        client.generate(PORTRAIT, seed=1, texture_size=512)
        with pytest.raises(InvalidInputError):
            client.generate(b"")
        # the server counts a call in its handler's cleanup, which may run just after the client has the status
        expected = ('topos_requests_total{status="OK"} 1.0', 'topos_requests_total{status="INVALID_ARGUMENT"} 1.0',
                    "topos_request_seconds_count 2.0", "topos_queue_depth 0.0")
        give_up = time.monotonic() + 5
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{srv.server.metrics_port}/metrics", timeout=5).read().decode()
            if all(line in text for line in expected) or time.monotonic() > give_up:
                break
            time.sleep(0.05)
    for line in expected:
        assert line in text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_with_a_private_ca(engine, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    cert, key = (tmp_path / "cert.pem").read_bytes(), (tmp_path / "key.pem").read_bytes()
    with start_in_thread(config(tls_cert=cert, tls_key=key, token="tok"), {"synthetic": engine}) as srv:
        with Client(f"localhost:{srv.port}", tls=tmp_path / "cert.pem", token="tok", retries=0) as client:
            assert client.generate(PORTRAIT, seed=1, texture_size=512).num_points == engine.topology.num_points
        with Client(f"localhost:{srv.port}", retries=0) as plain:  # plain TCP to a TLS port fails cleanly
            with pytest.raises(ServerUnavailable):
                plain.server_info(timeout=3)
