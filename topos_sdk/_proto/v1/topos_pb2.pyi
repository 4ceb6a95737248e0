from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ColorSpace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOR_SPACE_UNSPECIFIED: _ClassVar[ColorSpace]
    COLOR_SPACE_SRGB: _ClassVar[ColorSpace]
    COLOR_SPACE_RAW: _ClassVar[ColorSpace]

class PixelEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_ENCODING_UNSPECIFIED: _ClassVar[PixelEncoding]
    PIXEL_ENCODING_RAW: _ClassVar[PixelEncoding]
    PIXEL_ENCODING_ZLIB: _ClassVar[PixelEncoding]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
COLOR_SPACE_UNSPECIFIED: ColorSpace
COLOR_SPACE_SRGB: ColorSpace
COLOR_SPACE_RAW: ColorSpace
PIXEL_ENCODING_UNSPECIFIED: PixelEncoding
PIXEL_ENCODING_RAW: PixelEncoding
PIXEL_ENCODING_ZLIB: PixelEncoding
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_INT32: DType

class GenerateRequest(_message.Message):
    __slots__ = ("encoded_image", "raw_image", "engine", "seed", "texture_size", "focal_length_px", "request_id", "cached_topology_ids", "face_index", "same_person_views", "topology", "texture")
    ENCODED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    RAW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOPOLOGY_IDS_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SAME_PERSON_VIEWS_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_FIELD_NUMBER: _ClassVar[int]
    encoded_image: bytes
    raw_image: RawImage
    engine: str
    seed: int
    texture_size: int
    focal_length_px: float
    request_id: str
    cached_topology_ids: _containers.RepeatedScalarFieldContainer[str]
    face_index: int
    same_person_views: _containers.RepeatedScalarFieldContainer[bytes]
    topology: str
    texture: str
    def __init__(self, encoded_image: _Optional[bytes] = ..., raw_image: _Optional[_Union[RawImage, _Mapping]] = ..., engine: _Optional[str] = ..., seed: _Optional[int] = ..., texture_size: _Optional[int] = ..., focal_length_px: _Optional[float] = ..., request_id: _Optional[str] = ..., cached_topology_ids: _Optional[_Iterable[str]] = ..., face_index: _Optional[int] = ..., same_person_views: _Optional[_Iterable[bytes]] = ..., topology: _Optional[str] = ..., texture: _Optional[str] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("width", "height", "rgb")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    rgb: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., rgb: _Optional[bytes] = ...) -> None: ...

