"""A procedural studio head: a quad mesh of another topology lying on a reference head, with UDIM UVs.

For tests and benchmarks of studio topologies: the reference's outer skin re-meshed isotropically
(``geometry/retopology.py``), every triangle split into three quads (corner, two edge midpoints, centroid:
an all-quad mesh whose vertices match no reference vertex), UVs by a cylindrical projection around the
vertical axis — the front half in UDIM tile 1001, the back half in 1002, a UV seam where they meet —
and one material per tile (``M_StudioFront``, ``M_StudioBack``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_sdk.atomic_files import atomic_output_path
from topos_sdk.topology import MaterialRange, ReferenceTopology


@dataclass
class QuadHead:
    points: np.ndarray  # (V, 3) float64
    quads: np.ndarray  # (F, 4) int64 vertex ids, counter-clockwise seen from outside
    uv_values: np.ndarray  # (M, 2) float64
    uv_quads: np.ndarray  # (F, 4) int64 uv ids
    back: np.ndarray  # (F,) bool: the face lies in tile 1002

    def topology(self, name: str = "quad_head", uvs: bool = True) -> ReferenceTopology:
        order = np.argsort(self.back, kind="stable")  # front faces first: one material run each
        front_count = int((~self.back).sum())
        return ReferenceTopology(
            name=name, rest_points=self.points, face_vertex_counts=np.full(len(order), 4),
            face_vertex_indices=self.quads[order].ravel(),
            uv_values=self.uv_values if uvs else None, uv_indices=self.uv_quads[order].ravel() if uvs else None,
            materials=[MaterialRange("M_StudioFront", 0, front_count),
                       MaterialRange("M_StudioBack", front_count, len(order))])

    def write_obj(self, path: str | Path, points: np.ndarray | None = None, uvs: bool = True) -> Path:
        """An OBJ with a group (``g front``/``g back``) and ``usemtl`` per tile (and ``vt`` when ``uvs``); ``points``
        replace the rest points."""
        points = self.points if points is None else np.asarray(points)
        lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in points]
        if uvs:
            lines += [f"vt {u:.6f} {v:.6f}" for u, v in self.uv_values]
        for material, faces in (("M_StudioFront", np.flatnonzero(~self.back)), ("M_StudioBack", np.flatnonzero(self.back))):
            lines += [f"g {material[len('M_Studio'):].lower()}", f"usemtl {material}"]
            for f in faces:
                if uvs:
                    lines.append("f " + " ".join(f"{a + 1}/{t + 1}" for a, t in zip(self.quads[f], self.uv_quads[f])))
                else:
                    lines.append("f " + " ".join(str(a + 1) for a in self.quads[f]))
        path = Path(path)
        with atomic_output_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        return path


def quad_head(reference_points: np.ndarray, reference_triangles: np.ndarray, edge_cm: float = 1.2,
              seed: int = 0) -> QuadHead:
    """The quad head on the surface (``reference_points`` (N, 3) cm, ``reference_triangles`` (T, 3))."""
    from topos_server.geometry.retopology import isotropic, unique_edges

    remesh = isotropic(np.asarray(reference_points, np.float64), reference_triangles, np.random.default_rng(seed),
                       edge=edge_cm)
    corners = np.asarray(remesh.weights @ np.asarray(reference_points, np.float64))  # (V0, 3)
    triangles = manifold_triangles(remesh.triangles, len(corners))
    edges, opposite = unique_edges(triangles)  # (E, 2), (T, 3) the edge opposite each corner
    v0, e0 = len(corners), len(edges)
    points = np.concatenate([corners, corners[edges].mean(1), corners[triangles].mean(1)])
    quads = []
    for k in range(3):  # the quad at corner k: corner, midpoint of edge (k, k+1), centroid, midpoint of edge (k-1, k)
        quads.append(np.stack([triangles[:, k], v0 + opposite[:, (k + 2) % 3], v0 + e0 + np.arange(len(triangles)),
                               v0 + opposite[:, (k + 1) % 3]], 1))
    quads = np.concatenate(quads)  # (3T, 4)
    used, quads = np.unique(quads, return_inverse=True)  # drop the corners of removed triangles
    points, quads = points[used], quads.reshape(-1, 4)
    # UVs: cylindrical around +y, the face (+z) in the middle of tile 1001, the back in 1002
    centre = 0.5 * (points.min(0) + points.max(0))
    angle = np.arctan2(points[:, 0] - centre[0], points[:, 2] - centre[2])  # (V,) 0 = front
    height = (points[:, 1] - points.min(0)[1]) / np.ptp(points[:, 1])
    face_angle = np.arctan2(points[quads, 0].mean(1) - centre[0], points[quads, 2].mean(1) - centre[2])
    back = np.abs(face_angle) > np.pi / 2
    front_u = np.clip((angle + np.pi / 2) / np.pi, 0.0, 1.0)
    back_u = 1.0 + np.clip((np.mod(angle, 2 * np.pi) - np.pi / 2) / np.pi, 0.0, 1.0)
    v = 0.02 + 0.96 * height
    uv_values = np.concatenate([np.stack([front_u, v], 1), np.stack([back_u, v], 1)])  # front ids, then back ids
    uv_quads = quads + np.where(back, len(points), 0)[:, None]
    used, uv_quads = np.unique(uv_quads, return_inverse=True)
    return QuadHead(points, quads, uv_values[used], uv_quads.reshape(-1, 4), back)


def manifold_triangles(triangles: np.ndarray, num_points: int) -> np.ndarray:
    """``triangles`` without those on edges shared by more than two (the re-mesher's dual leaves a few),
    largest connected piece only."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    from topos_server.geometry.retopology import unique_edges

    triangles = np.asarray(triangles, np.int64)
    while True:
        edges, opposite = unique_edges(triangles)
        uses = np.bincount(opposite.ravel(), minlength=len(edges))
        bad = (uses[opposite] > 2).any(1)
        if not bad.any():
            break
        triangles = triangles[~bad]
    links = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]]])
    _, label = connected_components(csr_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])),
                                               shape=(num_points, num_points)), directed=False)
    largest = np.bincount(label[triangles[:, 0]]).argmax()
    return triangles[label[triangles[:, 0]] == largest]
