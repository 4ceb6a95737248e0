"""What an engine returns and what the USD writer consumes: a head in the reference topology."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .topology import ReferenceTopology

COLOR_SPACES = ("sRGB", "raw")


@dataclass(eq=False)
class Camera:
    """Pinhole camera of the source portrait.

    Conventions: pixels have their origin at the top-left corner of the image, x right, y down;
    ``world_to_camera`` is a 4×4 rigid transform (column vectors, ``p_cam = M @ p_world``) into a
    camera frame that looks down −Z with +Y up (the USD / OpenGL camera frame). World units are the
    topology's units (cm for ICT).
    """

    focal_length_px: float
    principal_point_px: tuple[float, float]
    image_size: tuple[int, int]  # (width, height) in pixels
    world_to_camera: np.ndarray = field(default_factory=lambda: np.eye(4))  # (4, 4) float64

    def __post_init__(self):
        self.world_to_camera = np.asarray(self.world_to_camera, dtype=np.float64).reshape(4, 4)
        self.principal_point_px = (float(self.principal_point_px[0]), float(self.principal_point_px[1]))
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.focal_length_px = float(self.focal_length_px)

    @property
    def camera_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_camera)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points → (..., 3) camera-frame points."""
        m = self.world_to_camera
        return points @ m[:3, :3].T + m[:3, 3]

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points → (..., 2) pixel coordinates."""
        pc = self.to_camera(np.asarray(points, dtype=np.float64))
        depth = -pc[..., 2]
        cx, cy = self.principal_point_px
        x = cx + self.focal_length_px * pc[..., 0] / depth
        y = cy - self.focal_length_px * pc[..., 1] / depth
        return np.stack([x, y], axis=-1)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Camera)
                and self.focal_length_px == other.focal_length_px
                and self.principal_point_px == other.principal_point_px
                and self.image_size == other.image_size
                and np.array_equal(self.world_to_camera, other.world_to_camera))


@dataclass(eq=False)
class TextureMap:
    """One texture, per UDIM tile: ``tiles[1001]`` is an (H, W, C) uint8/uint16 image (C in 1, 3, 4)."""

    name: str
    tiles: dict[int, np.ndarray]
    color_space: str = "sRGB"

    def __post_init__(self):
        if self.color_space not in COLOR_SPACES:
            raise ValueError(f"texture {self.name!r}: color space must be one of {COLOR_SPACES}")
        fixed = {}
        for tile, img in self.tiles.items():
            img = np.asarray(img)
            if img.ndim == 2:
                img = img[:, :, None]
            if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or img.dtype not in (np.uint8, np.uint16):
                raise ValueError(f"texture {self.name!r} tile {tile}: need (H, W, 1|3|4) uint8/uint16, "
                                 f"got {img.shape} {img.dtype}")
            if not 1001 <= int(tile) <= 1100:
                raise ValueError(f"texture {self.name!r}: UDIM tile {tile} outside 1001..1100")
            fixed[int(tile)] = img
        self.tiles = dict(sorted(fixed.items()))

    @property
    def is_udim(self) -> bool:
        return len(self.tiles) > 1 or next(iter(self.tiles), 1001) != 1001

    def __eq__(self, other) -> bool:
        return (isinstance(other, TextureMap) and self.name == other.name
                and self.color_space == other.color_space and self.tiles.keys() == other.tiles.keys()
                and all(np.array_equal(self.tiles[k], other.tiles[k]) for k in self.tiles))


@dataclass
class Provenance:
    engine: str = "unknown"
    seed: int | None = None
    source_image_sha256: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @staticmethod
    def hash_image_bytes(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


@dataclass(eq=False)
class HeadResult:
    """A generated head: points in reference-vertex order plus everything the asset carries."""

    points: np.ndarray  # (N, 3) float32, reference-vertex order
    topology: ReferenceTopology | None = None
    topology_id: str | None = None
    textures: dict[str, TextureMap] = field(default_factory=dict)
    expression_weights: dict[str, float] = field(default_factory=dict)
    blendshape_names: list[str] = field(default_factory=list)
    blendshape_deltas: np.ndarray | None = None  # (K, N, 3) float32 offsets from `points`
    camera: Camera | None = None
    provenance: Provenance = field(default_factory=Provenance)
    view_cameras: list[Camera] = field(default_factory=list)  # multi-view results: every photo's camera

    def __post_init__(self):
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {self.points.shape}")
        if self.topology is not None:
            self.topology.require_points(self.points)
            if self.topology_id is None:
                self.topology_id = self.topology.topology_id
            elif self.topology_id != self.topology.topology_id:
                raise ValueError(f"topology_id {self.topology_id} does not match topology {self.topology.topology_id}")
        if self.blendshape_deltas is not None:
            self.blendshape_deltas = np.ascontiguousarray(self.blendshape_deltas, dtype=np.float32)
            k = len(self.blendshape_names)
            if self.blendshape_deltas.shape != (k, self.points.shape[0], 3):
                raise ValueError(f"blendshape_deltas must be ({k}, {self.points.shape[0]}, 3), "
                                 f"got {self.blendshape_deltas.shape}")
        elif self.blendshape_names:
            raise ValueError("blendshape_names given without blendshape_deltas")
        self.expression_weights = {str(k): float(v) for k, v in self.expression_weights.items()}
        for name, tex in self.textures.items():
            if tex.name != name:
                raise ValueError(f"texture stored under {name!r} is named {tex.name!r}")

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    def posed_points(self) -> np.ndarray:
        """(N, 3) points with the expression weights applied through the blendshape deltas."""
        if self.blendshape_deltas is None or not self.expression_weights:
            return self.points.copy()
        w = np.array([self.expression_weights.get(n, 0.0) for n in self.blendshape_names], np.float32)
        return self.points + np.tensordot(w, self.blendshape_deltas, axes=1)

    def differences(self, other: "HeadResult", atol: float = 0.0) -> list[str]:
        """What differs from ``other``, one line per difference (empty when equal)."""
        out = []

        def arr(name, a, b):
            if (a is None) != (b is None):
                out.append(f"{name}: present on one side only")
            elif a is not None and (a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=atol)):
                out.append(f"{name}: arrays differ")

        arr("points", self.points, other.points)
        if self.topology_id != other.topology_id:
            out.append(f"topology_id: {self.topology_id} != {other.topology_id}")
        if self.blendshape_names != other.blendshape_names:
            out.append("blendshape_names differ")
        arr("blendshape_deltas", self.blendshape_deltas, other.blendshape_deltas)
        if self.expression_weights != other.expression_weights:
            out.append("expression_weights differ")
        if self.camera != other.camera:
            out.append("camera differs")
        if len(self.view_cameras) != len(other.view_cameras) or any(
                a != b for a, b in zip(self.view_cameras, other.view_cameras)):
            out.append("view cameras differ")
        if self.textures.keys() != other.textures.keys():
            out.append(f"texture names differ: {sorted(self.textures)} vs {sorted(other.textures)}")
        else:
            out += [f"texture {k} differs" for k in self.textures if self.textures[k] != other.textures[k]]
        return out
