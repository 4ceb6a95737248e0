"""Talk to a TOPOS server (``topos serve``): portrait in, :class:`~topos_sdk.HeadResult` out.

Thin on purpose (numpy + grpcio + protobuf; never torch), so it runs inside Maya and Houdini::

    from topos_sdk.client import Client
    with Client("gpu-box:50051", token=open("token.txt").read().strip()) as client:
        head = client.generate("portrait.jpg", seed=7, on_progress=print)

Failures raise typed SDK exceptions carrying the server's message: ``InvalidInputError`` /
``NoFaceFound`` / ``EngineUnavailable`` (bad input), ``Unauthenticated``, ``ServerBusy`` (queue full),
``DeadlineExceeded``, ``RequestCancelled``, ``ServerUnavailable`` (after retries with backoff —
UNAVAILABLE is the only status retried). A result's topology comes with the first result that uses
it and is cached in-process by id; later requests tell the server which ids are cached.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import grpc
import numpy as np

from . import wire
from ._proto.v1 import topos_pb2 as pb
from ._proto.v1 import topos_pb2_grpc as pb_grpc
from .errors import InvalidInputError, TopologyMismatchError
from .faces import FaceList
from .generate import check_focal_length, check_texture
from .head_result import HeadResult
from .topology import ReferenceTopology

# on_progress(stage, fraction of the whole request in [0, 1]); raise from it to cancel the request
Progress = Callable[[str, float], None]

MAX_SEND_BYTES = (16 << 20) + (1 << 20)  # one image of up to 16 MiB plus the other fields
MAX_RECEIVE_BYTES = 8 << 20  # result pieces are ≤ 1 MiB; headroom for larger server piece sizes

_topology_cache: dict[str, ReferenceTopology] = {}  # topology ids are content hashes: safe to share
_topology_lock = threading.Lock()


def _read_pem(value: bytes | str | os.PathLike) -> bytes:
    return value if isinstance(value, bytes) else Path(value).read_bytes()


class Client:
    """A connection to one server.

    ``address``: ``host:port``. ``token``: bearer token when the server has one. ``tls``: None / False
    for plain TCP, True for TLS with the system's root certificates, or the PEM root certificate(s)
    (bytes or a file path) of a private CA. ``timeout``: seconds one request may take, queue included.
    ``retries``: extra attempts when the server is UNAVAILABLE, with exponential backoff from ``backoff_s``.
    """

    def __init__(self, address: str, token: str | None = None, tls: bool | bytes | str | os.PathLike | None = None,
                 timeout: float = 600.0, retries: int = 4, backoff_s: float = 0.25, max_backoff_s: float = 8.0):
        self.address, self.timeout = address, timeout
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_send_message_length", MAX_SEND_BYTES),
                   ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if tls is None or tls is False:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            roots = None if tls is True else _read_pem(tls)
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(roots), options=options)
        self._stub = pb_grpc.HeadGeneratorStub(self._channel)

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- calls -----------------------------------------------------------------------------
    def generate(self, image, *, seed: int = 0, engine: str | None = None, texture_size: int = 1024,
                 on_progress: Progress | None = None, focal_length_px: float | None = None,
                 timeout: float | None = None, request_id: str | None = None,
                 face_index: int | None = None, topology: str | None = None, texture: str = "bake") -> HeadResult:
        """One portrait (encoded bytes, an image file path, or an (H, W, 3) uint8 RGB array) → HeadResult
        with its topology attached. Deterministic for a given image, engine and seed. ``face_index``:
        which face of a group photo (as :meth:`list_faces` numbers them); None: the server's choice
        (largest, most frontal, least occluded; the result's ``provenance.extra["face"]`` says which).
        ``topology``: a studio topology registered on the server (``topos topology add``); None: the reference.
        ``texture``: "bake" (the photo bake) or "learned" (TOPOS-Texture completes it)."""
        request = self._request(image, seed, engine, texture_size, focal_length_px, request_id)
        request.topology = topology or ""
        request.texture = check_texture(texture)
        if face_index is not None:
            if isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer)) or face_index < 0:
                raise InvalidInputError(f"face index must be a non-negative integer, got {face_index!r}")
            request.face_index = int(face_index)
        return self._generate(request, on_progress, timeout, request_id)

    def generate_same_person(self, images: Sequence, *, seed: int = 0, engine: str | None = None,
                             texture_size: int = 1024, on_progress: Progress | None = None,
                             focal_length_px: float | None = None, timeout: float | None = None,
                             request_id: str | None = None, topology: str | None = None,
                             texture: str = "bake") -> HeadResult:
        """Several photos of one person (encoded bytes or file paths; the first may be an array) → one
        head: one identity fitted to every view, textures merged; ``view_cameras`` holds each view's camera."""
        if len(images) < 2:
            raise InvalidInputError(f"generate_same_person needs at least 2 photos, got {len(images)}")
        request = self._request(images[0], seed, engine, texture_size, focal_length_px, request_id)
        request.topology = topology or ""
        request.texture = check_texture(texture)
        for view in images[1:]:
            view_request = self._request(view, seed, engine, texture_size, focal_length_px, request_id)
            if view_request.WhichOneof("image") != "encoded_image":
                raise InvalidInputError("the further views of one person travel encoded: give bytes or file paths")
            request.same_person_views.append(view_request.encoded_image)
        return self._generate(request, on_progress, timeout, request_id)

    def list_faces(self, image, *, engine: str | None = None, timeout: float = 60.0) -> FaceList:
        """The faces of a (group) photo, numbered left to right, with the one ``generate`` takes by default."""
        request = pb.ListFacesRequest(engine=engine or "")
        portrait = self._request(image, 0, engine, 1024, None, None)
        if portrait.WhichOneof("image") == "raw_image":
            request.raw_image.CopyFrom(portrait.raw_image)
        else:
            request.encoded_image = portrait.encoded_image
        response = self._with_retries(
            lambda remaining: self._stub.ListFaces(request, timeout=remaining, metadata=self._metadata),
            time.monotonic() + timeout)
        return wire.faces_from_pb(response)

    def _generate(self, request: pb.GenerateRequest, on_progress: Progress | None, timeout: float | None,
                  request_id: str | None) -> HeadResult:
        with _topology_lock:
            request.cached_topology_ids.extend(_topology_cache)
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout

        def attempt(remaining: float) -> HeadResult:
            call = self._stub.Generate(request, timeout=remaining, metadata=self._metadata)
            assembler = wire.ResultAssembler(request_id=request_id)
            try:
                for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "queued":
                        assembler.request_id = event.queued.request_id
                        if on_progress is not None:
                            on_progress("queued", 0.0)
                    elif kind == "progress":
                        if on_progress is not None:
                            on_progress(event.progress.stage, event.progress.fraction)
                    else:
                        assembler.add(event)
            except grpc.RpcError:
                raise
            except BaseException:  # on_progress raised (or the caller interrupted): stop the server's work
                call.cancel()
                raise
            result = assembler.result()
            streamed = assembler.streamed_topology()
            if streamed is not None:
                with _topology_lock:
                    result.topology = _topology_cache.setdefault(streamed.topology_id, streamed)
            else:  # cached here (the usual case), or an old server that does not stream it
                result.topology = self.topology(result.topology_id, timeout=max(deadline - time.monotonic(), 1.0))
            result.topology.require_points(result.points)
            if request.topology and result.provenance.extra.get("topology", {}).get("name") != request.topology:
                raise TopologyMismatchError(f"the server sent the head in topology {result.topology.name!r}, not the "
                                            f"studio topology {request.topology!r} (a server without studio topologies)")
            return result

        return self._with_retries(attempt, deadline)

    def generate_many(self, images: Sequence, *, concurrency: int = 4, **kwargs) -> list[HeadResult]:
        """Several portraits, ``concurrency`` requests in flight; results in input order. Raises the
        first failure (the other requests still run to completion)."""
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="topos-client") as pool:
            futures = [pool.submit(self.generate, image, **kwargs) for image in images]
            return [f.result() for f in futures]

    def topology(self, topology_id: str, timeout: float | None = None) -> ReferenceTopology:
        """The reference topology ``topology_id`` (fetched once, then cached in this process)."""
        with _topology_lock:
            cached = _topology_cache.get(topology_id)
        if cached is not None:
            return cached
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout

        def attempt(remaining: float) -> ReferenceTopology:
            parts = self._stub.GetTopology(pb.GetTopologyRequest(topology_id=topology_id), timeout=remaining,
                                           metadata=self._metadata)
            return wire.topology_from_parts(parts)

        topology = self._with_retries(attempt, deadline)
        if topology.topology_id != topology_id:
            raise TopologyMismatchError(f"asked for topology {topology_id}, got {topology.topology_id}")
        with _topology_lock:
            return _topology_cache.setdefault(topology_id, topology)

    def server_info(self, timeout: float = 30.0) -> dict:
        """Engines, devices, versions, topology ids and limits of the server, as a plain dict
        (field names as in ``ServerInfo`` of the proto; numbers stay numbers)."""
        info = self._with_retries(
            lambda remaining: self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=remaining,
                                                       metadata=self._metadata),
            time.monotonic() + timeout)
        return _plain(info)

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _request(image, seed, engine, texture_size, focal_length_px, request_id) -> pb.GenerateRequest:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InvalidInputError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
        if not 0 <= int(seed) < 2**64:
            raise InvalidInputError(f"seed must be a non-negative integer below 2^64, got {seed}")
        if isinstance(texture_size, bool) or not isinstance(texture_size, (int, np.integer)) or texture_size <= 0:
            raise InvalidInputError(f"texture size must be a positive integer, got {texture_size!r}")
        check_focal_length(focal_length_px)
        request = pb.GenerateRequest(engine=engine or "", seed=int(seed), texture_size=int(texture_size),
                                     focal_length_px=float(focal_length_px or 0.0), request_id=request_id or "")
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise InvalidInputError(f"an image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
            h, w, _ = image.shape
            request.raw_image.CopyFrom(pb.RawImage(width=w, height=h, rgb=np.ascontiguousarray(image).tobytes()))
        elif isinstance(image, (bytes, bytearray, memoryview)):
            request.encoded_image = bytes(image)
        elif isinstance(image, (str, os.PathLike)):
            path = Path(image)
            if not path.is_file():
                raise InvalidInputError(f"{path}: no such image file")
            request.encoded_image = path.read_bytes()
        else:
            raise InvalidInputError(f"image must be bytes, a file path or an (H, W, 3) uint8 array, "
                                    f"got {type(image).__name__}")
        return request

    def _with_retries(self, attempt, deadline: float):
        """``attempt(remaining_seconds)``, retried with jittered exponential backoff on UNAVAILABLE only."""
        for n in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise wire.exception_from_rpc_error(_Expired())
                return attempt(remaining)
            except grpc.RpcError as error:
                pause = min(self.max_backoff_s, self.backoff_s * 2**n) * random.uniform(0.5, 1.0)
                if (error.code() != grpc.StatusCode.UNAVAILABLE or n == self.retries
                        or time.monotonic() + pause >= deadline):
                    raise wire.exception_from_rpc_error(error) from None
                time.sleep(pause)
        raise AssertionError("unreachable")


def _plain(message) -> dict:
    """A protobuf message as nested dicts / lists / scalars (every field, defaults included)."""
    out = {}
    for f in message.DESCRIPTOR.fields:
        value = getattr(message, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            out[f.name] = dict(value)
        elif f.message_type is not None:
            out[f.name] = [_plain(v) for v in value] if f.is_repeated else _plain(value)
        else:
            out[f.name] = list(value) if f.is_repeated else value
    return out


class _Expired(grpc.RpcError):
    """Stands in for a call never made because the deadline already passed."""

    def code(self):
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self):
        return "the request's deadline passed before it could be sent"

    def trailing_metadata(self):
        return ()
