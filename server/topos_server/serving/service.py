"""The ``topos.v1.HeadGenerator`` gRPC servicer (grpc.aio): validates requests, queues them on the
:class:`~topos_server.serving.work_queue.BatchingWorker` and streams events and results back.

Status of each failure (message = one line for a person; trailing metadata ``topos-error`` names
the SDK exception, ``x-request-id`` the request):

==============================================  =====================  ====================
failure                                         status                 topos-error
==============================================  =====================  ====================
empty / undecodable / oversize image, bad       INVALID_ARGUMENT       InvalidInputError
options (seed, texture size), wrong field type
no face in the portrait                         INVALID_ARGUMENT       NoFaceFound
engine not served here                          NOT_FOUND              EngineUnavailable
unknown studio topology name                    INVALID_ARGUMENT       InvalidInputError
unknown topology id                             NOT_FOUND              TopologyMismatchError
queue full                                      RESOURCE_EXHAUSTED     ServerBusy
missing / wrong bearer token (interceptor)      UNAUTHENTICATED        Unauthenticated
deadline passed                                 DEADLINE_EXCEEDED      (gRPC's own)
call cancelled                                  CANCELLED              (gRPC's own)
server draining                                 UNAVAILABLE            ServerUnavailable
other TOPOS error on the server (assets gone)   FAILED_PRECONDITION    RemoteError
engine bug                                      INTERNAL               RemoteError
==============================================  =====================  ====================
"""

from __future__ import annotations

import asyncio
import logging
import platform
import re
import sys
import time
import uuid
from dataclasses import dataclass

import grpc
import numpy as np

import topos_sdk
from topos_sdk import InvalidInputError, ReferenceTopology, wire
from topos_sdk._proto.v1 import topos_pb2 as pb
from topos_sdk._proto.v1 import topos_pb2_grpc as pb_grpc
from topos_server.engines.base import MAX_VIEWS, TEXTURE_SIZES, Engine, EngineUnavailable, GenerateOptions
from topos_server.serving.work_queue import BatchingWorker, Job, JobCancelled, QueueFull

log = logging.getLogger("topos.server")

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int = 16 << 20
    max_image_pixels: int = 64_000_000
    piece_bytes: int = wire.PIECE_BYTES
    max_receive_message_bytes: int = (16 << 20) + (1 << 20)  # one image plus the request's other fields
    max_send_message_bytes: int = 4 << 20  # pieces are ≤ piece_bytes


