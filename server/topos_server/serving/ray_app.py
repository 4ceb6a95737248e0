"""TOPOS on Ray Serve: the unchanged ``topos.v1.HeadGenerator`` contract behind Ray Serve's gRPC proxy,
with replicas across GPUs and machines (``pip install "topos[ray]"``).

The application (named ``topos``)::

    Ray Serve gRPC proxy (every node, port 50051 by default)
      └─ HeadGeneratorIngress        1 replica (ingress_replicas), no CPU: bearer token, engine by name, relays the
         │                           stream, turns Ray failures into the single server's statuses, health
         └─ EngineDeployment         one deployment per engine ("engine-classic"): N replicas or autoscaled,
                                     num_gpus=1 each on a GPU cluster, num_cpus=1 otherwise

Inside each engine replica the single server's own ``HeadGeneratorService`` and ``BatchingWorker``
validate, batch (up to ``max_batch`` requests per engine call) and stream, so every event, message
and status is the one ``topos serve`` produces. Ray adds the routing between replicas and the
bound on waiting requests: ``max_ongoing_requests`` per replica, ``max_queued_requests``
(``--max-queued``) for the requests waiting for a replica — beyond it RESOURCE_EXHAUSTED.

Where Ray's proxy differs from ``topos serve`` (the SDK ``Client`` needs no change for either):

- Trailing metadata (``topos-error``, ``x-request-id``) rides on a message: the proxy forwards it
  with each streamed event, never with a bare error. The ingress therefore sends each event after
  ``queued`` when the next one is ready (progress shows one step late) and the last one with the
  error's status, so a failure after the first progress event (no face,
  an image the engine cannot use, engine error) reaches the client exactly as from ``topos serve``.
  A call that fails before any message (bad token, bad options or image header, unknown engine,
  full queue) carries the same status code and message but no trailing metadata; the SDK maps the
  code to the same exception class, except that an unknown topology id in ``GetTopology`` reads as
  ``EngineUnavailable``.
- No initial metadata: the request id comes in the ``queued`` event and in trailing metadata.
- The client's deadline is not forwarded: when it passes, the proxy cancels the call and the
  cancellation reaches the replica, which stops the engine at its next progress step.
- A replica that dies mid-request (killed, node lost): the ingress re-sends the request to another
  replica while no result message has left yet (the client sees progress restart), and answers
  UNAVAILABLE otherwise, which the SDK retries. A request is answered once either way. The ingress
  only relays; Ray restarts it if it dies, but the calls it was relaying end INTERNAL (Ray's proxy
  reports a lost replica so), hence ``ingress_replicas`` on clusters.

Health: ``grpc.health.v1.Health/Check`` (no token) is answered by the ingress, so it says that the
proxy can route to a live replica of the application; Ray's own
``/ray.serve.RayServeAPIService/Healthz`` says that the proxy itself is up. Ray's controller
health-checks every replica and replaces the ones that fail.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, field, fields
from typing import NoReturn

import grpc
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from topos_sdk import wire
from topos_sdk._proto.v1 import topos_pb2 as pb
from topos_server.serving import ray_proxy_services
from topos_server.serving.server import SERVICE_NAME, ServerConfig, _device_names
from topos_server.serving.service import HeadGeneratorService, Limits
from topos_server.serving.work_queue import BatchingWorker

log = logging.getLogger("topos.server")

APP_NAME = "topos"
ROUTE_PREFIX = "/topos"  # the proxy needs one to list the application; gRPC calls never use it
DEFAULT_GRPC_PORT = 50051  # as `topos serve`
REPLICA_LOSS_RETRIES = 2  # re-sends of one request when the replica serving it dies before any result


@dataclass
class RayServeOptions:
    """What ``topos serve --ray`` and the serve config file's ``args`` set."""

    engines: list[str] = field(default_factory=lambda: ["classic"])  # first = default
    device: str = "auto"  # auto: a GPU per replica when the cluster has GPUs | cpu | cuda
    replicas: int = 1  # per engine; ignored with autoscale
    autoscale: tuple[int, int] | None = None  # (min, max) replicas per engine
    max_queued: int = 32  # requests waiting for a replica, per ingress replica; beyond: RESOURCE_EXHAUSTED
    max_ongoing: int | None = None  # requests one replica holds at once (default: twice its batch)
    max_batch: int = 4
    max_batch_wait_s: float = 0.01
    token_file: str | None = None  # read by the ingress replica on its node
    max_image_bytes: int = Limits.max_image_bytes
    grace_s: float = 30.0  # how long a replica being stopped may finish its requests
    ingress_replicas: int = 1  # more for a cluster that must survive losing the ingress's node

    @classmethod
    def from_args(cls, args: dict) -> "RayServeOptions":
        """From a serve config's ``args`` (plain YAML values); ``autoscale`` may be "MIN:MAX"."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown topos app argument(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(args)
        if isinstance(values.get("autoscale"), str):
            values["autoscale"] = parse_autoscale(values["autoscale"])
        elif isinstance(values.get("autoscale"), list):  # [MIN, MAX] in YAML
            values["autoscale"] = tuple(values["autoscale"])
        if isinstance(values.get("engines"), str):
            values["engines"] = [values["engines"]]
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        from topos_server.engines.base import engine_names

        unknown = [name for name in self.engines if name not in engine_names()]
        if not self.engines or unknown:
            raise ValueError(f"engines must name at least one of {', '.join(engine_names())}; got {self.engines!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda for Ray replicas, got {self.device!r}")
        counts = [("replicas", self.replicas), ("max_queued", self.max_queued), ("max_batch", self.max_batch),
                  ("ingress_replicas", self.ingress_replicas)]
        if self.max_ongoing is not None:
            counts.append(("max_ongoing", self.max_ongoing))
        for name, value in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high >= 1):
                raise ValueError(f"autoscale needs whole numbers 0 <= MIN <= MAX, MAX >= 1; got {low}:{high}")
        if not (self.max_batch_wait_s >= 0 and self.grace_s >= 0):
            raise ValueError("max_batch_wait_s and grace_s must not be negative")


def parse_autoscale(text: str) -> tuple[int, int]:
    """"MIN:MAX" → (MIN, MAX)."""
    try:
        low, high = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"autoscale must be MIN:MAX replicas, e.g. 1:4; got {text!r}") from None
    return low, high


@dataclass(frozen=True)
class CallStatus:
    """How a call ended when it did not end OK: what the single server passes to ``context.abort``."""

    code: str  # grpc.StatusCode name
    message: str
    error_type: str = ""  # the SDK exception (trailing metadata topos-error)
    request_id: str = ""


class CallAborted(Exception):
    """Raised by :meth:`ReplicaCallContext.abort`, as grpc.aio's ``context.abort`` raises."""


