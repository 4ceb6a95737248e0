"""HeadResult / ReferenceTopology ↔ ``topos.v1`` protobuf messages, and error ↔ gRPC status.

The one place that knows the wire layout; the server (``topos_server.serving.service``) and the client
(:mod:`topos_sdk.client`) both use it. numpy + protobuf + grpcio only (no torch).

Big arrays and texture tiles are split into pieces of at most ``piece_bytes`` payload bytes, so no
message needs a large size limit (see ``proto/topos/v1/topos.proto`` for the conventions).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import grpc
import numpy as np

from . import errors
from ._proto.v1 import topos_pb2 as pb
from .faces import DetectedFace, FaceList
from .head_result import Camera, HeadResult, Provenance, TextureMap
from .topology import LandmarkSet, MaterialRange, ReferenceTopology, SubMesh

PIECE_BYTES = 1 << 20  # payload bytes per TexturePiece / ArrayPiece
ERROR_TYPE_KEY = "topos-error"  # trailing metadata: the SDK exception's class name
REQUEST_ID_KEY = "x-request-id"

_COLOR_SPACES = {"sRGB": pb.COLOR_SPACE_SRGB, "raw": pb.COLOR_SPACE_RAW}
_COLOR_SPACE_NAMES = {v: k for k, v in _COLOR_SPACES.items()}
_DTYPES = {pb.DTYPE_FLOAT32: np.dtype("<f4"), pb.DTYPE_INT32: np.dtype("<i4")}


class WireFormatError(errors.RemoteError):
    """The server's stream broke the contract (missing, out-of-order or inconsistent pieces)."""

    def __init__(self, message: str, request_id: str | None = None):
        super().__init__(message, code="DATA_LOSS", request_id=request_id)


