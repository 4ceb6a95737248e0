"""TOPOS on Ray Serve: one local Ray instance for the module (2 CPUs, loopback), the ``topos``
application with 2 replicas of the classic engine behind Ray Serve's gRPC proxy, and the unchanged SDK
``Client`` against it — results, event streams and statuses as from ``topos serve`` and in-process,
a replica killed under load, the queue bound. Ray is shut down at the end and leaves no process."""

from __future__ import annotations

import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'topos[ray]'")

import ray  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from PIL import Image  # noqa: E402
from ray import serve  # noqa: E402
from test_grpc_server import PORTRAIT  # noqa: E402
from topos_server.serving import ray_app  # noqa: E402

from topos_sdk import wire  # noqa: E402
from topos_sdk._proto.v1 import topos_pb2 as pb  # noqa: E402
from topos_sdk._proto.v1 import topos_pb2_grpc as pb_grpc  # noqa: E402
from topos_sdk.client import Client  # noqa: E402
from topos_sdk.errors import ServerBusy, ToposError  # noqa: E402

pytestmark = pytest.mark.slow

TOKEN = "ray-test-token"
REPLICAS = 2
MAX_ONGOING = 1  # per replica: with MAX_QUEUED, 2 + 4 requests may be in the system at once
MAX_QUEUED = 4
TEXTURE = 512


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    before = _descendants(os.getpid())
    token_file = tmp_path_factory.mktemp("ray") / "token"
    token_file.write_text(TOKEN + "\n")
    ray.init(num_cpus=REPLICAS, include_dashboard=False, log_to_driver=False)
    try:
        port = ray_app.free_port()
        ray_app.deploy(ray_app.RayServeOptions(
            replicas=REPLICAS, max_ongoing=MAX_ONGOING, max_queued=MAX_QUEUED, max_batch=1,
            token_file=str(token_file)), port)
        address = f"127.0.0.1:{port}"
        _wait_serving(address, timeout=60)
        yield address
    finally:
        serve.shutdown()
        ray.shutdown()
        deadline = time.monotonic() + 30
        while (left := _alive(_descendants(os.getpid()) - before)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"Ray left processes running: {sorted(left)}"


def _wait_serving(address: str, timeout: float) -> None:
    """The proxy learns the application's route shortly after the deployment is up."""
    end = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.monotonic() > end:
                    raise
            time.sleep(0.25)


@pytest.fixture(scope="module")
def single_server():
    from topos_server.engines.base import shared_engine
    from topos_server.serving.server import ServerConfig, start_in_thread

    config = ServerConfig(host="127.0.0.1", port=0, device="cpu", token=TOKEN, max_batch=1)
    with start_in_thread(config, engines={"classic": shared_engine("classic")}) as server:
        yield server.address


def _client(address: str, **kwargs) -> Client:
    return Client(address, **{"token": TOKEN, "retries": 0, "timeout": 120, **kwargs})


def test_result_through_ray_equals_the_single_server_and_in_process(ray_server, single_server):
    from topos_server.engines.base import GenerateOptions, shared_engine

    with _client(ray_server) as client:
        through_ray = client.generate(PORTRAIT, seed=3, texture_size=TEXTURE)
        info = client.server_info()
    with _client(single_server) as client:
        single = client.generate(PORTRAIT, seed=3, texture_size=TEXTURE)
    local = shared_engine("classic").generate([PORTRAIT], GenerateOptions(seed=3, texture_size=TEXTURE))[0]

    for other in (single, local):
        np.testing.assert_allclose(through_ray.points, other.points, rtol=0, atol=1e-5)
        assert through_ray.textures.keys() == other.textures.keys() and through_ray.textures
        for name, texture in other.textures.items():
            assert through_ray.textures[name] == texture, name
        assert through_ray.differences(other, atol=1e-5) == []
    assert through_ray.topology_id == local.topology.topology_id
    assert [e["name"] for e in info["engines"]] == ["classic"] and info["auth_required"]
    assert info["limits"]["max_queue"] == MAX_QUEUED and "ray" in info["versions"]


def _event_stream(address: str, request: pb.GenerateRequest, token: str | None = TOKEN):
    """Every event as (kind, comparable payload), then the status, message and trailing metadata."""
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 8 << 20)]) as channel:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        call = pb_grpc.HeadGeneratorStub(channel).Generate(request, timeout=120, metadata=metadata)
        events = []
        try:
            for event in call:
                kind = event.WhichOneof("event")
                # geometry and done carry timings; everything else must match byte for byte
                events.append((kind, None if kind in ("geometry", "done") else getattr(event, kind).SerializeToString()))
        except grpc.RpcError:
            pass
        trailing = {k: v for k, v in (call.trailing_metadata() or ()) if k in (wire.ERROR_TYPE_KEY, wire.REQUEST_ID_KEY)}
        return events, call.code(), call.details(), trailing


def _blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_events_stream_exactly_as_from_the_single_server(ray_server, single_server):
    for image, name in ((PORTRAIT, "portrait"), (_blank_png(), "no face")):
        request = pb.GenerateRequest(encoded_image=image, seed=5, texture_size=TEXTURE, request_id=f"events-{name[:2]}")
        through_ray = _event_stream(ray_server, request)
        single = _event_stream(single_server, request)
        if single[1] == grpc.StatusCode.OK:  # the request id, in initial metadata there, is in the trailers here
            assert through_ray[3] == {wire.REQUEST_ID_KEY: request.request_id} and single[3] == {}
            through_ray = through_ray[:3]
            single = single[:3]
        assert through_ray == single, name
    assert through_ray[1] == grpc.StatusCode.INVALID_ARGUMENT
    assert through_ray[3] == {wire.ERROR_TYPE_KEY: "NoFaceFound", wire.REQUEST_ID_KEY: "events-no"}