class ReplicaCallContext:
    """The part of ``grpc.aio.ServicerContext`` that ``HeadGeneratorService`` uses, for calls that reach
    an engine replica through a deployment handle instead of a gRPC server."""

    def __init__(self, metadata: list[tuple[str, str]], peer: str = "ray-serve-ingress"):
        self._metadata, self._peer = tuple(metadata), peer
        self.status: CallStatus | None = None

    async def send_initial_metadata(self, metadata) -> None:
        pass  # Ray's proxy sends none; the request id travels in the queued event

    def invocation_metadata(self):
        return self._metadata

    def time_remaining(self) -> None:
        return None  # the proxy cancels the call when the client's deadline passes

    def peer(self) -> str:
        return self._peer

    def code(self):
        return grpc.StatusCode[self.status.code] if self.status else None

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata=()) -> NoReturn:
        trailing = dict(trailing_metadata)
        self.status = CallStatus(code.name, details, trailing.get(wire.ERROR_TYPE_KEY, ""),
                                 trailing.get(wire.REQUEST_ID_KEY, ""))
        raise CallAborted(details)


@serve.deployment(ray_actor_options={"num_cpus": 1}, health_check_period_s=10)
class EngineDeployment:
    """One engine behind the single server's servicer and batching worker; called by the ingress."""

    def __init__(self, engine_name: str, device: str, max_batch: int, max_batch_wait_s: float,
                 max_queue: int, max_image_bytes: int):
        from topos_server.engines.base import get_engine

        _log_through_ray_serve()
        engine = get_engine(engine_name, cache=None, device=device)
        engines = {engine_name: engine}
        self.worker = BatchingWorker(engines, max_batch=max_batch, max_queue=max_queue, max_wait_s=max_batch_wait_s)
        self.worker.start()
        limits = Limits(max_image_bytes=max_image_bytes, max_receive_message_bytes=max_image_bytes + (1 << 20))
        self.service = HeadGeneratorService(engines, self.worker, limits, default_engine=engine_name,
                                            devices=_device_names(device))
        log.info("engine replica %s ready on %s (pid %d)", engine_name, device, os.getpid())

    async def generate_events(self, request_bytes: bytes, metadata: list[tuple[str, str]], peer: str):
        """The Generate stream: serialized GenerateEvents, then a CallStatus if the call failed."""
        context = ReplicaCallContext(metadata, peer)
        try:
            async for event in self.service.Generate(pb.GenerateRequest.FromString(request_bytes), context):
                yield event.SerializeToString()
        except CallAborted:
            yield context.status

    async def call_unary(self, method: str, request_bytes: bytes, metadata: list[tuple[str, str]]) -> bytes | CallStatus:
        """A unary RPC of the servicer by name (ListFaces, GetServerInfo): the serialized reply or a CallStatus."""
        context = ReplicaCallContext(metadata)
        try:
            reply = await getattr(self.service, method)(_message_type(method, "input").FromString(request_bytes),
                                                         context)
        except CallAborted:
            return context.status
        return reply.SerializeToString()

    def topology_parts(self, topology_id: str) -> list[bytes] | None:
        topology = self.service.topologies.get(topology_id)
        if topology is None:
            return None
        return [part.SerializeToString() for part in wire.topology_parts(topology, self.service.limits.piece_bytes)]

    def __del__(self):  # Ray Serve calls it when it stops the replica, after in-flight requests finished
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.close(timeout=5.0)