def _le_bytes(array: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(array, dtype=np.dtype(dtype)).tobytes()


def _pieces(data: bytes, piece_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(offset, chunk) covering ``data``; one empty chunk for empty data."""
    view = memoryview(data)
    for offset in range(0, max(len(data), 1), piece_bytes):
        yield offset, bytes(view[offset:offset + piece_bytes])


# ---- HeadResult → events ------------------------------------------------------------------------

def camera_to_pb(camera: Camera) -> pb.Camera:
    return pb.Camera(
        focal_length_px=camera.focal_length_px,
        principal_point_x_px=camera.principal_point_px[0], principal_point_y_px=camera.principal_point_px[1],
        image_width=camera.image_size[0], image_height=camera.image_size[1],
        world_to_camera=np.asarray(camera.world_to_camera, np.float64).reshape(16).tolist())


def camera_from_pb(msg: pb.Camera) -> Camera:
    return Camera(msg.focal_length_px, (msg.principal_point_x_px, msg.principal_point_y_px),
                  (msg.image_width, msg.image_height), np.array(msg.world_to_camera, np.float64).reshape(4, 4))


def provenance_to_pb(prov: Provenance) -> pb.Provenance:
    return pb.Provenance(
        engine=prov.engine, has_seed=prov.seed is not None, seed=int(prov.seed or 0),
        source_image_sha256=prov.source_image_sha256 or "",
        timings_s={str(k): float(v) for k, v in prov.timings_s.items()},
        versions={str(k): str(v) for k, v in prov.versions.items()},
        extra_json=json.dumps(prov.extra, default=str) if prov.extra else "")


def provenance_from_pb(msg: pb.Provenance) -> Provenance:
    return Provenance(engine=msg.engine, seed=int(msg.seed) if msg.has_seed else None,
                      source_image_sha256=msg.source_image_sha256 or None,
                      timings_s=dict(msg.timings_s), versions=dict(msg.versions),
                      extra=json.loads(msg.extra_json) if msg.extra_json else {})


def result_events(result: HeadResult, piece_bytes: int = PIECE_BYTES,
                  topology: ReferenceTopology | None = None) -> Iterator[pb.GenerateEvent]:
    """Geometry, then ``topology``'s parts (when given: the client lacks it), one Blendshape per shape,
    then the texture tiles in pieces (no Done)."""
    if result.topology_id is None:
        raise ValueError("a result sent over the wire needs a topology_id")
    geometry = pb.Geometry(
        topology_id=result.topology_id, num_points=result.num_points,
        points=_le_bytes(result.points, "<f4"),
        expression_weights=result.expression_weights, blendshape_names=result.blendshape_names,
        texture_names=list(result.textures), provenance=provenance_to_pb(result.provenance))
    if result.camera is not None:
        geometry.camera.CopyFrom(camera_to_pb(result.camera))
    geometry.view_cameras.extend(camera_to_pb(camera) for camera in result.view_cameras)
    yield pb.GenerateEvent(geometry=geometry)
    if topology is not None:
        for part in topology_parts(topology, piece_bytes):
            yield pb.GenerateEvent(topology=part)

    for k, name in enumerate(result.blendshape_names):
        deltas = result.blendshape_deltas[k]  # (N, 3)
        moved = np.flatnonzero(np.any(deltas != 0, axis=1))  # (P,)
        yield pb.GenerateEvent(blendshape=pb.Blendshape(
            index=k, name=name, point_indices=_le_bytes(moved, "<i4"), offsets=_le_bytes(deltas[moved], "<f4")))

    for name, tex in result.textures.items():
        for tile, pixels in tex.tiles.items():  # (H, W, C) uint8 | uint16
            dtype = "<u2" if pixels.dtype == np.uint16 else "u1"
            encoded = zlib.compress(_le_bytes(pixels, dtype), 1)
            h, w, c = pixels.shape
            for offset, chunk in _pieces(encoded, piece_bytes):
                yield pb.GenerateEvent(texture=pb.TexturePiece(
                    name=name, color_space=_COLOR_SPACES[tex.color_space], udim_tile=tile, width=w, height=h,
                    channels=c, bits_per_channel=8 * pixels.dtype.itemsize, encoding=pb.PIXEL_ENCODING_ZLIB,
                    encoded_size=len(encoded), offset=offset, data=chunk))


def done_event(result: HeadResult, server_seconds: float) -> pb.GenerateEvent:
    return pb.GenerateEvent(done=pb.Done(
        blendshape_count=len(result.blendshape_names),
        texture_tile_count=sum(len(t.tiles) for t in result.textures.values()),
        server_seconds=server_seconds))


# ---- events → HeadResult ------------------------------------------------------------------------

@dataclass
class ResultAssembler:
    """Collects a Generate stream's result events and checks that nothing is missing or out of order."""

    request_id: str | None = None
    geometry: pb.Geometry | None = None
    deltas: np.ndarray | None = None  # (K, N, 3) float32
    shapes_seen: int = 0
    tiles: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    color_spaces: dict[str, str] = field(default_factory=dict)
    topology_parts: list[pb.TopologyPart] = field(default_factory=list)
    done: pb.Done | None = None
    _partial: pb.TexturePiece | None = None
    _buffer: bytearray = field(default_factory=bytearray)

    def _fail(self, message: str):
        raise WireFormatError(f"malformed result stream: {message}", self.request_id)

    def add(self, event: pb.GenerateEvent) -> None:
        kind = event.WhichOneof("event")
        if kind in ("queued", "progress"):
            return
        if self.done is not None:
            self._fail(f"{kind} after done")
        if kind == "geometry":
            if self.geometry is not None:
                self._fail("two geometry messages")
            self.geometry = event.geometry
            n = event.geometry.num_points
            if len(event.geometry.points) != n * 12:
                self._fail(f"points hold {len(event.geometry.points)} bytes for {n} points")
            self.deltas = np.zeros((len(event.geometry.blendshape_names), n, 3), np.float32)
            return
        if self.geometry is None:
            self._fail(f"{kind} before geometry")
        if kind == "topology":
            self.topology_parts.append(event.topology)
        elif kind == "blendshape":
            self._add_blendshape(event.blendshape)
        elif kind == "texture":
            self._add_texture_piece(event.texture)
        elif kind == "done":
            self.done = event.done

    def _add_blendshape(self, shape: pb.Blendshape) -> None:
        names = self.geometry.blendshape_names
        if shape.index != self.shapes_seen or shape.index >= len(names) or names[shape.index] != shape.name:
            self._fail(f"unexpected blendshape {shape.index} {shape.name!r}")
        moved = np.frombuffer(shape.point_indices, "<i4")
        offsets = np.frombuffer(shape.offsets, "<f4").reshape(-1, 3)
        if len(moved) != len(offsets) or (moved.size and (moved.min() < 0 or moved.max() >= self.deltas.shape[1])):
            self._fail(f"blendshape {shape.name!r}: bad point indices")
        self.deltas[shape.index, moved] = offsets
        self.shapes_seen += 1

    def _add_texture_piece(self, piece: pb.TexturePiece) -> None:
        if self._partial is None:
            if piece.offset != 0:
                self._fail(f"texture {piece.name} tile {piece.udim_tile} starts at offset {piece.offset}")
            self._partial, self._buffer = piece, bytearray()
        elif (piece.name, piece.udim_tile) != (self._partial.name, self._partial.udim_tile) \
                or piece.offset != len(self._buffer):
            self._fail(f"texture {piece.name} tile {piece.udim_tile}: piece out of order")
        self._buffer += piece.data
        if len(self._buffer) < piece.encoded_size:
            return
        head, raw = self._partial, bytes(self._buffer)
        self._partial, self._buffer = None, bytearray()
        if len(raw) != head.encoded_size:
            self._fail(f"texture {head.name} tile {head.udim_tile}: {len(raw)} bytes, expected {head.encoded_size}")
        if head.encoding == pb.PIXEL_ENCODING_ZLIB:
            raw = zlib.decompress(raw)
        elif head.encoding != pb.PIXEL_ENCODING_RAW:
            self._fail(f"texture {head.name}: unknown pixel encoding {head.encoding}")
        dtype = {8: np.uint8, 16: np.dtype("<u2")}.get(head.bits_per_channel)
        if dtype is None or len(raw) != head.width * head.height * head.channels * np.dtype(dtype).itemsize:
            self._fail(f"texture {head.name} tile {head.udim_tile}: size does not match its shape")
        pixels = np.frombuffer(raw, dtype).reshape(head.height, head.width, head.channels)  # (H, W, C)
        self.tiles.setdefault(head.name, {})[head.udim_tile] = pixels.astype(pixels.dtype.newbyteorder("="))
        self.color_spaces[head.name] = _COLOR_SPACE_NAMES.get(head.color_space, "raw")

    def streamed_topology(self) -> ReferenceTopology | None:
        """The topology the stream carried (None when the client had it cached)."""
        if not self.topology_parts:
            return None
        topology = topology_from_parts(self.topology_parts)
        if topology.topology_id != self.geometry.topology_id:
            self._fail(f"streamed topology {topology.topology_id} is not the result's {self.geometry.topology_id}")
        return topology

    def result(self, topology: ReferenceTopology | None = None) -> HeadResult:
        """The HeadResult; raises WireFormatError when the stream ended early or pieces are missing."""
        if self.geometry is None or self.done is None:
            self._fail("the stream ended before the whole result arrived")
        g = self.geometry
        tile_count = sum(len(t) for t in self.tiles.values())
        if (self._partial is not None or self.shapes_seen != len(g.blendshape_names)
                or self.done.blendshape_count != self.shapes_seen or self.done.texture_tile_count != tile_count
                or set(self.tiles) != set(g.texture_names)):
            self._fail(f"got {self.shapes_seen}/{self.done.blendshape_count} blendshapes and "
                       f"{tile_count}/{self.done.texture_tile_count} texture tiles")
        points = np.frombuffer(g.points, "<f4").reshape(-1, 3).astype(np.float32)  # (N, 3)
        return HeadResult(
            points=points, topology=topology, topology_id=g.topology_id,
            textures={name: TextureMap(name, self.tiles[name], self.color_spaces[name]) for name in g.texture_names},
            expression_weights=dict(g.expression_weights),
            blendshape_names=list(g.blendshape_names),
            blendshape_deltas=self.deltas if g.blendshape_names else None,
            camera=camera_from_pb(g.camera) if g.HasField("camera") else None,
            provenance=provenance_from_pb(g.provenance),
            view_cameras=[camera_from_pb(camera) for camera in g.view_cameras])


# ---- ReferenceTopology ↔ parts ------------------------------------------------------------------

def _topology_arrays(topology: ReferenceTopology) -> dict[str, tuple[int, np.ndarray]]:
    arrays = {"rest_points": (pb.DTYPE_FLOAT32, topology.rest_points),
              "face_vertex_counts": (pb.DTYPE_INT32, topology.face_vertex_counts),
              "face_vertex_indices": (pb.DTYPE_INT32, topology.face_vertex_indices)}
    if topology.uv_values is not None:
        arrays["uv_values"] = (pb.DTYPE_FLOAT32, topology.uv_values)
        arrays["uv_indices"] = (pb.DTYPE_INT32, topology.uv_indices)
    if topology.symmetry is not None:
        arrays["symmetry"] = (pb.DTYPE_INT32, topology.symmetry)
    for name, ids in topology.vertex_groups.items():
        arrays[f"group/{name}"] = (pb.DTYPE_INT32, ids)
    for name, lm in topology.landmarks.items():
        arrays[f"landmarks/{name}/vertices"] = (pb.DTYPE_INT32, np.asarray(lm.vertices))
        arrays[f"landmarks/{name}/weights"] = (pb.DTYPE_FLOAT32, np.asarray(lm.weights))
    return arrays


def topology_parts(topology: ReferenceTopology, piece_bytes: int = PIECE_BYTES) -> Iterator[pb.TopologyPart]:
    arrays = _topology_arrays(topology)
    header = pb.TopologyHeader(
        topology_id=topology.topology_id, name=topology.name, units=topology.units,
        num_points=topology.num_points, num_faces=topology.num_faces,
        submeshes=[pb.SubMesh(name=s.name, vertex_start=s.vertex_start, vertex_stop=s.vertex_stop,
                              face_start=s.face_start, face_stop=s.face_stop, mesh=s.mesh or "",
                              subdivision_scheme=s.subdivision_scheme) for s in topology.submeshes],
        materials=[pb.MaterialRange(name=m.name, face_start=m.face_start, face_stop=m.face_stop)
                   for m in topology.materials],
        landmark_sets=[pb.LandmarkSetNames(set=name, names=lm.names) for name, lm in topology.landmarks.items()],
        arrays=[pb.ArrayInfo(name=name, dtype=dtype, shape=array.shape) for name, (dtype, array) in arrays.items()],
        info_json=json.dumps(topology.info, default=str) if topology.info else "")
    yield pb.TopologyPart(header=header)
    for name, (dtype, array) in arrays.items():
        for offset, chunk in _pieces(_le_bytes(array, _DTYPES[dtype].str), piece_bytes):
            yield pb.TopologyPart(array=pb.ArrayPiece(name=name, offset=offset, data=chunk))


def topology_from_parts(parts: Iterable[pb.TopologyPart]) -> ReferenceTopology:
    """Rebuild a topology; raises WireFormatError when pieces are missing or its id does not match."""
    header, buffers = None, {}
    for part in parts:
        if part.WhichOneof("part") == "header":
            header = part.header
            buffers = {a.name: bytearray() for a in header.arrays}
        elif header is None or part.array.name not in buffers or part.array.offset != len(buffers[part.array.name]):
            raise WireFormatError(f"malformed topology stream at array piece {part.array.name!r}")
        else:
            buffers[part.array.name] += part.array.data
    if header is None:
        raise WireFormatError("empty topology stream")
    arrays = {}
    for info in header.arrays:
        dtype, shape = _DTYPES.get(info.dtype), tuple(int(s) for s in info.shape)
        if dtype is None or len(buffers[info.name]) != dtype.itemsize * int(np.prod(shape)):
            raise WireFormatError(f"topology array {info.name!r}: size does not match its shape {shape}")
        arrays[info.name] = np.frombuffer(bytes(buffers[info.name]), dtype).reshape(shape)
    topology = ReferenceTopology(
        name=header.name, rest_points=arrays["rest_points"],
        face_vertex_counts=arrays["face_vertex_counts"], face_vertex_indices=arrays["face_vertex_indices"],
        uv_values=arrays.get("uv_values"), uv_indices=arrays.get("uv_indices"),
        submeshes=[SubMesh(s.name, s.vertex_start, s.vertex_stop, s.face_start, s.face_stop, s.mesh or None,
                           s.subdivision_scheme or "none") for s in header.submeshes],
        materials=[MaterialRange(m.name, m.face_start, m.face_stop) for m in header.materials],
        vertex_groups={k[len("group/"):]: v for k, v in arrays.items() if k.startswith("group/")},
        landmarks={s.set: LandmarkSet(list(s.names), arrays[f"landmarks/{s.set}/vertices"],
                                      arrays[f"landmarks/{s.set}/weights"]) for s in header.landmark_sets},
        symmetry=arrays.get("symmetry"), units=header.units or "cm",
        info=json.loads(header.info_json) if header.info_json else {})
    if topology.topology_id != header.topology_id:
        raise WireFormatError(f"topology {header.topology_id}: contents hash to {topology.topology_id}")
    return topology


# ---- errors ↔ statuses --------------------------------------------------------------------------
# NoFaceFound is INVALID_ARGUMENT (the portrait itself is unusable, whatever the server's state), told
# apart from other bad input by the `topos-error` trailing metadata. An engine the server does not
# serve is NOT_FOUND; other TOPOS errors on the server (missing assets) FAILED_PRECONDITION; bugs INTERNAL.

def faces_to_pb(faces: FaceList) -> pb.ListFacesResponse:
    return pb.ListFacesResponse(
        faces=[pb.FaceInfo(index=f.index, box=list(f.box), detection_score=f.detection_score, yaw_deg=f.yaw_deg,
                           visible_fraction=f.visible_fraction, choice_score=f.choice_score) for f in faces.faces],
        chosen_index=faces.chosen_index, image_width=faces.image_size[0], image_height=faces.image_size[1])


def faces_from_pb(msg: pb.ListFacesResponse) -> FaceList:
    return FaceList([DetectedFace(f.index, tuple(f.box), f.detection_score, f.yaw_deg, f.visible_fraction,
                                  f.choice_score) for f in msg.faces],
                    msg.chosen_index, (msg.image_width, msg.image_height))


def status_for_exception(exc: BaseException) -> grpc.StatusCode:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "EngineUnavailable" in names:
        return grpc.StatusCode.NOT_FOUND
    if "InvalidInputError" in names:
        return grpc.StatusCode.INVALID_ARGUMENT
    if "ToposError" in names:  # e.g. the server's assets went missing: its state, not the request
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def error_type_name(exc: BaseException) -> str:
    """The SDK exception a client should raise for ``exc`` (the most specific one it knows)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _SDK_ERRORS:
            return cls.__name__
    return "RemoteError"


_SDK_ERRORS = {cls.__name__: cls for cls in (
    errors.NoFaceFound, errors.EngineUnavailable, errors.InvalidInputError, errors.TopologyMismatchError,
    errors.ServerUnavailable, errors.Unauthenticated, errors.ServerBusy, errors.DeadlineExceeded,
    errors.RequestCancelled, errors.RemoteError)}

_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInputError,
    grpc.StatusCode.NOT_FOUND: errors.EngineUnavailable,
    grpc.StatusCode.UNAVAILABLE: errors.ServerUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ServerBusy,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.RequestCancelled,
}


def exception_from_rpc_error(error: grpc.RpcError, request_id: str | None = None) -> errors.ToposError:
    """The typed SDK exception for a failed call, carrying the server's message."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else None) or str(code)
    trailing = dict(error.trailing_metadata() or ()) if hasattr(error, "trailing_metadata") else {}
    request_id = trailing.get(REQUEST_ID_KEY, request_id)
    cls = _SDK_ERRORS.get(trailing.get(ERROR_TYPE_KEY, "")) or _BY_STATUS.get(code, errors.RemoteError)
    if issubclass(cls, errors.RemoteError):
        return cls(message, code=code.name, request_id=request_id)
    exc = cls(message)
    exc.code, exc.request_id = code.name, request_id
    return exc