class GenerateEvent(_message.Message):
    __slots__ = ("queued", "progress", "geometry", "blendshape", "texture", "done", "topology")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    BLENDSHAPE_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    queued: Queued
    progress: Progress
    geometry: Geometry
    blendshape: Blendshape
    texture: TexturePiece
    done: Done
    topology: TopologyPart
    def __init__(self, queued: _Optional[_Union[Queued, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., geometry: _Optional[_Union[Geometry, _Mapping]] = ..., blendshape: _Optional[_Union[Blendshape, _Mapping]] = ..., texture: _Optional[_Union[TexturePiece, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., topology: _Optional[_Union[TopologyPart, _Mapping]] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("request_id", "position")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    position: int
    def __init__(self, request_id: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "fraction")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    fraction: float
    def __init__(self, stage: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class Geometry(_message.Message):
    __slots__ = ("topology_id", "num_points", "points", "camera", "expression_weights", "blendshape_names", "texture_names", "provenance", "view_cameras")
    class ExpressionWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TOPOLOGY_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_POINTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BLENDSHAPE_NAMES_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    VIEW_CAMERAS_FIELD_NUMBER: _ClassVar[int]
    topology_id: str
    num_points: int
    points: bytes
    camera: Camera
    expression_weights: _containers.ScalarMap[str, float]
    blendshape_names: _containers.RepeatedScalarFieldContainer[str]
    texture_names: _containers.RepeatedScalarFieldContainer[str]
    provenance: Provenance
    view_cameras: _containers.RepeatedCompositeFieldContainer[Camera]
    def __init__(self, topology_id: _Optional[str] = ..., num_points: _Optional[int] = ..., points: _Optional[bytes] = ..., camera: _Optional[_Union[Camera, _Mapping]] = ..., expression_weights: _Optional[_Mapping[str, float]] = ..., blendshape_names: _Optional[_Iterable[str]] = ..., texture_names: _Optional[_Iterable[str]] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ..., view_cameras: _Optional[_Iterable[_Union[Camera, _Mapping]]] = ...) -> None: ...

class Camera(_message.Message):
    __slots__ = ("focal_length_px", "principal_point_x_px", "principal_point_y_px", "image_width", "image_height", "world_to_camera")
    FOCAL_LENGTH_PX_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_POINT_X_PX_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_POINT_Y_PX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WORLD_TO_CAMERA_FIELD_NUMBER: _ClassVar[int]
    focal_length_px: float
    principal_point_x_px: float
    principal_point_y_px: float
    image_width: int
    image_height: int
    world_to_camera: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, focal_length_px: _Optional[float] = ..., principal_point_x_px: _Optional[float] = ..., principal_point_y_px: _Optional[float] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., world_to_camera: _Optional[_Iterable[float]] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("engine", "has_seed", "seed", "source_image_sha256", "timings_s", "versions", "extra_json")
    class TimingsSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    HAS_SEED_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_S_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    engine: str
    has_seed: bool
    seed: int
    source_image_sha256: str
    timings_s: _containers.ScalarMap[str, float]
    versions: _containers.ScalarMap[str, str]
    extra_json: str
    def __init__(self, engine: _Optional[str] = ..., has_seed: _Optional[bool] = ..., seed: _Optional[int] = ..., source_image_sha256: _Optional[str] = ..., timings_s: _Optional[_Mapping[str, float]] = ..., versions: _Optional[_Mapping[str, str]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class Blendshape(_message.Message):
    __slots__ = ("index", "name", "point_indices", "offsets")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POINT_INDICES_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    point_indices: bytes
    offsets: bytes
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., point_indices: _Optional[bytes] = ..., offsets: _Optional[bytes] = ...) -> None: ...

class TexturePiece(_message.Message):
    __slots__ = ("name", "color_space", "udim_tile", "width", "height", "channels", "bits_per_channel", "encoding", "encoded_size", "offset", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLOR_SPACE_FIELD_NUMBER: _ClassVar[int]
    UDIM_TILE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    BITS_PER_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    ENCODED_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    color_space: ColorSpace
    udim_tile: int
    width: int
    height: int
    channels: int
    bits_per_channel: int
    encoding: PixelEncoding
    encoded_size: int
    offset: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., color_space: _Optional[_Union[ColorSpace, str]] = ..., udim_tile: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., bits_per_channel: _Optional[int] = ..., encoding: _Optional[_Union[PixelEncoding, str]] = ..., encoded_size: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("blendshape_count", "texture_tile_count", "server_seconds")
    BLENDSHAPE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_TILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SERVER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    blendshape_count: int
    texture_tile_count: int
    server_seconds: float
    def __init__(self, blendshape_count: _Optional[int] = ..., texture_tile_count: _Optional[int] = ..., server_seconds: _Optional[float] = ...) -> None: ...

class ListFacesRequest(_message.Message):
    __slots__ = ("encoded_image", "raw_image", "engine")
    ENCODED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    RAW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    encoded_image: bytes
    raw_image: RawImage
    engine: str
    def __init__(self, encoded_image: _Optional[bytes] = ..., raw_image: _Optional[_Union[RawImage, _Mapping]] = ..., engine: _Optional[str] = ...) -> None: ...

class ListFacesResponse(_message.Message):
    __slots__ = ("faces", "chosen_index", "image_width", "image_height")
    FACES_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[FaceInfo]
    chosen_index: int
    image_width: int
    image_height: int
    def __init__(self, faces: _Optional[_Iterable[_Union[FaceInfo, _Mapping]]] = ..., chosen_index: _Optional[int] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ...) -> None: ...

class FaceInfo(_message.Message):
    __slots__ = ("index", "box", "detection_score", "yaw_deg", "visible_fraction", "choice_score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    YAW_DEG_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CHOICE_SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    box: _containers.RepeatedScalarFieldContainer[float]
    detection_score: float
    yaw_deg: float
    visible_fraction: float
    choice_score: float
    def __init__(self, index: _Optional[int] = ..., box: _Optional[_Iterable[float]] = ..., detection_score: _Optional[float] = ..., yaw_deg: _Optional[float] = ..., visible_fraction: _Optional[float] = ..., choice_score: _Optional[float] = ...) -> None: ...

class GetTopologyRequest(_message.Message):
    __slots__ = ("topology_id",)
    TOPOLOGY_ID_FIELD_NUMBER: _ClassVar[int]
    topology_id: str
    def __init__(self, topology_id: _Optional[str] = ...) -> None: ...

class TopologyPart(_message.Message):
    __slots__ = ("header", "array")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    header: TopologyHeader
    array: ArrayPiece
    def __init__(self, header: _Optional[_Union[TopologyHeader, _Mapping]] = ..., array: _Optional[_Union[ArrayPiece, _Mapping]] = ...) -> None: ...

class TopologyHeader(_message.Message):
    __slots__ = ("topology_id", "name", "units", "num_points", "num_faces", "submeshes", "materials", "landmark_sets", "arrays", "info_json")
    TOPOLOGY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    NUM_POINTS_FIELD_NUMBER: _ClassVar[int]
    NUM_FACES_FIELD_NUMBER: _ClassVar[int]
    SUBMESHES_FIELD_NUMBER: _ClassVar[int]
    MATERIALS_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_SETS_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    topology_id: str
    name: str
    units: str
    num_points: int
    num_faces: int
    submeshes: _containers.RepeatedCompositeFieldContainer[SubMesh]
    materials: _containers.RepeatedCompositeFieldContainer[MaterialRange]
    landmark_sets: _containers.RepeatedCompositeFieldContainer[LandmarkSetNames]
    arrays: _containers.RepeatedCompositeFieldContainer[ArrayInfo]
    info_json: str
    def __init__(self, topology_id: _Optional[str] = ..., name: _Optional[str] = ..., units: _Optional[str] = ..., num_points: _Optional[int] = ..., num_faces: _Optional[int] = ..., submeshes: _Optional[_Iterable[_Union[SubMesh, _Mapping]]] = ..., materials: _Optional[_Iterable[_Union[MaterialRange, _Mapping]]] = ..., landmark_sets: _Optional[_Iterable[_Union[LandmarkSetNames, _Mapping]]] = ..., arrays: _Optional[_Iterable[_Union[ArrayInfo, _Mapping]]] = ..., info_json: _Optional[str] = ...) -> None: ...

class SubMesh(_message.Message):
    __slots__ = ("name", "vertex_start", "vertex_stop", "face_start", "face_stop", "mesh", "subdivision_scheme")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERTEX_START_FIELD_NUMBER: _ClassVar[int]
    VERTEX_STOP_FIELD_NUMBER: _ClassVar[int]
    FACE_START_FIELD_NUMBER: _ClassVar[int]
    FACE_STOP_FIELD_NUMBER: _ClassVar[int]
    MESH_FIELD_NUMBER: _ClassVar[int]
    SUBDIVISION_SCHEME_FIELD_NUMBER: _ClassVar[int]
    name: str
    vertex_start: int
    vertex_stop: int
    face_start: int
    face_stop: int
    mesh: str
    subdivision_scheme: str
    def __init__(self, name: _Optional[str] = ..., vertex_start: _Optional[int] = ..., vertex_stop: _Optional[int] = ..., face_start: _Optional[int] = ..., face_stop: _Optional[int] = ..., mesh: _Optional[str] = ..., subdivision_scheme: _Optional[str] = ...) -> None: ...

class MaterialRange(_message.Message):
    __slots__ = ("name", "face_start", "face_stop")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FACE_START_FIELD_NUMBER: _ClassVar[int]
    FACE_STOP_FIELD_NUMBER: _ClassVar[int]
    name: str
    face_start: int
    face_stop: int
    def __init__(self, name: _Optional[str] = ..., face_start: _Optional[int] = ..., face_stop: _Optional[int] = ...) -> None: ...

class LandmarkSetNames(_message.Message):
    __slots__ = ("set", "names")
    SET_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    set: str
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, set: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class ArrayInfo(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ArrayPiece(_message.Message):
    __slots__ = ("name", "offset", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("server_version", "versions", "engines", "default_engine", "devices", "limits", "auth_required")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ENGINE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    versions: _containers.ScalarMap[str, str]
    engines: _containers.RepeatedCompositeFieldContainer[EngineInfo]
    default_engine: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    auth_required: bool
    def __init__(self, server_version: _Optional[str] = ..., versions: _Optional[_Mapping[str, str]] = ..., engines: _Optional[_Iterable[_Union[EngineInfo, _Mapping]]] = ..., default_engine: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., auth_required: _Optional[bool] = ...) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("name", "device", "max_batch_size", "topology_ids", "texture_sizes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_IDS_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_SIZES_FIELD_NUMBER: _ClassVar[int]
    name: str
    device: str
    max_batch_size: int
    topology_ids: _containers.RepeatedScalarFieldContainer[str]
    texture_sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., device: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., topology_ids: _Optional[_Iterable[str]] = ..., texture_sizes: _Optional[_Iterable[int]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_image_bytes", "max_image_pixels", "max_queue", "max_batch", "max_batch_wait_s", "max_receive_message_bytes", "max_send_message_bytes", "max_piece_bytes")
    MAX_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_WAIT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RECEIVE_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SEND_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PIECE_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_image_bytes: int
    max_image_pixels: int
    max_queue: int
    max_batch: int
    max_batch_wait_s: float
    max_receive_message_bytes: int
    max_send_message_bytes: int
    max_piece_bytes: int
    def __init__(self, max_image_bytes: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., max_queue: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_batch_wait_s: _Optional[float] = ..., max_receive_message_bytes: _Optional[int] = ..., max_send_message_bytes: _Optional[int] = ..., max_piece_bytes: _Optional[int] = ...) -> None: ...
