"""A dense map from one mesh's vertices onto another mesh's surface, and its evaluation on any head.

Each mapped vertex is a barycentric point of a triangle of the target (reference) mesh plus an
offset expressed in that triangle's own orthonormal frame, so evaluating the map on a deformed
reference head moves the point with its triangle (position, rotation) and reproduces the mapped
mesh exactly on the head the map was built on. A vertex that coincides with a reference vertex is
mapped onto it with weights (1, 0, 0) and no offset: evaluating it returns that vertex bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def triangle_frames(corners: np.ndarray) -> np.ndarray:
    """(..., 3 corners, 3) triangles → (..., 3, 3) orthonormal frames, rows: edge 0→1, in-plane normal to it, face normal."""
    edge = corners[..., 1, :] - corners[..., 0, :]
    normal = np.cross(edge, corners[..., 2, :] - corners[..., 0, :])
    edge = edge / np.maximum(np.linalg.norm(edge, axis=-1, keepdims=True), 1e-30)
    normal = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-30)
    return np.stack([edge, np.cross(normal, edge), normal], axis=-2)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (..., 3) arrays (np.cross is several times slower on large stacks)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], axis=-1)


@dataclass
class DenseMap:
    """``point_i = Σ_k barycentric[i, k] · head[vertices[i, k]] + frame(head[vertices[i]])ᵀ · offset[i]``."""

    vertices: np.ndarray  # (S, 3) int32 reference vertex ids of the triangle each mapped vertex lies on
    barycentric: np.ndarray  # (S, 3) float64, rows sum to 1
    offset: np.ndarray  # (S, 3) float64 in the triangle's frame, reference units (cm)

    def __post_init__(self):
        self.vertices = np.ascontiguousarray(self.vertices, np.int32)
        self.barycentric = np.ascontiguousarray(self.barycentric, np.float64)
        self.offset = np.ascontiguousarray(self.offset, np.float64)
        if not (self.vertices.shape == self.barycentric.shape == self.offset.shape and self.vertices.ndim == 2
                and self.vertices.shape[1] == 3):
            raise ValueError("a dense map needs (S, 3) vertices, barycentrics and offsets")
        self._exact = (self.barycentric[:, 0] == 1.0) & ~self.offset.any(axis=1)  # (S,) mapped onto a vertex

    def __len__(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def exact_fraction(self) -> float:
        return float(self._exact.mean()) if len(self) else 0.0

    def evaluate(self, head: np.ndarray, rows: np.ndarray | None = None, dtype=np.float64) -> np.ndarray:
        """(..., N, 3) reference-topology points → (..., S, 3) mapped points in ``dtype`` (only ``rows`` of S if given)."""
        head = np.asarray(head, dtype)
        vertices, weights, offset = self.vertices, self.barycentric.astype(dtype), self.offset.astype(dtype)
        exact = self._exact
        if rows is not None:
            vertices, weights, offset, exact = vertices[rows], weights[rows], offset[rows], exact[rows]
        a, b, c = (head[..., vertices[:, k], :] for k in range(3))  # (..., S, 3) each
        edge, other = b - a, c - a
        normal = _cross(edge, other)
        edge /= np.maximum(np.sqrt((edge * edge).sum(-1, keepdims=True)), 1e-30)
        normal /= np.maximum(np.sqrt((normal * normal).sum(-1, keepdims=True)), 1e-30)
        out = weights[:, :1] * a + weights[:, 1:2] * b + weights[:, 2:] * c
        out += offset[:, :1] * edge + offset[:, 1:2] * _cross(normal, edge) + offset[:, 2:] * normal
        out[..., exact, :] = a[..., exact, :]
        return out

    def evaluate_deltas(self, head: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """Deformation transfer of shapes: (K, N, 3) offsets of ``head`` (N, 3) → (K, S, 3) float32 offsets of the
        mapped head; a mapped vertex whose reference triangle a shape does not move does not move either."""
        moved = deltas.any(axis=2)  # (K, N)
        touched = np.flatnonzero(moved[:, self.vertices].any(axis=(0, 2)))  # mapped rows any shape moves
        out = np.zeros((len(deltas), len(self), 3), np.float32)
        if len(touched):
            # float32 is plenty for offsets (1e-6 of a head's size) and halves the memory traffic
            rest = self.evaluate(head, touched, np.float32)  # (R, 3)
            shaped = self.evaluate(np.asarray(head, np.float32)[None] + deltas, touched, np.float32)  # (K, R, 3)
            block = shaped - rest
            block[~moved[:, self.vertices[touched]].any(axis=2)] = 0.0  # rows a shape leaves alone: exactly still
            out[:, touched] = block
        return out

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}vertices": self.vertices, f"{prefix}barycentric": self.barycentric,
                f"{prefix}offset": self.offset}

    @classmethod
    def from_arrays(cls, data, prefix: str = "") -> "DenseMap":
        return cls(data[f"{prefix}vertices"], data[f"{prefix}barycentric"], data[f"{prefix}offset"])

    @classmethod
    def build(cls, points: np.ndarray, target_points: np.ndarray, target_triangles: np.ndarray, triangle_ids: np.ndarray,
              barycentric: np.ndarray, units_to_reference: float) -> "DenseMap":
        """The map of ``points`` (S, 3) given their closest target triangles (S,) + barycentrics (S, 3) on
        ``target_points`` (N, 3) / ``target_triangles`` (T, 3); offsets scaled into reference units."""
        vertices = np.asarray(target_triangles, np.int64)[triangle_ids]  # (S, 3)
        corners = np.asarray(target_points, np.float64)[vertices]  # (S, 3, 3)
        base = np.einsum("sk,skx->sx", barycentric, corners)
        offset = np.einsum("sjx,sx->sj", triangle_frames(corners), np.asarray(points, np.float64) - base)
        return cls(vertices, barycentric, offset * units_to_reference)

    @classmethod
    def onto_vertices(cls, vertex_ids: np.ndarray) -> "DenseMap":
        """Each point is reference vertex ``vertex_ids[i]`` itself."""
        ids = np.asarray(vertex_ids, np.int32)
        barycentric = np.zeros((len(ids), 3))
        barycentric[:, 0] = 1.0
        return cls(np.repeat(ids[:, None], 3, axis=1), barycentric, np.zeros((len(ids), 3)))

    def replaced(self, rows: np.ndarray, other: "DenseMap") -> "DenseMap":
        """This map with ``rows`` taken from ``other`` (len(rows) entries)."""
        vertices, barycentric, offset = self.vertices.copy(), self.barycentric.copy(), self.offset.copy()
        vertices[rows], barycentric[rows], offset[rows] = other.vertices, other.barycentric, other.offset
        return DenseMap(vertices, barycentric, offset)