class HeadGeneratorService(pb_grpc.HeadGeneratorServicer):
    def __init__(self, engines: dict[str, Engine], worker: BatchingWorker, limits: Limits = Limits(),
                 default_engine: str | None = None, auth_required: bool = False, devices: list[str] = (),
                 metrics=None):
        if not engines:
            raise ValueError("the server needs at least one engine")
        self.engines, self.worker, self.limits, self.metrics = engines, worker, limits, metrics
        self.default_engine = default_engine or next(iter(engines))
        self.auth_required, self.devices = auth_required, list(devices)
        self.topologies: dict[str, ReferenceTopology] = {}
        for engine in engines.values():
            topology = getattr(engine, "topology", None)
            if isinstance(topology, ReferenceTopology):
                self.topologies[topology.topology_id] = topology
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no Generate call is in flight; False if ``timeout`` passed first."""
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    # ---- Generate --------------------------------------------------------------------------
    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        started = time.monotonic()
        request_id = self._request_id(request, context)
        await context.send_initial_metadata(((wire.REQUEST_ID_KEY, request_id),))
        self.in_flight += 1
        self._idle.clear()
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        job = None
        outcome = "OK"
        try:
            if self.draining:
                await self._abort(context, request_id, grpc.StatusCode.UNAVAILABLE,
                                  "the server is shutting down; retry on another server", "ServerUnavailable")
            try:
                engine_name, image, options = self._parse(request)
                studio = self._studio_topology(request.topology)
            except InvalidInputError as exc:
                await self._abort_for(context, request_id, exc)
            deadline = context.time_remaining()
            job = Job(request_id, engine_name, image, options, asyncio.get_running_loop(),
                      deadline=None if deadline is None else time.monotonic() + deadline)
            try:
                position = self.worker.submit(job)
            except QueueFull as exc:
                await self._abort(context, request_id, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), "ServerBusy")
            log.info("rid=%s queued engine=%s seed=%d texture=%d position=%d peer=%s", request_id, engine_name,
                     options.seed, options.texture_size, position, context.peer())
            yield pb.GenerateEvent(queued=pb.Queued(request_id=request_id, position=position))

            while True:
                kind, *payload = await job.events.get()
                if kind == "progress":
                    yield pb.GenerateEvent(progress=pb.Progress(stage=payload[0], fraction=payload[1]))
                elif kind == "error":
                    exc = payload[0]
                    if isinstance(exc, JobCancelled):
                        await self._abort(context, request_id, grpc.StatusCode.CANCELLED, str(exc), "RequestCancelled")
                    await self._abort_for(context, request_id, exc)
                else:
                    result = payload[0]
                    if studio is not None:
                        result = await asyncio.to_thread(studio.transfer, result)
                    if result.topology is not None:
                        self.topologies.setdefault(result.topology_id, result.topology)
                    missing = None if result.topology_id in request.cached_topology_ids \
                        else self.topologies.get(result.topology_id)
                    # encoding (zlib on every texture tile) runs off the event loop
                    events = await asyncio.to_thread(
                        lambda: list(wire.result_events(result, self.limits.piece_bytes, topology=missing)))
                    for event in events:
                        yield event
                    yield wire.done_event(result, time.monotonic() - started)
                    break
        except asyncio.CancelledError:  # the caller cancelled or the deadline passed
            outcome = "DEADLINE_EXCEEDED" if job is not None and job.deadline and time.monotonic() > job.deadline \
                else "CANCELLED"
            raise
        finally:
            code = context.code()
            status = code.name if isinstance(code, grpc.StatusCode) and outcome == "OK" else outcome
            if job is not None:
                job.cancelled.set()  # stops the engine at its next progress call if still running
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
            seconds = time.monotonic() - started
            if self.metrics is not None:
                self.metrics.in_flight.dec()
                self.metrics.requests.labels(status=status).inc()
                self.metrics.latency.observe(seconds)
            log.info("rid=%s finished status=%s in %.3f s", request_id, status, seconds)

    @staticmethod
    def _studio_topology(name: str):
        """The studio topology a request asks for (None: the reference), from this server's asset cache."""
        if not name:
            return None
        from topos_server.pipelines.studio_topology import load_studio_topology

        return load_studio_topology(name)

    def _request_id(self, request: pb.GenerateRequest, context) -> str:
        supplied = request.request_id or dict(context.invocation_metadata() or ()).get(wire.REQUEST_ID_KEY, "")
        return supplied if _REQUEST_ID_OK.match(supplied) else uuid.uuid4().hex[:16]

    def _parse(self, request: pb.GenerateRequest) -> tuple[str, bytes | np.ndarray, GenerateOptions]:
        from google.protobuf import unknown_fields

        known = {f.number: f.name for f in request.DESCRIPTOR.fields}
        for unknown in unknown_fields.UnknownFieldSet(request):
            if unknown.field_number in known:  # a known field sent with the wrong wire type
                raise InvalidInputError(f"field {known[unknown.field_number]!r} has the wrong type "
                                        f"(see proto/topos/v1/topos.proto)")
        engine_name = request.engine or self.default_engine
        if engine_name not in self.engines:
            raise EngineUnavailable(f"engine {engine_name!r} is not served here; available: {', '.join(self.engines)}")
        options = GenerateOptions(seed=request.seed, texture_size=request.texture_size or 1024,
                                  focal_length_px=request.focal_length_px or None,
                                  face_index=request.face_index if request.HasField("face_index") else None,
                                  texture=request.texture or "bake")
        image = self._image(request)
        if len(request.same_person_views) >= MAX_VIEWS:
            raise InvalidInputError(f"{1 + len(request.same_person_views)} views of one person; at most {MAX_VIEWS}")
        if request.same_person_views:  # several photos of one person: the engine fits them as one head
            image = (image, *(self._encoded_image(view) for view in request.same_person_views))
        return engine_name, image, options

    def _image(self, request: pb.GenerateRequest | pb.ListFacesRequest) -> bytes | np.ndarray:
        limits = self.limits
        which = request.WhichOneof("image")
        if which is None:
            raise InvalidInputError("the request holds no image")
        if which == "raw_image":
            raw = request.raw_image
            if raw.width * raw.height == 0 or len(raw.rgb) != raw.width * raw.height * 3:
                raise InvalidInputError(f"raw image: {len(raw.rgb)} bytes do not make a {raw.width}×{raw.height} RGB image")
            if raw.width * raw.height > limits.max_image_pixels:
                raise InvalidInputError(f"image is {raw.width}×{raw.height} pixels; the limit is {limits.max_image_pixels}")
            return np.frombuffer(raw.rgb, np.uint8).reshape(raw.height, raw.width, 3)  # (H, W, 3)
        return self._encoded_image(request.encoded_image)

    def _encoded_image(self, data: bytes) -> bytes:
        limits = self.limits
        if not data:
            raise InvalidInputError("the image is empty (0 bytes)")
        if len(data) > limits.max_image_bytes:
            raise InvalidInputError(f"image is {len(data) / 2**20:.1f} MiB; the limit is "
                                    f"{limits.max_image_bytes / 2**20:.1f} MiB")
        width, height = _encoded_image_size(data)
        if width * height > limits.max_image_pixels:
            raise InvalidInputError(f"image is {width}×{height} pixels; the limit is {limits.max_image_pixels} pixels")
        return data

    async def _abort_for(self, context, request_id: str, exc: BaseException):
        code = wire.status_for_exception(exc)
        message = str(exc) if code != grpc.StatusCode.INTERNAL else f"internal error ({type(exc).__name__}: {exc})"
        return await self._abort(context, request_id, code, message, wire.error_type_name(exc))

    async def _abort(self, context, request_id: str, code: grpc.StatusCode, message: str, error_type: str):
        """End the call with ``code`` (raises; nothing after it runs)."""
        log.info("rid=%s rejected %s: %s", request_id, code.name, message)
        await context.abort(code, message, trailing_metadata=(
            (wire.ERROR_TYPE_KEY, error_type), (wire.REQUEST_ID_KEY, request_id)))

    # ---- ListFaces -------------------------------------------------------------------------
    async def ListFaces(self, request: pb.ListFacesRequest, context) -> pb.ListFacesResponse:
        request_id = uuid.uuid4().hex[:16]
        try:
            engine_name = request.engine or self.default_engine
            engine = self.engines.get(engine_name)
            if engine is None:
                raise EngineUnavailable(f"engine {engine_name!r} is not served here; available: {', '.join(self.engines)}")
            if not hasattr(engine, "list_faces"):
                raise EngineUnavailable(f"engine {engine_name!r} cannot list faces")
            image = self._image(request)
            faces = await asyncio.to_thread(engine.list_faces, image)  # detection: off the event loop
        except Exception as exc:  # every failure becomes its status, bugs INTERNAL
            await self._abort_for(context, request_id, exc)
        return wire.faces_to_pb(faces)

    # ---- GetTopology / GetServerInfo -------------------------------------------------------
    async def GetTopology(self, request: pb.GetTopologyRequest, context):
        topology = self.topologies.get(request.topology_id)
        if topology is None:  # a studio topology registered here but not used by a request yet
            from topos_server.pipelines.studio_topology import TopologyStore

            studio = await asyncio.to_thread(TopologyStore().find, request.topology_id)
            topology = None if studio is None else self.topologies.setdefault(request.topology_id, studio.topology)
        if topology is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no topology {request.topology_id!r} here; known: {', '.join(self.topologies) or 'none yet'}",
                                trailing_metadata=((wire.ERROR_TYPE_KEY, "TopologyMismatchError"),))
        for part in wire.topology_parts(topology, self.limits.piece_bytes):
            yield part

    async def GetServerInfo(self, request: pb.GetServerInfoRequest, context) -> pb.ServerInfo:
        import google.protobuf

        versions = {"topos": topos_sdk.__version__, "python": platform.python_version(),
                    "grpcio": grpc.__version__, "protobuf": google.protobuf.__version__}
        if "torch" in sys.modules:
            versions["torch"] = sys.modules["torch"].__version__
        engines = []
        for name, engine in self.engines.items():
            topology = getattr(engine, "topology", None)
            engines.append(pb.EngineInfo(
                name=name, device=str(getattr(engine, "device", "cpu")), max_batch_size=self.worker.batch_limit(name),
                topology_ids=[topology.topology_id] if isinstance(topology, ReferenceTopology) else [],
                texture_sizes=TEXTURE_SIZES))
        limits = self.limits
        return pb.ServerInfo(
            server_version=topos_sdk.__version__, versions=versions, engines=engines,
            default_engine=self.default_engine, devices=self.devices, auth_required=self.auth_required,
            limits=pb.Limits(max_image_bytes=limits.max_image_bytes, max_image_pixels=limits.max_image_pixels,
                             max_queue=self.worker.max_queue, max_batch=self.worker.max_batch,
                             max_batch_wait_s=self.worker.max_wait_s,
                             max_receive_message_bytes=limits.max_receive_message_bytes,
                             max_send_message_bytes=limits.max_send_message_bytes,
                             max_piece_bytes=limits.piece_bytes))


def _encoded_image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image header without decoding pixels; InvalidInputError if unreadable."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInputError("image has too many pixels (decompression bomb guard)") from None
    except Exception:
        raise InvalidInputError(f"not a readable JPEG/PNG/WebP/TIFF image ({len(data)} bytes)") from None