def _log_through_ray_serve() -> None:
    """Send this replica's ``topos`` log records (rid=... queued / started / finished) to the handlers
    Ray Serve gives its own logger: the replica's log file and, at INFO, the driver's console."""
    topos_logger = logging.getLogger("topos")
    for handler in logging.getLogger("ray.serve").handlers:
        if handler not in topos_logger.handlers:
            topos_logger.addHandler(handler)
    topos_logger.setLevel(logging.INFO)
    topos_logger.propagate = False


def _message_type(method: str, direction: str):
    """The request ("input") or reply ("output") message class of a HeadGenerator method."""
    descriptor = pb.DESCRIPTOR.services_by_name["HeadGenerator"].methods_by_name[method]
    return getattr(pb, getattr(descriptor, f"{direction}_type").name)


def _forwarded_metadata(grpc_context) -> list[tuple[str, str]]:
    """What the engine replica's servicer reads from the call's metadata: the request id (never the token)."""
    return [(key, value) for key, value in grpc_context.invocation_metadata() if key == wire.REQUEST_ID_KEY]


class RequestRejected(Exception):
    """Ends a call from the ingress with the status already set on its gRPC context."""


def _reject(grpc_context, status: CallStatus) -> NoReturn:
    _set_status(grpc_context, status)
    raise RequestRejected(status.message)


