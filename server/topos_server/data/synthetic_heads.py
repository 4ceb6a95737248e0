"""Synthetic training and evaluation data for TOPOS-VAE, deterministic by seed, made on the fly.

One sample (:class:`SyntheticHead`):

1. a head from the ICT :class:`~topos_server.assets.head_model.HeadModel` (identity ~ N(0, 1), sparse random
   ARKit expression weights),
2. deformed outside the model's span: random RBF warps (smooth bumps of a few mm) and region
   scalings (a nose, a cheek, an ear made larger or smaller) — the network must learn geometry,
   not PCA coefficients,
3. its outer surface (``face`` + ``head_neck``) re-topologised by one of
   :data:`~topos_server.geometry.retopology.METHODS`, vertex noise, missing patches (holes),
4. a random similarity transform (the input's pose and units are unknown),
5. a point cloud with normals drawn uniformly by area from that surface.

The target is always the head in reference (ICT) vertex order, all vertices (eyeballs, teeth, …
included). Re-topologies are sparse operators (:class:`~topos_server.geometry.retopology.Retopology`)
built once per (method, slot) on the mean head and applied to every head; ``marching_cubes`` is
built per head (its vertices come from that head's distance field).

Sample ``i`` of a :class:`SyntheticHeads` with seed ``s`` depends on ``(s, i)`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from topos_server.geometry.canonical_pose import PoseCanonicalizer, compose, invert
from topos_server.geometry.registration import Similarity
from topos_server.geometry.retopology import METHODS, Retopology, retopologize
from topos_server.geometry.surface_points import sample_surface

OUTER_SURFACE_PARTS = ("face", "head_neck")
HELD_OUT_METHOD = "marching_cubes"  # never seen in training; the benchmark uses only this one
TRAINING_METHODS = tuple(m for m in METHODS if m != HELD_OUT_METHOD)


@dataclass(frozen=True)
class SyntheticHeadOptions:
    """How far samples stray from the mean head; the defaults are the training distribution."""

    identity_scale: float = 1.0
    expression_probability: float = 0.6
    max_expressions: int = 6
    max_rbf_warps: int = 6
    rbf_amplitude_cm: float = 0.35  # standard deviation of one warp's displacement
    rbf_radius_cm: tuple[float, float] = (1.5, 5.0)
    region_scale_probability: float = 0.6
    region_scale: float = 0.15  # ± relative size change of a region
    noise_cm: tuple[float, float] = (0.0, 0.03)
    max_holes: int = 3
    hole_radius_cm: tuple[float, float] = (0.8, 2.5)
    num_points: int = 2048
    pose_perturbation_deg: float = 8.0  # start of the canonicalising ICP in training (inference searches)
    operator_slots: int = 12  # distinct operators per re-topology method
    head_frame_probability: float = 0.0  # training examples left in the head model's frame at true size (HeadLatents' input)


@dataclass
class SyntheticHead:
    target: np.ndarray  # (N, 3) float32 the head in reference vertex order, its own frame (cm)
    mesh_points: np.ndarray  # (V, 3) float32 the re-topologised surface, input frame
    mesh_triangles: np.ndarray  # (T, 3) int64
    input_from_head: Similarity  # the random pose: input frame ← head frame
    points: np.ndarray  # (P, 3) float32 surface samples, input frame
    normals: np.ndarray  # (P, 3) float32
    method: str
    info: dict = field(default_factory=dict)


def outer_surface(topology) -> tuple[int, np.ndarray]:
    """Vertex count and (T, 3) triangles of the outer skin (ICT ``face`` + ``head_neck``; their vertices come first)."""
    parts = [topology.submesh(name) for name in OUTER_SURFACE_PARTS]
    if min(p.vertex_start for p in parts) != 0:
        raise ValueError("the outer surface parts must start at vertex 0")
    vertex_stop = max(p.vertex_stop for p in parts)
    tri, face_of = topology.triangles()
    use = np.zeros(len(tri), bool)
    for p in parts:
        use |= (face_of >= p.face_start) & (face_of < p.face_stop)
    tri = tri[use].astype(np.int64)
    if tri.max() >= vertex_stop:
        raise ValueError("outer surface triangles use vertices beyond its parts")
    return vertex_stop, tri


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def small_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def deform_out_of_span(x: np.ndarray, surface_vertex_count: int, rng: np.random.Generator,
                       opt: SyntheticHeadOptions) -> np.ndarray:
    """(N, 3) head → the same deformed outside the model's span: random RBF warps and a region scaling
    (centres on the first ``surface_vertex_count`` vertices, the outer skin)."""
    surface = x[:surface_vertex_count]
    for _ in range(rng.integers(0, opt.max_rbf_warps + 1)):
        centre = surface[rng.integers(len(surface))]
        radius = rng.uniform(*opt.rbf_radius_cm)
        weight = np.exp(-((x - centre) ** 2).sum(1) / (2 * radius ** 2))  # (N,)
        x = x + weight[:, None] * rng.normal(0.0, opt.rbf_amplitude_cm, 3)
    if rng.random() < opt.region_scale_probability:
        centre = surface[rng.integers(len(surface))]
        radius = rng.uniform(2.0, 5.0)
        weight = np.exp(-((x - centre) ** 2).sum(1) / (2 * radius ** 2))
        x = x + rng.uniform(-opt.region_scale, opt.region_scale) * weight[:, None] * (x - centre)
    return x


class SyntheticHeads:
    """Sample factory. ``methods`` are the re-topologies it draws from (uniformly)."""

    def __init__(self, head_model, topology, seed: int = 0, methods: tuple[str, ...] = TRAINING_METHODS,
                 options: SyntheticHeadOptions = SyntheticHeadOptions()):
        unknown = set(methods) - set(METHODS)
        if unknown or not methods:
            raise ValueError(f"unknown re-topology methods {sorted(unknown)}; choose from {METHODS}")
        self.head_model = head_model
        self.topology = topology
        self.seed = int(seed)
        self.methods = tuple(methods)
        self.options = options
        self.surface_vertex_count, self.surface_triangles = outer_surface(topology)
        self.mean_head = head_model.neutral.detach().cpu().numpy().astype(np.float64)  # (N, 3)
        self.canonicalizer = PoseCanonicalizer(self.mean_head[: self.surface_vertex_count], self.surface_triangles)
        self.arkit_count = len(head_model.arkit_expression_names)
        self._operators: dict[tuple[str, int], Retopology] = {}

    # ---- heads -----------------------------------------------------------------------------------
    def _rng(self, index: int, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), stream])

    def head(self, rng: np.random.Generator) -> np.ndarray:
        """(N, 3) float64 a random head in the head model's frame, deformed outside the model's span."""
        opt = self.options
        identity = rng.normal(size=(1, self.head_model.num_identity)) * opt.identity_scale
        expression = np.zeros((1, self.arkit_count))
        if rng.random() < opt.expression_probability:
            chosen = rng.choice(self.arkit_count, rng.integers(1, opt.max_expressions + 1), replace=False)
            expression[0, chosen] = rng.uniform(0.0, 1.0, len(chosen))
        with torch.no_grad():
            x = self.head_model.vertices(torch.as_tensor(identity, dtype=torch.float32),
                                         torch.as_tensor(expression, dtype=torch.float32))[0].cpu().numpy().astype(np.float64)
        return deform_out_of_span(x, self.surface_vertex_count, rng, opt)

    def operator(self, method: str, slot: int) -> Retopology:
        key = (method, slot)
        if key not in self._operators:
            rng = np.random.default_rng([self.seed, 7919, METHODS.index(method), slot])
            self._operators[key] = retopologize(method, self.mean_head[: self.surface_vertex_count],
                                                self.surface_triangles, rng)
        return self._operators[key]

    def retopologized_surface(self, head: np.ndarray, method: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        surface = head[: self.surface_vertex_count]
        if method == "marching_cubes":
            op = retopologize(method, surface, self.surface_triangles, rng)
        else:
            op = self.operator(method, int(rng.integers(self.options.operator_slots)))
        points = op.apply(surface).astype(np.float64)
        points += rng.normal(size=points.shape) * rng.uniform(*self.options.noise_cm)
        triangles = op.triangles
        for _ in range(rng.integers(0, self.options.max_holes + 1)):
            centre = points[rng.integers(len(points))]
            radius = rng.uniform(*self.options.hole_radius_cm)
            centroids = points[triangles].mean(1)
            triangles = triangles[((centroids - centre) ** 2).sum(1) > radius ** 2]
        used = np.unique(triangles)
        remap = np.full(len(points), -1, np.int64)
        remap[used] = np.arange(len(used))
        return points[used], remap[triangles]

    def sample(self, index: int, random_pose: bool = True) -> SyntheticHead:
        """Sample ``index``: a head, its re-topologised surface in a random pose and its point cloud."""
        rng = self._rng(index)
        method = self.methods[int(rng.integers(len(self.methods)))]
        head = self.head(rng)
        mesh_points, mesh_triangles = self.retopologized_surface(head, method, rng)
        if random_pose:
            pose = Similarity(float(np.exp(rng.uniform(np.log(0.1), np.log(10.0)))), random_rotation(rng),
                              rng.uniform(-50.0, 50.0, 3))
        else:
            pose = Similarity(1.0, np.eye(3), np.zeros(3))
        mesh_points = pose.apply(mesh_points)
        points, normals, _ = sample_surface(mesh_points, mesh_triangles, self.options.num_points, rng)
        return SyntheticHead(head.astype(np.float32), mesh_points.astype(np.float32), mesh_triangles, pose,
                             points.astype(np.float32), normals.astype(np.float32), method)

    # ---- training batches ------------------------------------------------------------------------
    def training_example(self, index: int) -> dict[str, np.ndarray]:
        """Encoder input and target in the canonical frame, as inference produces it.

        The head is posed by a small random similarity and canonicalised by the same point-to-plane ICP
        that :meth:`PoseCanonicalizer.align` ends with (its global search is skipped: the start is
        already near).
        """
        sample = self.sample(index, random_pose=False)
        rng = self._rng(index, stream=1)
        opt = self.options
        if opt.head_frame_probability and self._rng(index, stream=2).random() < opt.head_frame_probability:
            canonical = Similarity(1.0, np.eye(3), np.zeros(3))  # no canonicalisation: a large head stays large
        else:
            start = Similarity(float(np.exp(rng.uniform(-0.05, 0.05))), small_rotation(rng, opt.pose_perturbation_deg),
                               rng.normal(0.0, 0.7, 3))
            canonical = self.canonicalizer.refine_to_plane(sample.points, start, iterations=6)
        points = canonical.apply(sample.points)
        return {
            "points": points.astype(np.float32),  # (P, 3)
            "normals": (sample.normals @ canonical.rotation.T).astype(np.float32),  # (P, 3)
            "offsets": self.canonicalizer.normal_offsets(points).astype(np.float32),  # (P, 1)
            "target": canonical.apply(sample.target).astype(np.float32),  # (N, 3)
        }

    def batch(self, indices) -> dict[str, torch.Tensor]:
        examples = [self.training_example(int(i)) for i in indices]
        return {k: torch.from_numpy(np.stack([e[k] for e in examples])) for k in examples[0]}

    def canonicalize(self, sample: SyntheticHead) -> Similarity:
        """Inference-time pose estimate for an evaluation sample: canonical frame ← input frame."""
        return self.canonicalizer.align(sample.points.astype(np.float64))

    @staticmethod
    def head_frame_error_cm(sample: SyntheticHead, predicted_input_frame: np.ndarray) -> np.ndarray:
        """(N,) distance between a prediction (input frame) and the target, in the head's own cm."""
        back = invert(sample.input_from_head).apply(np.asarray(predicted_input_frame, np.float64))
        return np.linalg.norm(back - sample.target, axis=1)


__all__ = ["SyntheticHeads", "SyntheticHead", "SyntheticHeadOptions", "HELD_OUT_METHOD", "TRAINING_METHODS",
           "deform_out_of_span", "outer_surface", "compose", "invert"]
