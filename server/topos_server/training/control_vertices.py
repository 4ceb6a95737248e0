"""Decoding a few thousand control vertices and upsampling to the whole reference mesh.

The decoder's per-vertex cross-attention is the cost of a conversion on a CPU (26,719 queries).
Head deformations are smooth at the scale of a few millimetres *along the mesh* — lips and eyelids
move apart, but they are not connected to each other — so the decoder predicts M control vertices and
every reference vertex is a fixed sparse combination of its k nearest controls in the mesh graph:

    offset[i] = Σ_j weights[i, j] · offset[control_ids[neighbours[i, j]]]        Σ_j weights[i, j] = 1

Controls are farthest-point samples of the template (at least a few per connected component, so
eyeballs, teeth and lashes get their own). Weights are fitted by least squares, per vertex, to the
offsets of synthetic heads (identity, expressions, warps outside the model's span), with the
partition of unity as a constraint and a small ridge towards inverse-distance weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from topos_server.geometry.retopology import unique_edges
from topos_server.geometry.surface_points import farthest_point_indices

MIN_CONTROLS_PER_COMPONENT = 4


@dataclass
class ControlUpsampling:
    control_ids: np.ndarray  # (M,) int64 reference vertex ids of the controls
    neighbours: np.ndarray  # (N, k) int64 positions in control_ids
    weights: np.ndarray  # (N, k) float32, rows sum to 1 (padding entries are 0)

    def upsample(self, control_values: np.ndarray) -> np.ndarray:
        """(…, M, C) values at the controls → (…, N, C) at every reference vertex."""
        gathered = np.asarray(control_values)[..., self.neighbours, :]  # (…, N, k, C)
        return (gathered * self.weights[..., None]).sum(-2)


def mesh_graph(points: np.ndarray, triangles: np.ndarray) -> sp.csr_matrix:
    """(N, N) symmetric edge-length graph of a triangle mesh."""
    edges, _ = unique_edges(triangles)
    length = np.maximum(np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1), 1e-9)
    n = len(points)
    graph = sp.coo_matrix((length, (edges[:, 0], edges[:, 1])), shape=(n, n))
    return (graph + graph.T).tocsr()


def choose_control_vertices(points: np.ndarray, graph: sp.csr_matrix, count: int) -> np.ndarray:
    """(count,) vertex ids: a few farthest-point samples in every connected component, then global ones."""
    points = np.asarray(points, np.float64)
    _, labels = connected_components(graph, directed=False)
    chosen: list[int] = []
    for component in np.unique(labels):
        members = np.flatnonzero(labels == component)
        chosen.extend(members[farthest_point_indices(points[members], min(MIN_CONTROLS_PER_COMPONENT, len(members)))])
    if count < len(chosen):
        raise ValueError(f"{count} control vertices cannot cover the mesh's {len(np.unique(labels))} parts; "
                         f"use at least {len(chosen)}")
    return farthest_point_indices(points, count, chosen)


def graph_neighbours(graph: sp.csr_matrix, control_ids: np.ndarray, k: int,
                     chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The k controls nearest each vertex along the mesh: (N, k) positions in ``control_ids`` and
    (N, k) graph distances (inf where a vertex's component has fewer than k controls)."""
    n = graph.shape[0]
    best_index = np.zeros((n, 0), np.int64)
    best_distance = np.zeros((n, 0))
    for start in range(0, len(control_ids), chunk):
        sources = control_ids[start:start + chunk]
        distance = dijkstra(graph, directed=False, indices=sources).T  # (N, chunk)
        index = np.broadcast_to(np.arange(start, start + len(sources)), distance.shape)
        merged_distance = np.concatenate([best_distance, distance], axis=1)
        merged_index = np.concatenate([best_index, index], axis=1)
        keep = np.argsort(merged_distance, axis=1, kind="stable")[:, :k]
        best_distance = np.take_along_axis(merged_distance, keep, 1)
        best_index = np.take_along_axis(merged_index, keep, 1)
    return best_index, best_distance


