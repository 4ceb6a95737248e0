"""Training pairs for TOPOS-Texture, made from real portraits' bakes (``data/texture_bank.py``).

Everything lives in one skin tile of the reference UV layout (1001, the face) at the model's
resolution R. One example (:meth:`TexturePairs.example`, a pure function of ``(seed, index)``):

- **truth**: a training portrait's observed albedo (its bake before any fill, mirrored side
  included) and its observation weight, times a *skin trust* (:func:`skin_trust`): texels whose
  colour is far from the portrait's skin where teeth, hair or a collar show up (the lips band, the
  forehead/scalp, the neck, the borders of what was seen) count as unseen, so the model learns skin
  there, not teeth, hair or collar. Eyes and brows are exempt.
- **hiding**: the observation weight of *another* portrait (flipped left↔right half the time) times
  the visibility of the head's UV normals from a random head turn (:func:`pose_visibility`; the
  portraits are nearly all frontal) multiplies the truth's weight: the model sees that part and must
  restore the rest.
- **re-lighting** (``relight_probability`` of the examples, 0 by default — see RELIGHT_PROBABILITY): the
  observation multiplied by the shading of a random light
  (ambient + a directional Lambert term through the head's UV normal map), then de-lit by the baker's
  own 9-coefficient SH fit (``fit_skin_lighting``) as every bake is: the model learns to remove what
  the SH de-lighting leaves, the input it meets at inference.
- **colour** (``colour_probability`` of the examples, 0 by default): the truth, what is seen of it and the
  baker's fill of it multiplied by one random gain per channel (:func:`colour_gain`: a common exposure and a
  smaller per-channel tint) — the same portrait as a new skin tone and exposure. The fill is linear in the
  observation, so the three stay consistent (up to the clip to [0, 1]). Meant against memorising the few hundred
  training faces (BENCHMARKS.md, TOPOS-Texture); its effect on held-out restoration is not measured yet.
- **targets**: the truth albedo and the region-prior roughness (``material_maps``). The loss counts
  only where the truth was observed (roughness everywhere on the island), hidden texels weighted up.

The head geometry of a bank portrait is not stored: examples use the reference topology's rest head
for the UV position / normal maps (at inference the fitted head's own).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from topos_sdk.topology import ReferenceTopology
from topos_server.models.texture_model_numpy import CONDITION_CHANNELS, TARGET_CHANNELS
from topos_server.texture import material_maps
from topos_server.texture.bake import (FULL_WEIGHT_COS, GRAZING_COS, MIRROR_ASYMMETRY, SKIN_MATERIALS,
                                       add_mirror_side_asymmetry, mirror_side_asymmetry, mirror_texel_map,
                                       skin_uv_layout, skin_vertex_field, vertex_normals)
from topos_server.texture.face_regions import face_regions
from topos_server.texture.fill import extend_beyond_islands, fill_islands, mirror_side
from topos_server.texture.skin_colour import fit_skin_colour
from topos_server.texture.skin_lighting import fit_skin_lighting

FACE_TILE = 1001
LIPS_TOLERANCE = 6.0  # spreads: lips are redder than skin, teeth and the mouth's inside are far
SKIN_TOLERANCE = 3.0
HIDDEN_LOSS_WEIGHT = 4.0  # texels hidden from the input count this much more than the ones it saw
RELIGHT_PROBABILITY = 0.0  # default share of re-lit examples: at 0.5 the network learned to remove shading that
# real bakes do not carry (the bank's truth is SH de-lit the same way) and did worse on held-out restoration
MIRROR_MASK_PROBABILITY = 0.5
COLOUR_EXPOSURE_SIGMA, COLOUR_TINT_SIGMA = 0.25, 0.08  # log-gain spreads: common to the channels, per channel
MAX_YAW_DEG, MAX_PITCH_DEG = 70.0, 25.0  # head turns of the hiding masks


@dataclass(frozen=True)
class UVGeometry:
    """Per-texel maps of one head in one skin tile at R²: all (C, R, R) / (R, R) float32."""

    position: np.ndarray  # (3, R, R) centred on the skin, ÷ half its bounding-box diagonal (~[−1, 1])
    normal: np.ndarray  # (3, R, R) unit, the head's frame (0 off the island)
    island: np.ndarray  # (R, R) 1 on skin texels
    roughness: np.ndarray  # (R, R) region-prior roughness in [0, 1]
    lips: np.ndarray  # (R, R) soft region weights
    exempt: np.ndarray  # (R, R) eyes + brows: never colour-tested

    @property
    def resolution(self) -> int:
        return int(self.island.shape[0])


def uv_geometry(topology: ReferenceTopology, points: np.ndarray, resolution: int, tile: int = FACE_TILE) -> UVGeometry:
    """UV maps of the head ``points`` (N, 3) in ``tile`` at ``resolution``²."""
    layout = skin_uv_layout(topology, resolution, SKIN_MATERIALS)
    tiles = {tt.tile: tt for tt in layout.tiles}
    if tile not in tiles:
        raise ValueError(f"topology {topology.name!r} has no skin tile {tile} (it has {sorted(tiles)})")
    tt = tiles[tile]
    points = np.asarray(points, np.float32)
    skin = np.unique(layout.triangles[layout.skin_triangles])
    centre = points[skin].mean(axis=0)
    half_extent = 0.5 * float(np.linalg.norm(np.ptp(points[skin], axis=0)))
    position = tt.image(tt.interpolate(((points - centre) / half_extent).T))  # (3, R, R)
    normal = tt.interpolate(vertex_normals(points, layout.triangles).T)  # (3, K)
    normal /= np.maximum(np.linalg.norm(normal, axis=0, keepdims=True), 1e-6)
    regions = face_regions(topology)
    n = topology.num_points
    per_vertex = np.stack([material_maps.roughness_per_vertex(regions, n), regions.get("lips", n),
                           np.maximum(regions.get("eyes", n), regions.get("brows", n))])  # (3, N)
    roughness, lips, exempt = tt.image(tt.interpolate(per_vertex))
    return UVGeometry(position, tt.image(normal), tt.island.astype(np.float32), roughness, lips, exempt)


def downsample_observation(albedo: np.ndarray, weight: np.ndarray | None, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(3, S, S) linear albedo + (S, S) weight (None: all 1) → (3, R, R), (R, R) float32 (area average, weight-aware)."""
    size = (resolution, resolution)
    if weight is None:
        return np.stack([cv2.resize(np.ascontiguousarray(p, np.float32), size, interpolation=cv2.INTER_AREA)
                         for p in albedo]), np.ones(size, np.float32)
    weight = np.asarray(weight, np.float32)
    if albedo.shape[-1] == resolution:
        return np.asarray(albedo, np.float32), weight
    w = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    premultiplied = np.stack([cv2.resize(np.multiply(p, weight, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
                              for p in albedo])
    return np.divide(premultiplied, w, out=np.zeros_like(premultiplied), where=w > 1e-4), w


def skin_trust(albedo: np.ndarray, weight: np.ndarray, geometry: UVGeometry) -> np.ndarray:
    """(R, R) factor in [0, 1] for the observation weight: how much each seen texel looks like skin.

    albedo (3, R, R) linear, weight (R, R). The colour model is fitted to the texels seen best
    (weight > 0.5) outside eyes, brows and lips; lips get a wider tolerance, eyes and brows none.
    """
    plain = (weight > 0.5) & (geometry.exempt < 0.1) & (geometry.lips < 0.1)
    flat = albedo.reshape(3, -1)
    model = fit_skin_colour(flat[:, plain.reshape(-1)], np.ones(int(plain.sum()), np.float32))
    if model is None:
        return np.ones_like(weight)
    tolerance = SKIN_TOLERANCE + (LIPS_TOLERANCE - SKIN_TOLERANCE) * geometry.lips.reshape(-1)
    likelihood = model.likelihood(flat, tolerance).reshape(weight.shape)
    return np.maximum(likelihood, geometry.exempt).astype(np.float32)


def encode_albedo(linear):
    """Linear albedo in [0, 1] (numpy or torch) → the model's range: 2·sqrt(a) − 1 (more resolution in the darks)."""
    return 2.0 * linear.clip(0.0, 1.0) ** 0.5 - 1.0


def decode_albedo(encoded):
    return ((encoded.clip(-1.0, 1.0) + 1.0) * 0.5) ** 2


def model_condition(observed: np.ndarray, weight: np.ndarray, fill: np.ndarray, geometry: UVGeometry,
                    topology: ReferenceTopology, tile: int = FACE_TILE) -> np.ndarray:
    """(3, R, R) linear observed albedo, (R, R) weight, (3, R, R) the baker's fill of them (:func:`bake_fill`)
    → (18, R, R) float32 condition (CONDITION_CHANNELS). The fill is the model's prior, with the face's seen
    left/right difference carried over to what it copied from the mirror side (:func:`add_mirror_asymmetry`,
    ``bake_fill(mirror_asymmetry=True)``); the mirror channels let the network compare each texel with its
    mirror point without learning the UV layout's symmetry."""
    w = np.clip(weight, 0.0, 1.0) * geometry.island
    mirror, mirror_weight = mirrored(observed * (w > 0), w, topology, tile)
    mirror_weight = mirror_weight * geometry.island
    condition = np.concatenate([encode_albedo(observed) * w, w[None], encode_albedo(fill), geometry.position,
                                geometry.normal, geometry.island[None], encode_albedo(mirror) * mirror_weight,
                                mirror_weight[None]])
    assert condition.shape[0] == len(CONDITION_CHANNELS)
    return condition.astype(np.float32)


def random_light_shading(normal: np.ndarray, island_weight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, R, R) normals → (R, R) shading of ambient + one directional light, median 1 where weighted.

    The baker de-lights with SH fitted to the photo, so what reaches the model is this shading divided by
    its SH fit (:func:`sh_delit`)."""
    direction = rng.normal(size=3)
    direction[2] = abs(direction[2]) + 0.3  # from the front half (the side a portrait is lit from)
    direction /= np.linalg.norm(direction)
    ambient = rng.uniform(0.2, 0.8)
    lambert = np.clip(np.einsum("c,chw->hw", direction, normal), 0.0, None)
    shading = ambient + (1.0 - ambient) * lambert
    seen = island_weight > 0.5
    median = float(np.median(shading[seen])) if seen.any() else 1.0
    return (shading / max(median, 1e-3)).astype(np.float32)


def sh_delit(albedo: np.ndarray, weight: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(3, R, R) linear albedo seen under some light, (R, R) weight, (3, R, R) normals → the albedo divided by
    the 9-coefficient SH shading fitted to it, as the baker de-lights a photo (``fit_skin_lighting``)."""
    seen = weight > 0.5
    lighting = fit_skin_lighting(normal[:, seen], albedo[:, seen], weight[seen])
    shading = lighting.shading(normal.reshape(3, -1)).reshape(weight.shape)  # (R, R)
    return albedo / shading[None]


def pose_visibility(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, R, R) head-frame normals → (R, R) in [0, 1]: how squarely a camera at a random head turn
    (yaw within ±MAX_YAW_DEG, pitch within ±MAX_PITCH_DEG) sees each texel (the baker's smoothstep)."""
    yaw, pitch = np.radians(rng.uniform(-MAX_YAW_DEG, MAX_YAW_DEG)), np.radians(rng.uniform(-MAX_PITCH_DEG, MAX_PITCH_DEG))
    view = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    angle = np.clip((np.einsum("c,chw->hw", view, normal) - GRAZING_COS) / (FULL_WEIGHT_COS - GRAZING_COS), 0.0, 1.0)
    return (angle * angle * (3.0 - 2.0 * angle)).astype(np.float32)


def mirrored(observed: np.ndarray, weight: np.ndarray, topology: ReferenceTopology,
             tile: int = FACE_TILE) -> tuple[np.ndarray, np.ndarray]:
    """(3, S, S) albedo, (S, S) weight → what each texel's mirror point across the face saw: (3, S, S), (S, S)."""
    return mirror_side(observed, weight, *mirror_texel_map(topology, weight.shape[0], tile))


def add_mirror_asymmetry(filled: np.ndarray, observed: np.ndarray, weight: np.ndarray, from_mirror: np.ndarray,
                         topology: ReferenceTopology, tile: int = FACE_TILE) -> None:
    """In place: ``filled`` (3, S, S), a fill of ``observed`` (3, S, S) seen with ``weight`` (S, S), gets the face's
    seen left/right difference added where ``from_mirror`` (S, S) of a texel's weight came from the mirror side,
    as the baker adds it (``bake_textures(mirror_asymmetry=True)``)."""
    size = weight.shape[0]
    tt = next(t for t in skin_uv_layout(topology, size, SKIN_MATERIALS).tiles if t.tile == tile)
    flat_weight, flat_from_mirror = weight.reshape(-1), from_mirror.reshape(-1)
    seen = tt.texel[flat_weight[tt.texel] > 0]  # (k,) as the baker: the island's directly seen texels
    asymmetry = mirror_side_asymmetry(topology, tile, size, seen, (observed * weight).reshape(3, -1)[:, seen],
                                      flat_weight[seen])
    from_mirror_texel = tt.texel[flat_from_mirror[tt.texel] > 0]  # (m,)
    add_mirror_side_asymmetry(filled, from_mirror_texel, flat_from_mirror[from_mirror_texel], asymmetry)


def bake_fill(observed: np.ndarray, weight: np.ndarray, topology: ReferenceTopology, tile: int = FACE_TILE,
              mirror_asymmetry: bool = MIRROR_ASYMMETRY) -> tuple[np.ndarray, np.ndarray]:
    """Today's fill of one tile, as the baker does it: the mirror side where a texel is not fully seen,
    then the harmonic vertex field + push-pull of the residual (``skin_vertex_field``, ``fill_islands``); with
    ``mirror_asymmetry`` the seen left/right difference added to the mirror side's share
    (:func:`add_mirror_asymmetry`).

    observed: (3, S, S) linear albedo (meaningful where weight > 0); weight: (S, S) in [0, 1].
    Returns the filled (3, S, S) albedo (extended beyond the island) and the coverage (S, S) after
    the mirror step. Linear in ``observed`` for fixed weights (up to the clip to [0, 1]).
    """
    size = weight.shape[0]
    layout = skin_uv_layout(topology, size, SKIN_MATERIALS)
    tt = next(t for t in layout.tiles if t.tile == tile)
    mirror_albedo, mirror_weight = mirrored(observed, weight, topology, tile)
    from_mirror = (1.0 - weight) * np.clip(mirror_weight, 0.0, 1.0)  # (S, S)
    coverage = weight + from_mirror
    albedo = np.divide(weight * observed + from_mirror * mirror_albedo, coverage, out=np.zeros_like(observed),
                       where=coverage > 1e-6)
    observations = []
    for other in layout.tiles:
        k = other.texel[other.vertex_sample]
        if other.tile == tile:
            observations.append((albedo.reshape(3, -1)[:, k], coverage.reshape(-1)[k]))
        else:  # the other tiles: nothing seen (the vertex field fills them harmonically)
            observations.append((np.zeros((3, k.size), np.float32), np.zeros(k.size, np.float32)))
    vertex_albedo = skin_vertex_field(layout, topology.num_points, observations)
    filled = fill_islands(albedo, coverage, tt.image(tt.interpolate(vertex_albedo)), tt.island)
    if mirror_asymmetry:
        add_mirror_asymmetry(filled, observed, weight, from_mirror, topology, tile)
    return extend_beyond_islands(np.clip(filled, 0.0, 1.0), tt.island), coverage.astype(np.float32)


def colour_gain(rng: np.random.Generator) -> np.ndarray:
    """(3,) float32 gains for linear RGB: exp(exposure + tint), exposure common to the channels."""
    log_gain = rng.normal(0.0, COLOUR_EXPOSURE_SIGMA) + rng.normal(0.0, COLOUR_TINT_SIGMA, 3)
    return np.exp(log_gain).astype(np.float32)


@dataclass
class TrainingItem:
    """One bank portrait at R²: its observed albedo (3, R, R), weight × skin trust (R, R), its name."""

    albedo: np.ndarray
    weight: np.ndarray
    name: str


def training_item(record: dict, geometry: UVGeometry) -> TrainingItem:
    """A bank record (``observed_albedo`` (S, S, 3), ``observed_weight`` (S, S), ``name``) → a TrainingItem."""
    albedo, weight = downsample_observation(record["observed_albedo"].transpose(2, 0, 1), record["observed_weight"],
                                            geometry.resolution)
    weight = weight * geometry.island * skin_trust(albedo, weight, geometry)
    return TrainingItem(albedo.astype(np.float16), weight.astype(np.float16), str(record["name"]))


def mirrored_item(item: TrainingItem, topology: ReferenceTopology, tile: int = FACE_TILE) -> TrainingItem:
    """The same portrait's face mirrored left↔right in the UV layout (each texel takes its mirror point's
    observation, bilinear): another plausible face for training."""
    albedo, weight = mirrored(item.albedo.astype(np.float32), item.weight.astype(np.float32), topology, tile)
    return TrainingItem(albedo.astype(np.float16), weight.astype(np.float16), f"{item.name}~mirrored")


_PAIRS_IN_WORKERS: "TexturePairs | None" = None  # what forked view workers compute from (inherited, not pickled)


def _hidden_views(views: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_PAIRS_IN_WORKERS.hidden_view(view) for view in views]


class TexturePairs:
    """Deterministic training examples from a list of :class:`TrainingItem` (see the module notes).

    The hidden views (which texels an example sees, and the baker's fill of them, ~0.2 s each) come
    from a pool of ``views_per_item`` per item, made on first use and kept (float16); the lighting and
    the crop are drawn per example.
    """

    def __init__(self, items: list[TrainingItem], geometry: UVGeometry, topology: ReferenceTopology,
                 crop: int | None = None, seed: int = 0, views_per_item: int = 3, tile: int = FACE_TILE,
                 relight_probability: float = RELIGHT_PROBABILITY, colour_probability: float = 0.0):
        if len(items) < 2:
            raise ValueError(f"texture pairs need at least 2 bakes (one hides the other), got {len(items)}")
        self.items, self.geometry, self.topology, self.seed, self.tile = items, geometry, topology, seed, tile
        self.relight_probability = relight_probability
        if not 0.0 <= colour_probability <= 1.0:
            raise ValueError(f"colour_probability must be in [0, 1], got {colour_probability}")
        self.colour_probability = colour_probability
        self.crop = crop or geometry.resolution
        if self.crop > geometry.resolution:
            raise ValueError(f"crop {self.crop} is larger than the maps ({geometry.resolution})")
        self.pool_size = len(items) * views_per_item
        self._views: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def hidden_view(self, view: int) -> tuple[np.ndarray, np.ndarray]:
        """View ``view`` of item ``view % len(items)``: its visibility (R, R) and the baker's fill of what it sees (3, R, R)."""
        if view not in self._views:
            rng = np.random.default_rng([self.seed, 7, view])
            count = len(self.items)
            item = self.items[view % count]
            other = self.items[(view % count + 1 + rng.integers(count - 1)) % count]
            visible = other.weight.astype(np.float32)
            if rng.random() < MIRROR_MASK_PROBABILITY:
                visible = visible[:, ::-1]
            visible = visible * pose_visibility(self.geometry.normal, rng)
            seen = item.weight.astype(np.float32) * visible
            fill, _ = bake_fill(item.albedo.astype(np.float32) * (seen > 0), seen, self.topology, self.tile,
                                mirror_asymmetry=True)  # the model's prior
            self._views[view] = (visible.astype(np.float16), fill.astype(np.float16))
        return self._views[view]

    def prepare_views(self, workers: int) -> None:
        """Make the whole pool of hidden views now, in ``workers`` forked processes (the same views as on
        first use, since each is a pure function of ``(seed, view)``)."""
        global _PAIRS_IN_WORKERS
        missing = [view for view in range(self.pool_size) if view not in self._views]
        if workers <= 1 or len(missing) < 2:
            for view in missing:
                self.hidden_view(view)
            return
        chunks = [missing[k::workers * 4] for k in range(min(len(missing), workers * 4))]
        _PAIRS_IN_WORKERS = self
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for chunk, views in zip(chunks, pool.map(_hidden_views, chunks)):
                    self._views.update(zip(chunk, views))
        finally:
            _PAIRS_IN_WORKERS = None

    def example(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        view = int(rng.integers(self.pool_size))
        item = self.items[view % len(self.items)]
        visible, fill = (a.astype(np.float32) for a in self.hidden_view(view))
        truth = item.albedo.astype(np.float32)  # (3, R, R)
        truth_weight = item.weight.astype(np.float32)  # (R, R)
        observed = truth
        if self.colour_probability and rng.random() < self.colour_probability:  # no draw at 0: examples as before
            gain = colour_gain(rng)[:, None, None]  # (3, 1, 1)
            truth, fill = np.clip(truth * gain, 0.0, 1.0), np.clip(fill * gain, 0.0, 1.0)
            observed = truth
        if rng.random() < self.relight_probability:  # the fill is linear in the observation: light it the same way
            shading = random_light_shading(self.geometry.normal, truth_weight, rng)
            lit = np.clip(truth * shading, 0.0, 1.0)
            ratio = np.divide(sh_delit(lit, truth_weight * visible, self.geometry.normal), truth,
                              out=np.ones_like(truth), where=truth > 1e-4)  # (3, R, R) what the bake leaves
            observed, fill = np.clip(truth * ratio, 0.0, 1.0), np.clip(fill * ratio, 0.0, 1.0)
        condition = model_condition(observed, truth_weight * visible, fill, self.geometry, self.topology, self.tile)
        target = np.concatenate([encode_albedo(truth), 2.0 * self.geometry.roughness[None] - 1.0]).astype(np.float32)
        assert target.shape[0] == len(TARGET_CHANNELS)
        hidden = truth_weight * (1.0 - visible)
        loss_weight = np.stack([truth_weight + HIDDEN_LOSS_WEIGHT * hidden, self.geometry.island]).astype(np.float32)
        r, c = self.geometry.resolution, self.crop
        top, left = (rng.integers(r - c + 1, size=2) if c < r else (0, 0))
        window = (slice(None), slice(top, top + c), slice(left, left + c))
        return {"condition": condition[window], "target": target[window], "loss_weight": loss_weight[window],
                "hidden": hidden[window[1:]]}

    def batch(self, indices) -> dict:
        """The examples ``indices`` stacked as torch tensors (B, …)."""
        import torch

        examples = [self.example(i) for i in indices]
        return {k: torch.from_numpy(np.ascontiguousarray(np.stack([e[k] for e in examples]))) for k in examples[0]}