@pytest.mark.parametrize("case", ["no token", "wrong token", "not an image", "empty image", "unknown engine",
                                  "bad texture size", "no face"])
def test_auth_and_bad_input_get_the_single_servers_status_and_exception(ray_server, single_server, case):
    token, image, kwargs = TOKEN, PORTRAIT, {"seed": 1, "texture_size": TEXTURE}
    if case == "no token":
        token = None
    elif case == "wrong token":
        token = "not-the-token"
    elif case == "not an image":
        image = b"definitely not a PNG"
    elif case == "empty image":
        image = b""
    elif case == "unknown engine":
        kwargs["engine"] = "no-such-engine"
    elif case == "bad texture size":
        kwargs["texture_size"] = 300
    elif case == "no face":
        image = _blank_png()

    outcomes = []
    for address in (ray_server, single_server):
        with _client(address, token=token) as client:
            with pytest.raises(ToposError) as failure:
                client.generate(image, **kwargs)
        outcomes.append((type(failure.value).__name__, failure.value.code, str(failure.value)))
    assert outcomes[0] == outcomes[1]


def test_health_needs_no_token_and_reflection_lists_the_service(ray_server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(ray_server) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="topos.v1.HeadGenerator"), timeout=30).status == \
            health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30)
        services = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"topos.v1.HeadGenerator", "grpc.health.v1.Health"} <= services


def test_full_queue_answers_resource_exhausted(ray_server):
    """2 replicas × 1 ongoing + 4 queued: of 12 simultaneous requests some must be turned away, at once,
    and every other one answered."""
    outcomes = []

    def one(_):
        started = time.monotonic()
        try:
            with _client(ray_server) as client:
                client.generate(PORTRAIT, seed=2, texture_size=TEXTURE)
            return "ok", time.monotonic() - started
        except ServerBusy as exc:
            assert exc.code == "RESOURCE_EXHAUSTED"
            return "busy", time.monotonic() - started

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(one, range(12)))
    kinds = [kind for kind, _ in outcomes]
    assert kinds.count("busy") >= 1 and kinds.count("ok") >= REPLICAS * MAX_ONGOING, kinds
    assert kinds.count("busy") + kinds.count("ok") == 12
    assert max(seconds for kind, seconds in outcomes if kind == "busy") < 10  # rejected, not queued


def test_killing_a_replica_under_load_loses_no_request(ray_server):
    """8 requests at concurrency 3 (within the queue bound with one replica left); one engine replica is
    killed while both are busy. Every request is answered once, with the reference result."""
    with _client(ray_server) as client:
        reference = client.generate(PORTRAIT, seed=4, texture_size=TEXTURE)
    replica_names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if "engine-classic" in a["name"]]
    assert len(replica_names) == REPLICAS, replica_names
    first_done = threading.Event()

    def one(_):
        with Client(ray_server, token=TOKEN, timeout=180, retries=6) as client:
            result = client.generate(PORTRAIT, seed=4, texture_size=TEXTURE)
        first_done.set()
        return result

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(one, i) for i in range(8)]
        assert first_done.wait(120)
        time.sleep(0.5)  # both replicas are busy again
        ray.kill(ray.get_actor(replica_names[0], namespace="serve"), no_restart=True)
        results = [f.result(timeout=240) for f in futures]
    assert len(results) == 8
    for result in results:
        assert result.differences(reference, atol=1e-5) == []


def test_topology_by_id_through_ray_equals_the_single_server(ray_server, single_server):
    from topos_server.engines.base import shared_engine

    topology_id = shared_engine("classic").topology.topology_id
    replies = []
    for address in (ray_server, single_server):
        with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 8 << 20)]) as channel:
            stub = pb_grpc.HeadGeneratorStub(channel)
            metadata = (("authorization", f"Bearer {TOKEN}"),)
            parts = list(stub.GetTopology(pb.GetTopologyRequest(topology_id=topology_id), timeout=60,
                                          metadata=metadata))
            with pytest.raises(grpc.RpcError) as unknown:
                list(stub.GetTopology(pb.GetTopologyRequest(topology_id="topo-unknown"), timeout=60,
                                      metadata=metadata))
        replies.append(([p.SerializeToString() for p in parts], unknown.value.code()))
    assert replies[0] == replies[1] and replies[0][1] == grpc.StatusCode.NOT_FOUND
    assert wire.topology_from_parts(parts).topology_id == topology_id


@pytest.mark.skipif(not hasattr(pb, "ListFacesRequest"), reason="the contract has no ListFaces")
def test_list_faces_through_ray_equals_the_single_server(ray_server, single_server):
    from topos_sdk.errors import InvalidInputError

    faces = []
    for address in (ray_server, single_server):
        with _client(address) as client:
            faces.append(client.list_faces(PORTRAIT))
            with pytest.raises(InvalidInputError):
                client.list_faces(b"not an image")
    assert faces[0] == faces[1] and len(faces[0].faces) == 1
