"""``topos convert``: a head mesh of any topology → a validated head asset in the reference topology.

    mesh file ─► largest connected component ─► points + normals (uniform by area)
              ─► pose canonicalisation (similarity onto the mean head) ─► TOPOS-VAE encode → decode
              ─► reference frame, the input's metric size ─► HeadResult ─► USD asset + error report

The error report measures the converted outer skin against the input surface, in the input's
frame: distance from converted-surface samples to the input surface (exact closest points) and,
for coverage, from input samples to the converted skin. Vertex colours of the input are re-baked into
an albedo texture in the reference UVs (``texture/colour_transfer.py``); UV textures of the input are not read.
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
from topos_server.geometry.canonical_pose import PoseCanonicalizer, invert
from topos_server.geometry.mesh_input import InputMesh, largest_component, read_mesh
from topos_server.geometry.registration import Similarity, TriangleSurface
from topos_server.geometry.surface_points import sample_surface
from topos_server.models import WEIGHTS_DIR
from topos_server.models.vae import ToposVAE
from topos_server.texture.colour_transfer import transfer_vertex_colours

DEFAULT_WEIGHTS = WEIGHTS_DIR / "topos_vae_small"
# Surface samples per conversion (the encoder trains on fewer, e.g. 2048: attention pools by region, so more
# points only lower the sampling noise — topology invariance improves ~2× from 2048 to 8192)
INFERENCE_POINTS = 8192
# texels farther than this from the input surface take no colour from it (filled instead)
COLOUR_MAX_DISTANCE_CM = 0.5
# centimetres per input unit for --units
UNITS_CM = {"mm": 0.1, "cm": 1.0, "m": 100.0, "in": 2.54}


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
        self.canonicalizer = PoseCanonicalizer(template[: self.surface_vertex_count], self.surface_triangles)

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
                        num_points: int | None = None, report: bool = True) -> Conversion:
        timings = {}
        start = time.perf_counter()
        rng = np.random.default_rng(seed)
        points = np.asarray(points, np.float64)
        samples, normals, _ = sample_surface(points, triangles, num_points or INFERENCE_POINTS, rng)
        # outward normals: a head is star-shaped enough around its centroid for the majority vote
        flipped = float(((samples - samples.mean(0)) * normals).sum(1).mean()) < 0
        if flipped:
            normals = -normals
        canonical = self.canonicalizer.align(samples, seed=seed)
        timings["canonicalize_s"] = time.perf_counter() - start
        start = time.perf_counter()
        decoded = self.decode_canonical(canonical.apply(samples), normals @ canonical.rotation.T)  # (N, 3)
        timings["vae_s"] = time.perf_counter() - start
        input_frame = invert(canonical).apply(decoded)
        cm_per_unit, units = self._units(units, canonical.scale)
        centre = decoded[: self.surface_vertex_count].mean(0)
        metric = centre + (cm_per_unit / canonical.scale) * (decoded - centre)  # reference pose, input's size
        result = Conversion(metric.astype(np.float32), input_frame.astype(np.float32), canonical, cm_per_unit, units)
        result.report = {"units": units, "cm_per_input_unit": cm_per_unit, "input_triangles": int(len(triangles)),
                         "input_vertices": int(len(points)), "normals_flipped": flipped,
                         "canonical_scale": canonical.scale, "timings_s": timings}
        if report:
            result.report["surface_error"] = self.surface_error(input_frame, points, triangles, cm_per_unit, rng)
        return result

    def surface_error(self, converted: np.ndarray, points: np.ndarray, triangles: np.ndarray, cm_per_unit: float,
                      rng: np.random.Generator, count: int = 20000) -> dict:
        """Distances between the converted outer skin and the input surface, input units and mm."""
        converted_samples, _, _ = sample_surface(converted[: self.surface_vertex_count], self.surface_triangles, count, rng)
        to_input = TriangleSurface(points, triangles).closest(converted_samples).distance
        input_samples, _, _ = sample_surface(points, triangles, count, rng)
        to_converted = TriangleSurface(converted[: self.surface_vertex_count], self.surface_triangles).closest(input_samples).distance

        def stats(d):
            mm = d * cm_per_unit * 10.0
            return {"mean": float(d.mean()), "p50": float(np.median(d)), "p95": float(np.percentile(d, 95)),
                    "max": float(d.max()), "mean_mm": float(mm.mean()), "p95_mm": float(np.percentile(mm, 95)),
                    "within_1mm": float((mm <= 1.0).mean())}

        return {"converted_to_input": stats(to_input), "input_to_converted": stats(to_converted)}

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


def convert_mesh_file(path: str | Path, out_dir: str | Path, name: str | None = None, weights: str | Path | None = None,
                      units: str = "auto", seed: int = 0, all_components: bool = False, usdz: bool = False,
                      overwrite: bool = True, converter: HeadConverter | None = None,
                      texture_size: int = 1024) -> tuple[Path, dict]:
    """Convert one mesh file; returns (path of NAME.usda, report). The report is written beside the asset.

    An input with vertex colours also gets an ``albedo`` texture (``texture_size``² per UDIM tile; 0: none).
    """
    from topos_sdk.atomic_files import atomic_output_path
    from topos_sdk.head_result import HeadResult, Provenance
    from topos_sdk.usd import validate_asset, write_head_asset

    path = Path(path)
    if texture_size and not 64 <= texture_size <= 8192:
        raise InvalidInputError(f"--texture-size must be 0 or between 64 and 8192, got {texture_size}")
    mesh: InputMesh = read_mesh(path)
    if not all_components:
        mesh = largest_component(mesh)
    converter = converter or HeadConverter.load(weights)
    conversion = converter.convert_surface(mesh.points, mesh.triangles, units=units, seed=seed)
    textures = {}
    if mesh.vertex_colors is not None and texture_size:
        start = time.perf_counter()
        albedo, observed = transfer_vertex_colours(conversion.input_frame_points, converter.topology, mesh.points,
                                                   mesh.triangles, mesh.vertex_colors,
                                                   COLOUR_MAX_DISTANCE_CM / conversion.cm_per_unit, texture_size)
        textures["albedo"] = albedo
        conversion.report["timings_s"]["colour_transfer_s"] = time.perf_counter() - start
        conversion.report["colour"] = {"source": "vertex colours", "texture_size": texture_size,
                                       "observed_skin_fraction": observed}
    name = name or _asset_name(path)
    result = HeadResult(conversion.points, topology=converter.topology, textures=textures,
                        provenance=Provenance(engine="topos-vae", seed=seed,
                                              timings_s=conversion.report["timings_s"],
                                              extra={"source_mesh": path.name, "units": conversion.units}))
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
