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
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b))
    np.multiply(a[..., 1], b[..., 2], out=out[..., 0])
    out[..., 0] -= a[..., 2] * b[..., 1]
    np.multiply(a[..., 2], b[..., 0], out=out[..., 1])
    out[..., 1] -= a[..., 0] * b[..., 2]
    np.multiply(a[..., 0], b[..., 1], out=out[..., 2])
    out[..., 2] -= a[..., 1] * b[..., 0]
    return out


def _on_triangles(a: np.ndarray, b: np.ndarray, c: np.ndarray, weights: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(..., S, 3) points: barycentric ``weights`` (S, 3) on triangles (a, b, c) plus ``offset`` (S, 3) in their frames."""
    edge, other = b - a, c - a
    normal = _cross(edge, other)
    edge /= np.maximum(np.sqrt((edge * edge).sum(-1, keepdims=True)), 1e-30)
    normal /= np.maximum(np.sqrt((normal * normal).sum(-1, keepdims=True)), 1e-30)
    out = weights[:, :1] * a + weights[:, 1:2] * b + weights[:, 2:] * c
    out += offset[:, :1] * edge + offset[:, 1:2] * _cross(normal, edge) + offset[:, 2:] * normal
    return out


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
        out = _on_triangles(a, b, c, weights, offset)
        out[..., exact, :] = a[..., exact, :]
        return out

    def evaluate_deltas(self, head: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """Deformation transfer of shapes: (K, N, 3) offsets of ``head`` (N, 3) → (K, S, 3) float32 offsets of the
        mapped head. Only the (shape, vertex) pairs whose reference triangle the shape moves are computed; the
        others are exactly 0, and a vertex mapped onto a reference vertex takes that vertex's offsets."""
        deltas = np.asarray(deltas, np.float32)
        out = np.zeros((len(deltas), len(self), 3), np.float32)
        exact = np.flatnonzero(self._exact)
        out[:, exact] = deltas[:, self.vertices[exact, 0]]
        rows = np.flatnonzero(~self._exact)
        if not len(rows):
            return out
        vertices = self.vertices[rows]  # (R, 3)
        moved = (deltas[..., 0] != 0) | (deltas[..., 1] != 0) | (deltas[..., 2] != 0)  # (K, N)
        touched = moved[:, vertices[:, 0]] | moved[:, vertices[:, 1]] | moved[:, vertices[:, 2]]  # (K, R)
        shape, row = np.nonzero(touched)  # (P,) the pairs a shape moves
        # float32 is plenty for offsets (1e-6 of a head's size) and halves the memory traffic
        head = np.asarray(head, np.float32)
        shaped = (head[None] + deltas).reshape(-1, 3)  # (K·N, 3)
        weights, offset = self.barycentric[rows].astype(np.float32), self.offset[rows].astype(np.float32)
        rest = _on_triangles(*(head[vertices[:, k]] for k in range(3)), weights, offset)  # (R, 3)
        flat = shape * np.int64(len(head))
        corners = [np.take(shaped, flat + vertices[row, k], axis=0) for k in range(3)]  # (P, 3) each
        moved_pairs = _on_triangles(*corners, weights[row], offset[row])
        moved_pairs -= rest[row]
        out.reshape(-1, 3)[shape * np.int64(len(self)) + rows[row]] = moved_pairs
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