def _set_status(grpc_context, status: CallStatus) -> None:
    grpc_context.set_code(grpc.StatusCode[status.code])
    grpc_context.set_details(status.message)
    trailing = [(wire.ERROR_TYPE_KEY, status.error_type)] if status.error_type else []
    if status.request_id:
        trailing.append((wire.REQUEST_ID_KEY, status.request_id))
    grpc_context.set_trailing_metadata(trailing)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class HeadGeneratorIngress:
    """What Ray Serve's gRPC proxy calls: topos.v1.HeadGenerator and grpc.health.v1.Health methods."""

    def __init__(self, engines: dict, token_file: str | None = None, max_queued: int = 32):
        _log_through_ray_serve()
        self.engines = engines  # engine name → DeploymentHandle of its EngineDeployment
        self.default_engine = next(iter(engines))
        self.max_queued = max_queued
        self._authorization = f"Bearer {ServerConfig.read_token(token_file)}".encode() if token_file else None
        # fixed for the life of a deployment; cached so that these calls never wait behind engine work
        self._topology_parts: dict[str, list[bytes]] = {}
        self._server_info: pb.ServerInfo | None = None

    # ---- topos.v1.HeadGenerator ------------------------------------------------------------
    async def Generate(self, request: pb.GenerateRequest, grpc_context):
        self._authorize(grpc_context)
        handle = self._engine_handle(request.engine, grpc_context)
        metadata = _forwarded_metadata(grpc_context)
        held: pb.GenerateEvent | None = None  # one event held back to carry a failure's trailing metadata
        request_id, result_started, failure = "", False, None
        for attempt in range(REPLICA_LOSS_RETRIES + 1):
            stream = handle.options(stream=True).generate_events.remote(request.SerializeToString(), metadata,
                                                                        grpc_context.peer())
            try:
                async for item in stream:
                    if isinstance(item, CallStatus):
                        failure = item
                        break
                    event = pb.GenerateEvent.FromString(item)
                    kind = event.WhichOneof("event")
                    if kind == "queued":
                        if request_id:
                            continue  # a re-sent request: the client has its queued event already
                        request_id = request.request_id = event.queued.request_id
                        grpc_context.set_trailing_metadata([(wire.REQUEST_ID_KEY, request_id)])
                        yield event
                        continue
                    result_started = result_started or kind != "progress"
                    if held is not None:
                        yield held
                    held = event
                break
            except BackPressureError:
                failure = CallStatus("RESOURCE_EXHAUSTED", f"the server's queue is full ({self.max_queued} requests "
                                     f"waiting); retry later", "ServerBusy", request_id)
                break
            except RayActorError as exc:
                if result_started or attempt == REPLICA_LOSS_RETRIES:
                    failure = CallStatus("UNAVAILABLE", "the replica serving this request stopped; retry",
                                         "ServerUnavailable", request_id)
                    break
                log.warning("rid=%s replica lost (%s); re-sending the request", request_id or "-", type(exc).__name__)
            except (asyncio.CancelledError, GeneratorExit):  # the client went away: stop the replica's work
                stream.cancel()
                raise
        if failure is not None:
            if held is None:
                _reject(grpc_context, failure)
            _set_status(grpc_context, failure)
        if held is not None:
            yield held

    async def GetTopology(self, request: pb.GetTopologyRequest, grpc_context):
        self._authorize(grpc_context)
        if request.topology_id not in self._topology_parts:
            for handle in self.engines.values():
                parts = await handle.topology_parts.remote(request.topology_id)
                if parts is not None:
                    self._topology_parts[request.topology_id] = parts
                    break
        parts = self._topology_parts.get(request.topology_id)
        if parts is None:
            _reject(grpc_context, CallStatus("NOT_FOUND", f"no topology {request.topology_id!r} here",
                                             "TopologyMismatchError"))
        for part in parts:
            yield pb.TopologyPart.FromString(part)

    async def GetServerInfo(self, request: pb.GetServerInfoRequest, grpc_context) -> pb.ServerInfo:
        import ray

        self._authorize(grpc_context)
        if self._server_info is not None:
            return self._server_info
        merged = pb.ServerInfo()
        for handle in self.engines.values():
            info = pb.ServerInfo.FromString(self._reply_or_reject(
                grpc_context, await handle.call_unary.remote("GetServerInfo", request.SerializeToString(), [])))
            if not merged.server_version:
                merged.CopyFrom(info)
                del merged.engines[:]
                del merged.devices[:]
            merged.engines.extend(info.engines)
            merged.devices.extend(d for d in info.devices if d not in merged.devices)
        merged.default_engine = self.default_engine
        merged.auth_required = self._authorization is not None
        merged.limits.max_queue = self.max_queued
        merged.versions["ray"] = ray.__version__
        self._server_info = merged
        return merged

    async def ListFaces(self, request, grpc_context):
        self._authorize(grpc_context)
        handle = self._engine_handle(request.engine, grpc_context)
        reply = await handle.call_unary.remote("ListFaces", request.SerializeToString(),
                                               _forwarded_metadata(grpc_context))
        return _message_type("ListFaces", "output").FromString(self._reply_or_reject(grpc_context, reply))

    # ---- grpc.health.v1.Health -------------------------------------------------------------
    async def Check(self, request, grpc_context):
        from grpc_health.v1 import health_pb2

        if request.service not in ("", SERVICE_NAME):
            _reject(grpc_context, CallStatus("NOT_FOUND", f"unknown service {request.service!r}"))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(self, request, grpc_context):
        _reject(grpc_context, CallStatus("UNIMPLEMENTED", "Health/Watch is not served on Ray; poll Health/Check"))
        yield  # an async generator, as the proxy streams this method's replies

    # ---- helpers ---------------------------------------------------------------------------
    def _authorize(self, grpc_context) -> None:
        if self._authorization is None:
            return
        supplied = dict(grpc_context.invocation_metadata()).get("authorization", "")
        if hmac.compare_digest(supplied.encode(), self._authorization):
            return
        _reject(grpc_context, CallStatus(
            "UNAUTHENTICATED", "wrong bearer token" if supplied else
            "this server needs a bearer token (metadata 'authorization: Bearer <token>')", "Unauthenticated"))

    def _engine_handle(self, engine: str, grpc_context):
        name = engine or self.default_engine
        if name not in self.engines:
            _reject(grpc_context, CallStatus("NOT_FOUND", f"engine {name!r} is not served here; available: "
                                                          f"{', '.join(self.engines)}", "EngineUnavailable"))
        return self.engines[name]

    @staticmethod
    def _reply_or_reject(grpc_context, reply: bytes | CallStatus) -> bytes:
        if isinstance(reply, CallStatus):
            _reject(grpc_context, reply)
        return reply


