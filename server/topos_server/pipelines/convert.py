"""``topos convert``: a head mesh of any topology → a validated head asset in the reference topology.

    mesh file ─► largest connected component ─► points + normals (uniform by area)
              ─► pose canonicalisation (similarity onto the mean head; a face-only / partial surface is
                 searched by where it faces; ``--landmarks`` give the pose directly)
              ─► TOPOS-VAE encode → decode (the prior: a whole plausible head; the mean head for a partial
                 input, which the VAE never saw in training and decodes worse — bench/convert_eval.py)
              ─► refinement: the skin pulled onto the input where the input has matching surface,
                 following the prior smoothly where it has none (``geometry/surface_refinement.py``)
              ─► reference frame, the input's metric size ─► HeadResult ─► USD asset + error report

The error report measures, in the input's frame, the distance from the input surface to the converted
skin (every input sample: is the scan covered?) and from the converted skin to the input (only
meaningful where the input has surface), per region of the reference (face, ears, neck, back of the
head) with the fraction of each region the input constrained. Vertex colours or a UV texture of the
input are re-baked into an albedo texture in the reference UVs (``texture/colour_transfer.py``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from topos_sdk.errors import AssetError, InvalidInputError, ToposError
from topos_server.data.synthetic_heads import outer_surface
from topos_server.geometry.canonical_pose import PoseCanonicalizer, invert, principal_frame
from topos_server.geometry.mesh_input import InputMesh, largest_component, open_boundary_ratio, read_mesh
from topos_server.geometry.registration import Similarity, TriangleSurface, inverse_distance_weights, umeyama
from topos_server.geometry.surface_points import sample_surface
from topos_server.geometry.surface_refinement import SurfaceRefiner
from topos_server.models import WEIGHTS_DIR
from topos_server.models.vae import ToposVAE
from topos_server.pipelines.input_landmarks import InputLandmarks, read_landmarks_file
from topos_server.texture.colour_transfer import SurfaceColour, transfer_surface_colours

DEFAULT_WEIGHTS = WEIGHTS_DIR / "topos_vae_small"
# Surface samples per conversion (the encoder trains on fewer, e.g. 2048: attention pools by region, so more
# points only lower the sampling noise — topology invariance improves ~2× from 2048 to 8192)
INFERENCE_POINTS = 8192
# texels farther than this from the input surface take no colour from it (filled instead)
COLOUR_MAX_DISTANCE_CM = 0.5
# centimetres per input unit for --units
UNITS_CM = {"mm": 0.1, "cm": 1.0, "m": 100.0, "in": 2.54}
# longest boundary loop / √area above this: the input covers part of a head (a face-only scan or mask);
# whole heads with a neck cut and holes measure 1.5–1.8, face-only crops 3.4–3.6
PARTIAL_BOUNDARY_RATIO = 2.5
PARTIAL_PRIOR = "mean head"
# samples per direction for the error report
REPORT_SAMPLES = 10000


class VaeWeightsMissing(ToposError):
    """No trained TOPOS-VAE where the converter looked."""


@dataclass
class Conversion:
    points: np.ndarray  # (N, 3) float32 reference vertex order, reference frame, cm
    input_frame_points: np.ndarray  # (N, 3) float32 the same head placed on the input (input units)
    canonical_from_input: Similarity
    cm_per_unit: float
    units: str
    report: dict = field(default_factory=dict)
    constrained: np.ndarray | None = None  # (V,) bool outer-skin vertices the input pinned in the refinement
    prior_input_frame_points: np.ndarray | None = None  # (N, 3) float32 the VAE's head before the refinement


def load_vae(weights: str | Path | None = None, device: str = "cpu") -> ToposVAE:
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not (path / "config.json").is_file():
        raise VaeWeightsMissing(f"no TOPOS-VAE weights in {path}: train them with `topos train vae --config small "
                                f"--out DIR` and pass --weights DIR/model")
    model = ToposVAE.from_pretrained(path, low_cpu_mem_usage=False)
    return model.to(device).eval()


class HeadConverter:
    """Converts meshes with one loaded model; reuse it for many files."""

    def __init__(self, model: ToposVAE, topology, device: str = "cpu"):
        if model.config.topology_id and model.config.topology_id != topology.topology_id:
            raise ToposError(f"the VAE was trained for topology {model.config.topology_id}, "
                             f"the reference is {topology.topology_id}")
        self.model = model.to(device).eval()
        self.device = device
        self.topology = topology
        self.surface_vertex_count, self.surface_triangles = outer_surface(topology)
        template = model.template_points.detach().cpu().numpy().astype(np.float64)
        self.template = template  # (N, 3) the mean head: the canonical frame
        self.canonicalizer = PoseCanonicalizer(template[: self.surface_vertex_count], self.surface_triangles)
        self.refiner = SurfaceRefiner(self.surface_triangles, self.surface_vertex_count)
        self.regions = skin_regions(template, topology, self.surface_vertex_count)  # (V,) index into REGIONS
        self.face_facing = facing_direction(template, topology)
        # the parts inside the skin (eyes, teeth, mouth socket) follow the refined skin's displacement, interpolated
        # from their nearest skin vertices on the mean head
        parts = [s for s in topology.submeshes if s.name in MOUTH_INTERIOR_PARTS]
        self.mouth_interior_ids = np.concatenate([np.arange(s.vertex_start, s.vertex_stop) for s in parts]
                                                 or [np.zeros(0, np.int64)])
        self.interior_from_skin = inverse_distance_weights(template[: self.surface_vertex_count],
                                                           template[self.surface_vertex_count:])  # (N − V, k) ×2

    @classmethod
    def load(cls, weights: str | Path | None = None, cache=None, device: str = "cpu") -> "HeadConverter":
        from topos_server.assets.cache import AssetCache

        return cls(load_vae(weights, device), (cache or AssetCache.default()).ict_topology(), device)

    @torch.no_grad()
    def decode_canonical(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """(N, 3) reference vertices from canonical-frame surface samples (P, 3) + normals."""
        offsets = self.canonicalizer.normal_offsets(points)
        p, n, o = (torch.as_tensor(x, dtype=torch.float32, device=self.device)[None] for x in (points, normals, offsets))
        return self.model.decode(self.model.encode(p, n, o).mode())[0].float().cpu().numpy()

    def convert_surface(self, points: np.ndarray, triangles: np.ndarray, units: str = "auto", seed: int = 0,
                        num_points: int | None = None, report: bool = True, refine: bool = True,
                        landmarks: InputLandmarks | None = None) -> Conversion:
        timings = {}
        start = time.perf_counter()
        rng = np.random.default_rng(seed)
        points = np.asarray(points, np.float64)
        samples, normals, flipped = outward_samples(points, triangles, num_points or INFERENCE_POINTS, rng)
        boundary_ratio = open_boundary_ratio(points, triangles)
        partial = boundary_ratio > PARTIAL_BOUNDARY_RATIO
        canonical, alignment = self.canonicalize(samples, normals, partial, landmarks, seed)
        timings["canonicalize_s"] = time.perf_counter() - start
        start = time.perf_counter()
        if partial and PARTIAL_PRIOR == "mean head":
            # TOPOS-VAE never saw face-only inputs in training: its head for one is worse than the mean head
            decoded = self.template.copy()
            prior_name = "mean head"
        else:
            decoded = self.decode_canonical(canonical.apply(samples), normals @ canonical.rotation.T)  # (N, 3)
            prior_name = "TOPOS-VAE"
        timings["vae_s"] = time.perf_counter() - start
        constrained = None
        refinement_info = {"refined": False}
        prior = decoded
        if refine:
            start = time.perf_counter()
            decoded, constrained, refinement_info = self._refine(decoded.astype(np.float64), canonical.apply(points),
                                                                 triangles, canonical, landmarks)
            timings["refine_s"] = time.perf_counter() - start
        input_frame = invert(canonical).apply(decoded)
        cm_per_unit, units = self._units(units, canonical.scale)
        centre = decoded[: self.surface_vertex_count].mean(0)
        metric = centre + (cm_per_unit / canonical.scale) * (decoded - centre)  # reference pose, input's size
        result = Conversion(metric.astype(np.float32), input_frame.astype(np.float32), canonical, cm_per_unit, units,
                            constrained=constrained,
                            prior_input_frame_points=invert(canonical).apply(prior).astype(np.float32))
        result.report = {"units": units, "cm_per_input_unit": cm_per_unit, "input_triangles": int(len(triangles)),
                         "input_vertices": int(len(points)), "normals_flipped": flipped,
                         "canonical_scale": canonical.scale, "alignment": alignment, "prior": prior_name,
                         "input_boundary_ratio": boundary_ratio, "partial_input": bool(partial),
                         "refinement": refinement_info, "timings_s": timings}
        if report:
            start = time.perf_counter()
            result.report["surface_error"] = self.surface_error(input_frame, points, triangles, cm_per_unit, rng,
                                                                constrained)
            result.report["report_s"] = time.perf_counter() - start
        return result

    def canonicalize(self, samples: np.ndarray, normals: np.ndarray, partial: bool,
                     landmarks: InputLandmarks | None = None, seed: int = 0) -> tuple[Similarity, str]:
        """The similarity input → canonical frame for surface samples (P, 3) with outward normals, and how it was found."""
        if landmarks is not None:
            return self._align_to_landmarks(samples, landmarks), "landmarks"
        if partial:
            scale_guess = self.canonicalizer.rms / principal_frame(samples)[2]
            return self.canonicalizer.align_partial(samples, normals, scale_guess, facing=self.face_facing,
                                                    seed=seed), "partial search"
        return self.canonicalizer.align(samples, seed=seed), "whole-head search"

    def _align_to_landmarks(self, samples: np.ndarray, landmarks: InputLandmarks) -> Similarity:
        """Similarity from the given landmarks onto the mean head's, refined on the surface from there."""
        reference = landmarks.reference_points(self.topology, self.template)  # (K, 3)
        start = umeyama(landmarks.points, reference)
        probe = samples[:: max(1, len(samples) // 2048)]
        return self.canonicalizer.refine_to_plane(probe, start, iterations=8)

    def _refine(self, decoded: np.ndarray, canonical_input: np.ndarray, triangles: np.ndarray, canonical: Similarity,
                landmarks: InputLandmarks | None) -> tuple[np.ndarray, np.ndarray, dict]:
        """The VAE head (N, 3, canonical frame) with its skin pulled onto the input; the rest follows the skin."""
        count = self.surface_vertex_count
        target = TriangleSurface(canonical_input, triangles, candidates=8)
        landmark_ids = landmark_targets = None
        if landmarks is not None:
            landmark_ids, landmark_targets = landmarks.skin_pins(self.topology, canonical, count)
        refinement = self.refiner.refine(decoded[:count], target, landmark_ids, landmark_targets)
        skin0 = decoded[:count]
        out = decoded.copy()
        out[:count] = refinement.points
        ids, weights = self.interior_from_skin
        out[count:] += np.einsum("qk,qkx->qx", weights, (refinement.points - skin0)[ids])
        pushed_back_cm = self._keep_mouth_inside(out)
        info = {"refined": True, "rounds": refinement.rounds,
                "matched_distance_canonical": [round(d, 5) for d in refinement.matched_distance],
                "constrained_skin_fraction": float(refinement.constrained.mean()),
                "mouth_interior_pushed_back_canonical": round(pushed_back_cm, 4)}
        return out, refinement.constrained, info

    def _keep_mouth_inside(self, head: np.ndarray, probes: int = 64, reach_cm: float = 2.0,
                           margin_cm: float = 0.05) -> float:
        """Move teeth and gums (in place, rigidly, as one) so that none sits in front of the lips.

        The refinement pulls the lips onto the input (closed on most scans) while the teeth follow the skin
        only loosely; where a tooth ends up in front of skin that lies just behind it (within ``reach_cm``:
        not the back of the head seen through an open mouth), the whole mouth interior moves back along
        the face's direction. Returns the distance moved.
        """
        ids = self.mouth_interior_ids
        if not len(ids):
            return 0.0
        depth = head[ids] @ self.face_facing  # (K,) along the face's direction
        front = ids[np.argsort(-depth)[:probes]]
        corners = head[self.surface_triangles]  # (T, 3, 3)
        low, high = head[ids].min(0) - reach_cm, head[ids].max(0) + reach_cm
        near = ((corners >= low) & (corners <= high)).all(2).any(1)  # only skin around the mouth can be in front
        if not near.any():
            return 0.0
        skin = TriangleSurface(head[: self.surface_vertex_count], self.surface_triangles[near])
        hits, hit = skin.ray_cast(head[front] + reach_cm * self.face_facing, -self.face_facing)
        # a hit between the probe's start and reach_cm behind the tooth: skin the tooth pokes through
        front_depth = head[front] @ self.face_facing
        skin_depth = hits.points @ self.face_facing
        poking = hit & (skin_depth > front_depth - reach_cm) & (skin_depth < front_depth + margin_cm)
        if not poking.any():
            return 0.0
        shift = float((front_depth - skin_depth + margin_cm)[poking].max())
        head[ids] -= shift * self.face_facing
        return shift

    def surface_error(self, converted: np.ndarray, points: np.ndarray, triangles: np.ndarray, cm_per_unit: float,
                      rng: np.random.Generator, constrained: np.ndarray | None = None,
                      count: int = REPORT_SAMPLES) -> dict:
        """Distances between the converted outer skin and the input surface (input units and mm), overall and
        per region of the reference skin; ``constrained`` (V,) marks skin vertices the input pinned."""
        skin = converted[: self.surface_vertex_count]
        converted_samples, _, converted_tri = sample_surface(skin, self.surface_triangles, count, rng)
        to_input = TriangleSurface(points, triangles).closest(converted_samples).distance
        input_samples, _, _ = sample_surface(points, triangles, count, rng)
        hits = TriangleSurface(skin, self.surface_triangles).closest(input_samples)
        to_converted = hits.distance
        region_of_converted = self.regions[self.surface_triangles[converted_tri, 0]]
        region_of_input = self.regions[self.surface_triangles[hits.triangle, 0]]

        def stats(d):
            if not len(d):
                return None
            mm = d * cm_per_unit * 10.0
            return {"mean": float(d.mean()), "p50": float(np.median(d)), "p95": float(np.percentile(d, 95)),
                    "max": float(d.max()), "mean_mm": float(mm.mean()), "p95_mm": float(np.percentile(mm, 95)),
                    "within_1mm": float((mm <= 1.0).mean())}

        regions = {}
        for index, name in enumerate(REGIONS):
            in_region = self.regions == index
            regions[name] = {
                "constrained_fraction": None if constrained is None else float(constrained[in_region].mean()),
                "input_to_converted": stats(to_converted[region_of_input == index]),
                "converted_to_input": stats(to_input[region_of_converted == index]),
            }
        return {"converted_to_input": stats(to_input), "input_to_converted": stats(to_converted), "regions": regions}

    @staticmethod
    def _units(units: str, canonical_scale: float) -> tuple[float, str]:
        """Centimetres per input unit. ``auto`` picks the unit that makes the head about the mean head's size."""
        if units in UNITS_CM:
            return UNITS_CM[units], units
        if units == "normalized":
            return canonical_scale, "normalized"
        if units != "auto":
            raise ValueError(f"--units must be auto, normalized or one of {', '.join(UNITS_CM)}; got {units!r}")
        name = min(UNITS_CM, key=lambda u: abs(np.log(UNITS_CM[u] / canonical_scale)))
        if abs(np.log(UNITS_CM[name] / canonical_scale)) > np.log(1.6):  # no unit gives a human-sized head
            return canonical_scale, "normalized"
        return UNITS_CM[name], name


def outward_samples(points: np.ndarray, triangles: np.ndarray, count: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """(P, 3) surface samples, (P, 3) their normals turned outwards, and whether the mesh's normals pointed in
    (a head is star-shaped enough around its centroid for the majority vote)."""
    samples, normals, _ = sample_surface(points, triangles, count, rng)
    flipped = float(((samples - samples.mean(0)) * normals).sum(1).mean()) < 0
    return samples, -normals if flipped else normals, flipped


REGIONS = ("face", "ears", "neck", "back_of_head")
# reference parts that must stay behind the lips (moved back rigidly when the refined lips close in front of them)
MOUTH_INTERIOR_PARTS = ("teeth", "gums_tongue")


def skin_regions(template: np.ndarray, topology, surface_vertex_count: int) -> np.ndarray:
    """(V,) index into :data:`REGIONS` per outer-skin vertex, from the mean head (cm, +y up, +z forward).

    ``face``: the topology's face sub-mesh; the rest of the skin is ears (beside the head, ear height),
    neck (below the ears) or the back of the head.
    """
    skin = template[:surface_vertex_count]
    region = np.full(surface_vertex_count, REGIONS.index("back_of_head"), np.int64)
    face = topology.submesh("face")
    region[face.vertex_start:min(face.vertex_stop, surface_vertex_count)] = REGIONS.index("face")
    rest = region != REGIONS.index("face")
    half_width = np.abs(skin[:, 0]).max()
    ears = rest & (np.abs(skin[:, 0]) > 0.62 * half_width) & (skin[:, 1] > -9.0) & (skin[:, 2] > -6.0)
    neck = rest & ~ears & (skin[:, 1] < -11.0)
    region[ears] = REGIONS.index("ears")
    region[neck] = REGIONS.index("neck")
    return region


def facing_direction(template: np.ndarray, topology) -> np.ndarray:
    """(3,) unit mean outward normal of the template's face: where a face-only scan looks."""
    triangles, face_of = topology.triangles()
    face = topology.submesh("face")
    corners = template[triangles[(face_of >= face.face_start) & (face_of < face.face_stop)]]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).sum(0)  # area-weighted
    return normal / np.linalg.norm(normal)


def convert_mesh_file(path: str | Path, out_dir: str | Path, name: str | None = None, weights: str | Path | None = None,
                      units: str = "auto", seed: int = 0, all_components: bool = False, usdz: bool = False,
                      overwrite: bool = True, converter: HeadConverter | None = None,
                      texture_size: int = 1024, refine: bool = True,
                      landmarks_file: str | Path | None = None, topology: str | None = None) -> tuple[Path, dict]:
    """Convert one mesh file; returns (path of NAME.usda, report). The report is written beside the asset.

    ``topology``: write the head in this studio topology (``topos topology add``) instead of the reference.

    ``refine``: pull the VAE's head onto the input (default; False: the VAE's head as decoded).
    ``landmarks_file``: JSON landmarks in the mesh's coordinates (see ``input_landmarks.py``).
    An input with vertex colours or a UV texture also gets an ``albedo`` texture (``texture_size``² per UDIM tile; 0: none).
    """
    from topos_sdk.atomic_files import atomic_output_path
    from topos_sdk.head_result import HeadResult, Provenance
    from topos_sdk.usd import validate_asset, write_head_asset

    path = Path(path)
    studio = None
    if topology:
        from topos_server.pipelines.studio_topology import load_studio_topology

        studio = load_studio_topology(topology)
    if texture_size and not 64 <= texture_size <= 8192:
        raise InvalidInputError(f"--texture-size must be 0 or between 64 and 8192, got {texture_size}")
    mesh: InputMesh = read_mesh(path)
    if not all_components:
        mesh = largest_component(mesh)
    converter = converter or HeadConverter.load(weights)
    landmarks = None if landmarks_file is None else read_landmarks_file(landmarks_file, converter.topology)
    conversion = converter.convert_surface(mesh.points, mesh.triangles, units=units, seed=seed, refine=refine,
                                           landmarks=landmarks)
    textures = {}
    colour = SurfaceColour.of_mesh(mesh)
    if colour is not None and texture_size:
        start = time.perf_counter()
        albedo, observed = transfer_surface_colours(conversion.input_frame_points, converter.topology, mesh.points,
                                                    mesh.triangles, colour,
                                                    COLOUR_MAX_DISTANCE_CM / conversion.cm_per_unit, texture_size)
        textures["albedo"] = albedo
        conversion.report["timings_s"]["colour_transfer_s"] = time.perf_counter() - start
        conversion.report["colour"] = {"source": colour.source, "texture_size": texture_size,
                                       "observed_skin_fraction": observed}
    name = name or _asset_name(path)
    result = HeadResult(conversion.points, topology=converter.topology, textures=textures,
                        provenance=Provenance(engine="topos-vae", seed=seed,
                                              timings_s=conversion.report["timings_s"],
                                              extra={"source_mesh": path.name, "units": conversion.units}))
    if studio is not None:
        result = studio.transfer(result)
        conversion.report["topology"] = result.provenance.extra["topology"]
    out_dir = Path(out_dir)
    asset = write_head_asset(result, out_dir, name=name, usdz=usdz, overwrite=overwrite)
    problems = validate_asset(asset)
    report = {"input": str(path), "asset": str(asset), "valid": not problems, "validation": problems, **conversion.report}
    with atomic_output_path(out_dir / f"{name}.conversion.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    if problems:
        raise AssetError(f"{asset}: the written asset does not validate: {problems[0]}")
    return asset, report


def _asset_name(path: Path) -> str:
    import re

    stem = path.name
    for suffix in (".gz", ".xz", ".obj", ".ply", ".stl", ".usda", ".usdc", ".usdz", ".usd"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).strip(".") or "head"
    return stem if stem[0].isalpha() or stem[0] == "_" else f"head_{stem}"