def fit_weights(offsets: np.ndarray, control_ids: np.ndarray, neighbours: np.ndarray, distances: np.ndarray,
                ridge: float = 1e-3, chunk: int = 2048) -> np.ndarray:
    """(N, k) weights: per vertex, least squares of its offsets over examples from its neighbours' offsets.

    ``offsets`` (S, N, 3) example deformations. Minimises Σ_s ‖d_i − Σ_j w_j d_j‖² + ρ‖w − w₀‖² subject to
    Σ_j w_j = 1, where w₀ are inverse graph-distance weights and ρ is ``ridge`` times the mean diagonal of
    the normal matrix. Controls reproduce themselves exactly.
    """
    offsets = np.asarray(offsets, np.float64)
    n, k = neighbours.shape
    valid = np.isfinite(distances)
    inverse = np.where(valid, 1.0 / np.maximum(distances, 1e-6), 0.0)
    prior = inverse / inverse.sum(1, keepdims=True)  # (N, k)
    weights = np.zeros((n, k))
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        source = offsets[:, control_ids[neighbours[rows]]]  # (S, R, k, 3)
        target = offsets[:, rows]  # (S, R, 3)
        normal = np.einsum("srkc,srlc->rkl", source, source)  # (R, k, k)
        rhs = np.einsum("srkc,src->rk", source, target)  # (R, k)
        scale = np.trace(normal, axis1=1, axis2=2)[:, None, None] / k
        mask = valid[rows]
        normal = normal * (mask[:, :, None] & mask[:, None, :])
        normal = normal + (ridge * np.maximum(scale, 1e-12)) * np.eye(k)  # (R, k, k)
        normal[~mask] = 0.0
        normal[:, np.arange(k), np.arange(k)] += np.where(mask, 0.0, 1.0)  # padding: w = 0
        rhs = np.where(mask, rhs + ridge * scale[:, 0] * prior[rows], 0.0)
        # KKT system of the equality-constrained least squares: [[A, m], [mᵀ, 0]] [w; λ] = [b; 1]
        system = np.zeros((normal.shape[0], k + 1, k + 1))
        system[:, :k, :k] = normal
        system[:, :k, k] = mask
        system[:, k, :k] = mask
        right = np.concatenate([rhs, np.ones((normal.shape[0], 1))], axis=1)
        weights[rows] = np.linalg.solve(system, right[..., None])[..., 0][:, :k]
    is_control = distances[:, 0] == 0.0
    weights[is_control] = 0.0
    weights[is_control, 0] = 1.0
    return weights.astype(np.float32)


def build_control_upsampling(template: np.ndarray, triangles: np.ndarray, example_offsets: np.ndarray, count: int,
                             k: int = 12, ridge: float = 1e-3) -> ControlUpsampling:
    """Controls, mesh-graph neighbours and fitted weights for the reference mesh ``template`` (N, 3)."""
    template = np.asarray(template, np.float64)
    graph = mesh_graph(template, np.asarray(triangles, np.int64))
    control_ids = choose_control_vertices(template, graph, count)
    neighbours, distances = graph_neighbours(graph, control_ids, k)
    weights = fit_weights(example_offsets, control_ids, neighbours, distances, ridge)
    neighbours = np.where(np.isfinite(distances), neighbours, neighbours[:, :1])  # padding: any valid id, weight 0
    return ControlUpsampling(control_ids, neighbours.astype(np.int64), weights)


def fit_control_upsampling(head_model, topology, count: int, k: int = 12, examples: int = 300,
                           seed: int = 77) -> ControlUpsampling:
    """Controls and weights for the reference topology, fitted to ``examples`` synthetic heads' offsets from the
    mean head (the training distribution of :class:`SyntheticHeads`, generated with their own seed)."""
    from topos_server.data.synthetic_heads import SyntheticHeads

    heads = SyntheticHeads(head_model, topology, seed=seed)
    offsets = np.stack([heads.head(np.random.default_rng([seed, i])) - heads.mean_head for i in range(examples)])
    triangles, _ = topology.triangles()
    return build_control_upsampling(heads.mean_head, triangles, offsets, count, k)


def attach_control_decoding(model, upsampling: ControlUpsampling):
    """A copy of a :class:`ToposVAE` whose attention branch runs at the controls of ``upsampling`` only.

    Every weight carries over (the decoder's queries are per vertex, so the same network is just asked
    at fewer vertices); fine-tune afterwards to let it adapt to the upsampling.
    """
    from topos_server.models.vae import ToposVAE

    config = {key: value for key, value in model.config.items() if not key.startswith("_")}
    config.update(control_vertices=len(upsampling.control_ids), control_neighbours=upsampling.neighbours.shape[1])
    result = ToposVAE(**config)
    missing, unexpected = result.load_state_dict(model.state_dict(), strict=False)
    if unexpected or set(missing) - {"control_ids", "upsample_neighbours", "upsample_weights"}:
        raise ValueError(f"cannot carry the weights over: missing {missing}, unexpected {unexpected}")
    result.set_control_upsampling(upsampling)
    return result.eval()