# ---- building and running the application ----------------------------------------------------
def replica_device(device: str) -> str:
    """"auto" → "cuda" when the Ray cluster has GPUs (each replica then gets one), else "cpu"."""
    if device != "auto":
        return device
    import ray

    return "cuda" if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def topos_application(options: RayServeOptions):
    """The ``topos`` Ray Serve application: the ingress bound to one deployment per engine."""
    options.check()
    device = replica_device(options.device)
    resources = {"num_gpus": 1, "num_cpus": 1} if device == "cuda" else {"num_cpus": 1}
    engines = {}
    for name in options.engines:
        max_ongoing = options.max_ongoing or 2 * options.max_batch
        scaling = {"autoscaling_config": {"min_replicas": options.autoscale[0], "max_replicas": options.autoscale[1],
                                          "target_ongoing_requests": max(1, max_ongoing // 2)}} \
            if options.autoscale else {"num_replicas": options.replicas}
        deployment = EngineDeployment.options(
            name=f"engine-{name}", ray_actor_options=resources, max_ongoing_requests=max_ongoing,
            max_queued_requests=options.max_queued, graceful_shutdown_timeout_s=options.grace_s, **scaling)
        engines[name] = deployment.bind(name, device, options.max_batch, options.max_batch_wait_s,
                                        2 * max_ongoing, options.max_image_bytes)
    return HeadGeneratorIngress.options(num_replicas=options.ingress_replicas).bind(
        engines, options.token_file, options.max_queued)


def build_app(args: dict):
    """Application builder for ``serve run`` / ``serve deploy``: ``import_path:
    topos_server.serving.ray_app:build_app`` with :class:`RayServeOptions` fields as ``args``."""
    return topos_application(RayServeOptions.from_args(args or {}))


def grpc_options(port: int = DEFAULT_GRPC_PORT) -> dict:
    return {"port": port, "grpc_servicer_functions": ray_proxy_services.SERVICER_FUNCTIONS}


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (Serve always starts an HTTP proxy; TOPOS needs only its gRPC one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deploy(options: RayServeOptions, port: int = DEFAULT_GRPC_PORT, http_port: int | None = None) -> None:
    """Start Serve's proxies (gRPC on ``port``, all interfaces) on the connected Ray cluster and run the
    application; returns once every replica is up."""
    serve.start(grpc_options=grpc_options(port),
                http_options={"host": "127.0.0.1", "port": http_port or free_port()})
    serve.run(topos_application(options), name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False)


def serve_on_ray(options: RayServeOptions, address: str | None, port: int = DEFAULT_GRPC_PORT) -> int:
    """``topos serve --ray [ADDRESS]``: join the cluster at ``address`` (or start a local Ray instance),
    deploy, serve until SIGTERM/SIGINT, then remove the application (replicas finish their requests
    within ``grace_s``) and stop the local instance if it was started here."""
    import ray

    options.check()
    started_here = address is None
    if started_here:
        replicas = options.autoscale[1] if options.autoscale else options.replicas
        ray.init(num_cpus=max(os.cpu_count() or 1, replicas * len(options.engines)), include_dashboard=False)
    else:
        ray.init(address=address)
    stop = threading.Event()
    try:
        deploy(options, port)
        log.info("serving %s through Ray Serve's gRPC proxy on port %d (engines %s; %s replicas each)",
                 SERVICE_NAME, port, ", ".join(options.engines),
                 "%d:%d autoscaled" % options.autoscale if options.autoscale else options.replicas)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        log.info("stopping: removing the %s application", APP_NAME)
        serve.delete(APP_NAME)
    finally:
        if started_here:
            serve.shutdown()
            ray.shutdown()
    return 0
