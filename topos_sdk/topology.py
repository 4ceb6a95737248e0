"""The studio's fixed reference topology: connectivity, UVs, sub-meshes, groups, landmarks.

Pure numpy so it loads inside Maya's and Houdini's Python.

File format (``.topology.npz``, written by :meth:`ReferenceTopology.save`): an uncompressed numpy
``.npz`` archive holding

- ``rest_points`` (N, 3) float32, ``face_vertex_counts`` (F,) int32, ``face_vertex_indices`` (sum counts,) int32,
- ``uv_values`` (M, 2) float32, ``uv_indices`` (sum counts,) int32 (face-varying, same order as
  ``face_vertex_indices``; may be absent when the topology has no UVs),
- ``symmetry`` (N,) int32 (optional; vertex i mirrors to ``symmetry[i]``),
- ``group__<name>`` int32 vertex-index arrays, ``landmarks__<set>__vertices`` (K, 3) int32 and
  ``landmarks__<set>__weights`` (K, 3) float32 (a barycentric point on three vertices; a landmark on a
  vertex is ``(v, v, v)`` with weights ``(1, 0, 0)``),
- ``meta``: a JSON string with ``format`` = ``"topos.topology/1"``, the name, units, sub-meshes,
  landmark names per set, the ``topology_id`` and free-form ``info``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic_files import atomic_output_path
from .errors import TopologyMismatchError

FORMAT = "topos.topology/1"


@dataclass(frozen=True)
class SubMesh:
    """A named part: vertices ``[vertex_start, vertex_stop)`` and faces ``[face_start, face_stop)``.

    ``mesh`` names the output mesh (one ``UsdGeom.Mesh``) the part belongs to; parts that share
    vertices (ICT's face and head/neck share their seam) go in one mesh and appear there as
    ``GeomSubset``s. ``None`` means a mesh of its own, named like the part.
    """

    name: str
    vertex_start: int
    vertex_stop: int
    face_start: int
    face_stop: int
    mesh: str | None = None
    subdivision_scheme: str = "none"

    @property
    def vertex_count(self) -> int:
        return self.vertex_stop - self.vertex_start

    @property
    def face_count(self) -> int:
        return self.face_stop - self.face_start

    @property
    def mesh_name(self) -> str:
        return self.mesh or self.name


@dataclass(frozen=True)
class MaterialRange:
    """Faces ``[face_start, face_stop)`` use material ``name`` (an OBJ ``usemtl`` run)."""

    name: str
    face_start: int
    face_stop: int


@dataclass(frozen=True)
class MeshPart:
    """One output mesh: the union of the sub-meshes that name it; vertex-closed and contiguous."""

    name: str
    vertex_start: int
    vertex_stop: int
    face_start: int
    face_stop: int
    submeshes: tuple[SubMesh, ...]
    materials: tuple[MaterialRange, ...]  # clipped to this mesh's faces
    subdivision_scheme: str


@dataclass
class LandmarkSet:
    """Named surface points, each a barycentric combination of three vertices."""

    names: list[str]
    vertices: np.ndarray  # (K, 3) int32
    weights: np.ndarray  # (K, 3) float32, rows sum to 1

    @classmethod
    def from_vertex_ids(cls, names: list[str], vertex_ids) -> "LandmarkSet":
        ids = np.asarray(vertex_ids, dtype=np.int32).reshape(-1)
        vertices = np.repeat(ids[:, None], 3, axis=1)
        weights = np.zeros((len(ids), 3), np.float32)
        weights[:, 0] = 1.0
        return cls(list(names), vertices, weights)

    def evaluate(self, points: np.ndarray) -> np.ndarray:
        """(..., N, 3) points → (..., K, 3) landmark positions."""
        gathered = points[..., self.vertices, :]  # (..., K, 3 corners, 3 xyz)
        return np.einsum("...kcx,kc->...kx", gathered, self.weights.astype(points.dtype, copy=False))

    def __len__(self) -> int:
        return len(self.names)


@dataclass(eq=False)
class ReferenceTopology:
    name: str
    rest_points: np.ndarray  # (N, 3) float32
    face_vertex_counts: np.ndarray  # (F,) int32
    face_vertex_indices: np.ndarray  # (sum counts,) int32
    uv_values: np.ndarray | None = None  # (M, 2) float32
    uv_indices: np.ndarray | None = None  # (sum counts,) int32, face-varying
    submeshes: list[SubMesh] = field(default_factory=list)
    materials: list[MaterialRange] = field(default_factory=list)
    vertex_groups: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks: dict[str, LandmarkSet] = field(default_factory=dict)
    symmetry: np.ndarray | None = None  # (N,) int32
    units: str = "cm"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rest_points = np.ascontiguousarray(self.rest_points, dtype=np.float32)
        self.face_vertex_counts = np.ascontiguousarray(self.face_vertex_counts, dtype=np.int32)
        self.face_vertex_indices = np.ascontiguousarray(self.face_vertex_indices, dtype=np.int32)
        if self.uv_values is not None:
            self.uv_values = np.ascontiguousarray(self.uv_values, dtype=np.float32)
            self.uv_indices = np.ascontiguousarray(self.uv_indices, dtype=np.int32)
        if self.symmetry is not None:
            self.symmetry = np.ascontiguousarray(self.symmetry, dtype=np.int32)
        self.vertex_groups = {k: np.ascontiguousarray(v, dtype=np.int32) for k, v in self.vertex_groups.items()}
        if not self.submeshes:
            self.submeshes = [SubMesh("mesh", 0, self.num_points, 0, self.num_faces)]
        self.submeshes = list(self.submeshes)
        self.materials = list(self.materials)
        self.check()
        self._topology_id: str | None = None

    # ---- sizes and lookups -------------------------------------------------------------------
    @property
    def num_points(self) -> int:
        return int(self.rest_points.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.face_vertex_counts.shape[0])

    @property
    def face_offsets(self) -> np.ndarray:
        """(F + 1,) start of each face in ``face_vertex_indices``."""
        return np.concatenate([[0], np.cumsum(self.face_vertex_counts, dtype=np.int64)])

    def submesh(self, name: str) -> SubMesh:
        for sm in self.submeshes:
            if sm.name == name:
                return sm
        raise KeyError(f"no sub-mesh {name!r}; have {[s.name for s in self.submeshes]}")

    def mesh_parts(self) -> list[MeshPart]:
        """The output meshes, in order of first appearance; raises if one is not vertex-closed."""
        order: dict[str, list[SubMesh]] = {}
        for sm in self.submeshes:
            order.setdefault(sm.mesh_name, []).append(sm)
        offsets = self.face_offsets
        parts = []
        for name, sms in order.items():
            v0, v1 = min(s.vertex_start for s in sms), max(s.vertex_stop for s in sms)
            f0, f1 = min(s.face_start for s in sms), max(s.face_stop for s in sms)
            if sum(s.face_count for s in sms) != f1 - f0:
                raise ValueError(f"mesh {name!r}: its sub-meshes' faces are not one contiguous range")
            used = self.face_vertex_indices[offsets[f0]:offsets[f1]]
            if used.size and (used.min() < v0 or used.max() >= v1):
                raise ValueError(f"mesh {name!r}: faces use vertices outside [{v0}, {v1}); "
                                 "put the sub-meshes that share vertices in one mesh")
            mats = tuple(MaterialRange(m.name, max(m.face_start, f0), min(m.face_stop, f1))
                         for m in self.materials if m.face_start < f1 and m.face_stop > f0)
            parts.append(MeshPart(name, v0, v1, f0, f1, tuple(sms), mats, sms[0].subdivision_scheme))
        return parts

    def submesh_arrays(self, sm: SubMesh | MeshPart) -> dict[str, np.ndarray]:
        """Connectivity of one sub-mesh or mesh part, indices local to it (vertex_start → 0)."""
        offsets = self.face_offsets
        lo, hi = int(offsets[sm.face_start]), int(offsets[sm.face_stop])
        out = {
            "face_vertex_counts": self.face_vertex_counts[sm.face_start:sm.face_stop],
            "face_vertex_indices": self.face_vertex_indices[lo:hi] - sm.vertex_start,
        }
        if self.uv_values is not None:
            uv_idx = self.uv_indices[lo:hi]
            used = np.unique(uv_idx)
            remap = np.full(self.uv_values.shape[0], -1, np.int32)
            remap[used] = np.arange(len(used), dtype=np.int32)
            out["uv_values"] = self.uv_values[used]
            out["uv_indices"] = remap[uv_idx]
        return out

    def triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """Fan triangulation: (T, 3) vertex ids and (T,) the face each triangle came from."""
        tri, face_of, _ = self._fan()
        return tri, face_of

    def uv_triangles(self) -> np.ndarray:
        """(T, 3) uv ids of the fan triangulation, aligned with :meth:`triangles`."""
        if self.uv_indices is None:
            raise ValueError(f"topology {self.name!r} has no UVs")
        _, _, corners = self._fan()
        return self.uv_indices[corners]

    def _fan(self):
        counts = self.face_vertex_counts
        offsets = self.face_offsets[:-1]
        n_tri = np.maximum(counts - 2, 0)
        face_of = np.repeat(np.arange(len(counts), dtype=np.int32), n_tri)
        k = np.arange(len(face_of)) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)  # tri index within face
        base = offsets[face_of]
        corners = np.stack([base, base + k + 1, base + k + 2], axis=1)  # (T, 3) positions in indices array
        return self.face_vertex_indices[corners], face_of, corners

    # ---- identity ----------------------------------------------------------------------------
    @property
    def topology_id(self) -> str:
        """Stable content hash of connectivity and UVs (not of rest points, names or groups)."""
        if self._topology_id is None:
            h = hashlib.sha256(b"topos-topology-v1")
            for arr in (self.face_vertex_counts, self.face_vertex_indices):
                h.update(np.ascontiguousarray(arr, dtype="<i4").tobytes())
            if self.uv_values is not None:
                h.update(np.ascontiguousarray(self.uv_values, dtype="<f4").tobytes())
                h.update(np.ascontiguousarray(self.uv_indices, dtype="<i4").tobytes())
            h.update(str(self.num_points).encode())
            self._topology_id = "topo-" + h.hexdigest()[:24]
        return self._topology_id

    def check(self) -> None:
        """Raise ``ValueError`` on inconsistent arrays."""
        n, corners = self.num_points, int(self.face_vertex_counts.sum())
        if self.rest_points.ndim != 2 or self.rest_points.shape[1] != 3:
            raise ValueError(f"rest_points must be (N, 3), got {self.rest_points.shape}")
        if (self.face_vertex_counts < 3).any():
            raise ValueError("every face needs at least 3 vertices")
        if self.face_vertex_indices.shape != (corners,):
            raise ValueError(f"face_vertex_indices has {self.face_vertex_indices.size} entries, counts sum to {corners}")
        if corners and (self.face_vertex_indices.min() < 0 or self.face_vertex_indices.max() >= n):
            raise ValueError("face_vertex_indices out of range")
        if self.uv_values is not None:
            if self.uv_indices is None or self.uv_indices.shape != (corners,):
                raise ValueError("uv_indices must be face-varying (one per face corner)")
            if corners and (self.uv_indices.min() < 0 or self.uv_indices.max() >= len(self.uv_values)):
                raise ValueError("uv_indices out of range")
        if self.symmetry is not None and self.symmetry.shape != (n,):
            raise ValueError("symmetry must be (N,)")
        for sm in self.submeshes:
            if not (0 <= sm.vertex_start <= sm.vertex_stop <= n and 0 <= sm.face_start <= sm.face_stop <= self.num_faces):
                raise ValueError(f"sub-mesh {sm.name!r} ranges out of bounds")

    def require_points(self, points: np.ndarray) -> None:
        if points.shape != (self.num_points, 3):
            raise TopologyMismatchError(
                f"points have shape {points.shape}, topology {self.name!r} needs ({self.num_points}, 3)")

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        arrays = {
            "rest_points": self.rest_points,
            "face_vertex_counts": self.face_vertex_counts,
            "face_vertex_indices": self.face_vertex_indices,
        }
        if self.uv_values is not None:
            arrays["uv_values"] = self.uv_values
            arrays["uv_indices"] = self.uv_indices
        if self.symmetry is not None:
            arrays["symmetry"] = self.symmetry
        for name, ids in self.vertex_groups.items():
            arrays[f"group__{name}"] = ids
        for name, lm in self.landmarks.items():
            arrays[f"landmarks__{name}__vertices"] = np.asarray(lm.vertices, np.int32)
            arrays[f"landmarks__{name}__weights"] = np.asarray(lm.weights, np.float32)
        meta = {
            "format": FORMAT,
            "name": self.name,
            "units": self.units,
            "topology_id": self.topology_id,
            "submeshes": [sm.__dict__ for sm in self.submeshes],
            "materials": [m.__dict__ for m in self.materials],
            "landmark_names": {k: v.names for k, v in self.landmarks.items()},
            "info": self.info,
        }
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_output_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReferenceTopology":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a TOPOS topology file (format {meta.get('format')!r})")
            groups = {k[len("group__"):]: data[k] for k in data.files if k.startswith("group__")}
            landmarks = {
                name: LandmarkSet(list(names), data[f"landmarks__{name}__vertices"], data[f"landmarks__{name}__weights"])
                for name, names in meta["landmark_names"].items()
            }
            topo = cls(
                name=meta["name"],
                rest_points=data["rest_points"],
                face_vertex_counts=data["face_vertex_counts"],
                face_vertex_indices=data["face_vertex_indices"],
                uv_values=data["uv_values"] if "uv_values" in data.files else None,
                uv_indices=data["uv_indices"] if "uv_indices" in data.files else None,
                submeshes=[SubMesh(**sm) for sm in meta["submeshes"]],
                materials=[MaterialRange(**m) for m in meta.get("materials", [])],
                vertex_groups=groups,
                landmarks=landmarks,
                symmetry=data["symmetry"] if "symmetry" in data.files else None,
                units=meta.get("units", "cm"),
                info=meta.get("info", {}),
            )
        if topo.topology_id != meta["topology_id"]:
            raise ValueError(f"{path}: stored topology id {meta['topology_id']} does not match its contents ({topo.topology_id})")
        return topo

    @classmethod
    def from_obj(cls, path: str | os.PathLike, name: str | None = None, split_by: str = "usemtl") -> "ReferenceTopology":
        """Build from an OBJ (``.obj``, ``.obj.xz``, ``.obj.gz``): one sub-mesh for the whole file and
        one material range per ``usemtl`` run (or ``g``/``o`` with ``split_by``). Callers that know the
        parts (the ICT importer) pass their own sub-meshes afterwards.
        """
        from .obj_reader import read_obj

        mesh = read_obj(path)
        stem = Path(path).name.split(".")[0]
        return cls(
            name=name or stem,
            rest_points=mesh.points,
            face_vertex_counts=mesh.face_vertex_counts,
            face_vertex_indices=mesh.face_vertex_indices,
            uv_values=mesh.uv_values,
            uv_indices=mesh.uv_indices,
            materials=[MaterialRange(n, f0, f1) for n, f0, f1 in mesh.face_groups(split_by)],
        )
