"""Starting and stopping a TOPOS gRPC server: engines, worker, interceptors, health, reflection,
metrics, TLS, graceful shutdown. ``topos serve`` calls :func:`serve`; tests and embedders use
:func:`start_in_thread` (optionally with ready-made ``engines``, e.g. a test engine).

Shutdown (SIGTERM / SIGINT, or :meth:`ToposServer.shutdown`): health turns NOT_SERVING, new
Generate calls get UNAVAILABLE, calls in flight get up to ``grace_s`` to finish, then the server
stops and the process exits 0 (1 when the grace period ran out or a second signal cut them off).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from topos_sdk import ToposError, wire
from topos_sdk._proto.v1 import topos_pb2 as pb
from topos_sdk._proto.v1 import topos_pb2_grpc as pb_grpc
from topos_server.engines.base import Engine, get_engine
from topos_server.serving.service import HeadGeneratorService, Limits
from topos_server.serving.work_queue import BatchingWorker

log = logging.getLogger("topos.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["HeadGenerator"].full_name  # "topos.v1.HeadGenerator"
_UNAUTHENTICATED_EXEMPT = ("/grpc.health.v1.Health/",)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 = any free port
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    engines: list[str] = field(default_factory=lambda: ["classic"])  # first = default
    max_batch: int = 4
    max_queue: int = 32
    max_batch_wait_s: float = 0.01
    token: str | None = None  # bearer token clients must send; None = no auth
    tls_cert: bytes | None = None  # PEM certificate chain
    tls_key: bytes | None = None  # PEM private key
    metrics_port: int | None = None  # Prometheus /metrics on host:metrics_port
    grace_s: float = 30.0  # how long in-flight requests may run on after a shutdown signal
    limits: Limits = field(default_factory=Limits)

    @staticmethod
    def read_token(path: str | Path) -> str:
        token = Path(path).read_text().strip()
        if not token or any(c.isspace() for c in token):
            raise ToposError(f"{path}: the token file must hold one token without spaces")
        return token


def resolve_device(device: str) -> str:
    """"auto" → "cuda" when torch sees a GPU, else "cpu"; "cuda" without a GPU is an error."""
    if device == "cpu":
        return device
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device.startswith("cuda") and not has_cuda:
        raise ToposError(f"--device {device}: no CUDA device is visible to torch")
    return device


def _device_names(device: str) -> list[str]:
    if not device.startswith("cuda"):
        return ["cpu"]
    import torch
    return [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]


class Metrics:
    """Prometheus metrics in a registry of their own (several servers may live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("topos_requests", "Generate calls by final status", ["status"], registry=self.registry)
        self.latency = Histogram("topos_request_seconds", "Generate call duration, queue included",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=self.registry)
        self.in_flight = Gauge("topos_requests_in_flight", "Generate calls in progress", registry=self.registry)
        self.queue_depth = Gauge("topos_queue_depth", "Requests waiting for the engine", registry=self.registry)
        self.batch_size = Histogram("topos_batch_size", "Images per engine call", buckets=(1, 2, 4, 8, 16, 32),
                                    registry=self.registry)
        self._http = None

    def serve_http(self, host: str, port: int) -> int:
        from prometheus_client import start_http_server

        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` (health checks are exempt)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or details.method.startswith(_UNAUTHENTICATED_EXEMPT):
            return handler
        supplied = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(supplied.encode(), self._expected):
            return handler
        message = "wrong bearer token" if supplied else \
            "this server needs a bearer token (metadata 'authorization: Bearer <token>')"
        log.info("rejected %s: %s", details.method, message)

        async def reject(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message,
                                trailing_metadata=((wire.ERROR_TYPE_KEY, "Unauthenticated"),))

        factory = grpc.unary_stream_rpc_method_handler if handler.response_streaming \
            else grpc.unary_unary_rpc_method_handler
        return factory(reject, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)


class ToposServer:
    """One grpc.aio server around a HeadGeneratorService; create, ``await start()``, ``await shutdown()``."""

    def __init__(self, config: ServerConfig, engines: dict[str, Engine] | None = None):
        self.config = config
        self.device = resolve_device(config.device) if engines is None else "cpu"
        if engines is None:
            log.info("loading engines %s on %s", ", ".join(config.engines), self.device)
            engines = {name: get_engine(name, cache=None, device=self.device) for name in config.engines}
        self.engines = dict(engines)
        self.metrics = Metrics()
        self.worker = BatchingWorker(self.engines, config.max_batch, config.max_queue, config.max_batch_wait_s,
                                     metrics=self.metrics)
        self.health = HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()
        self._forced = False
        self.service: HeadGeneratorService | None = None

    async def start(self) -> int:
        config, limits = self.config, self.config.limits
        self.service = HeadGeneratorService(
            self.engines, self.worker, limits, default_engine=next(iter(self.engines)),
            auth_required=config.token is not None, devices=_device_names(self.device), metrics=self.metrics)
        interceptors = [BearerTokenInterceptor(config.token)] if config.token else []
        self._server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", limits.max_receive_message_bytes),
            ("grpc.max_send_message_length", limits.max_send_message_bytes),
        ])
        pb_grpc.add_HeadGeneratorServicer_to_server(self.service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._server)
        address = f"{config.host}:{config.port}"
        if config.tls_cert or config.tls_key:
            if not (config.tls_cert and config.tls_key):
                raise ToposError("TLS needs both a certificate and a key")
            creds = grpc.ssl_server_credentials([(config.tls_key, config.tls_cert)])
            self.port = self._server.add_secure_port(address, creds)
        else:
            if config.token and config.host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("a bearer token over plain TCP on %s can be sniffed; use --tls-cert/--tls-key", config.host)
            self.port = self._server.add_insecure_port(address)
        if not self.port:
            raise ToposError(f"cannot listen on {address}")
        self.worker.start()
        await self._server.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if config.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(config.host, config.metrics_port)
        log.info("serving %s on %s:%d (engines %s, device %s, max batch %d, max queue %d, auth %s, tls %s)",
                 SERVICE_NAME, config.host, self.port, ", ".join(self.engines), self.device, config.max_batch,
                 config.max_queue, "on" if config.token else "off", "on" if config.tls_cert else "off")
        return self.port

    async def shutdown(self, grace_s: float | None = None) -> bool:
        """Drain and stop; True when every in-flight request finished within the grace period."""
        grace_s = self.config.grace_s if grace_s is None else grace_s
        log.info("shutting down: NOT_SERVING, %d request(s) in flight, grace %.1f s", self.service.in_flight, grace_s)
        self.service.draining = True
        await self.health.enter_graceful_shutdown()  # every service → NOT_SERVING
        drained = await self.service.wait_idle(grace_s) and not self._forced
        if not drained:
            log.warning("grace period over with %d request(s) still running; cancelling them", self.service.in_flight)
        await self._server.stop(grace=0.5)
        await asyncio.to_thread(self.worker.close, 5.0)
        self.metrics.close()
        self._stopped.set()
        log.info("stopped")
        return drained

    async def force_stop(self) -> None:
        """Cancel every call now (a shutdown in progress then completes at once, reporting not drained)."""
        self._forced = True
        await self._server.stop(grace=0)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def _serve_until_signal(server: ToposServer) -> bool:
    await server.start()
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    await signalled.wait()
    signalled.clear()
    shutdown = asyncio.create_task(server.shutdown())
    second = asyncio.create_task(signalled.wait())
    await asyncio.wait({shutdown, second}, return_when=asyncio.FIRST_COMPLETED)
    if not shutdown.done():  # a second signal: stop waiting for the requests in flight
        log.warning("second signal: cancelling %d request(s) in flight", server.service.in_flight)
        await server.force_stop()
    second.cancel()
    return await shutdown


def serve(config: ServerConfig, engines: dict[str, Engine] | None = None) -> int:
    """Run until SIGTERM/SIGINT, then shut down gracefully. Returns the exit code: 0 when every
    request in flight finished, 1 when the grace period ran out or a second signal cut them off."""
    server = ToposServer(config, engines)
    return 0 if asyncio.run(_serve_until_signal(server)) else 1


class RunningServer:
    """A server on its own event loop in a background thread (tests, embedding)."""

    def __init__(self, config: ServerConfig, engines: dict[str, Engine] | None = None):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="topos-grpc-loop", daemon=True)
        self._thread.start()
        self.server = self._call(self._make, config, engines)
        self.port = self._call(self.server.start)
        self.address = f"{config.host}:{self.port}"

    @staticmethod
    async def _make(config, engines):
        return ToposServer(config, engines)  # built on the loop: its asyncio objects belong there

    def _call(self, fn, *args, timeout: float | None = 60):
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(timeout)

    def shutdown(self, grace_s: float | None = None, wait: bool = True):
        """Start the graceful shutdown; with ``wait`` block until it is done and return whether it drained."""
        future = asyncio.run_coroutine_threadsafe(self.server.shutdown(grace_s), self._loop)
        return future.result() if wait else future

    def close(self) -> None:
        if not self.server._stopped.is_set():
            self.shutdown(grace_s=0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_in_thread(config: ServerConfig, engines: dict[str, Engine] | None = None) -> RunningServer:
    return RunningServer(config, engines)
