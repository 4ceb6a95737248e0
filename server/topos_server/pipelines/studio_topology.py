"""Studio topologies: a studio's own head mesh registered once onto the reference (ICT) surface, then
every reference-topology head carried into it.

    studio HEAD.obj ─► checks (manifold; one skin piece + inner pieces such as eyes and teeth inside it)
                   ─► ``topos convert``'s registration: pose, TOPOS-VAE, refinement — the reference skin
                      placed on the studio head (``--landmarks`` pin it on hard meshes)
                   ─► dense map: each studio vertex = a barycentric point of a reference triangle + an offset
                      in that triangle's frame (``geometry/dense_map.py``); vertices that coincide with the
                      reference's own (a topology derived from ICT) map onto them exactly
                   ─► texel map per texture size: each studio texel → a reference UV (``texture/studio_rebake.py``)
                   ─► ``$TOPOS_HOME/topologies/NAME/`` with a manifest

A head in the reference topology then becomes a studio head by evaluating the dense map on its points
(and on points + each blendshape: deformation transfer through the map) and re-baking its textures
with one lookup per texel (:meth:`StudioTopology.transfer`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from topos_sdk.atomic_files import atomic_output_dir
from topos_sdk.errors import InvalidInputError, ObjFormatError, ToposError, TopologyMismatchError
from topos_sdk.head_result import HeadResult
from topos_sdk.studio_topologies import MANIFEST_FILE, NAME_PATTERN, TOPOLOGIES_DIR, registered_topology_names
from topos_sdk.topology import LandmarkSet, ReferenceTopology
from topos_server.assets.cache import AssetCache, sha256_file
from topos_server.geometry.dense_map import DenseMap
from topos_server.geometry.registration import TriangleSurface, umeyama

MANIFEST_FORMAT = "topos.studio-topology/1"
TOPOLOGY_FILE = "topology.npz"
REGISTRATION_FILE = "registration.npz"
DEFAULT_TEXTURE_SIZE = 1024
# median distance (mm) from the studio skin to the reference head placed on it above which the mesh is not a head
MAX_RESIDUAL_MM = 2.0
# median distance (mm) from the studio skin to TOPOS-VAE's head before the refinement above which the mesh is not
# a head (the refinement alone can wrap the reference skin around a box)
MAX_PRIOR_RESIDUAL_MM = 7.0  # heads here: 0.4 (quad head) to 2.8 mm (ICT with its mouth socket); a box: 10.9
# a skin vertex this far (cm) from the reference's outer skin and twice as close to another reference part
# (mouth socket, eye socket) maps onto that part
INNER_SURFACE_CM = 0.1
# a studio vertex within this fraction of the head's size of a reference vertex (after aligning the two
# vertex sets) is that vertex: topologies derived from the reference keep its vertices exactly
SAME_VERTEX_TOLERANCE = 1e-5
# symmetry pairs farther apart than this (cm, reference frame) after mirroring are not pairs
SYMMETRY_TOLERANCE_CM = 0.05
MIN_SYMMETRIC_FRACTION = 0.9


class NotAHead(InvalidInputError):
    """The mesh did not register onto the reference head."""


class TopologyNotFound(InvalidInputError):
    """No studio topology of that name in the asset cache."""


@dataclass
class MeshPieces:
    """Connected pieces of a studio mesh: the skin (the largest by area) and pieces inside it."""

    skin_faces: np.ndarray  # (F,) bool
    skin_vertices: np.ndarray  # (N,) bool
    inner_piece_sizes: list[int] = field(default_factory=list)  # vertex counts of the other pieces


def check_studio_mesh(topology: ReferenceTopology, where: str) -> MeshPieces:
    """One clear error for meshes that cannot be a studio head; the skin and inner pieces otherwise."""
    counts, indices = topology.face_vertex_counts, topology.face_vertex_indices
    face_of_corner = np.repeat(np.arange(len(counts)), counts)
    nxt = np.arange(len(indices)) + 1
    nxt[topology.face_offsets[1:] - 1] = topology.face_offsets[:-1]  # the corner after each face's last is its first
    edges = np.sort(np.stack([indices, indices[nxt]], 1), 1)  # (corners, 2) every polygon edge
    if (edges[:, 0] == edges[:, 1]).any():
        face = int(face_of_corner[np.flatnonzero(edges[:, 0] == edges[:, 1])[0]])
        raise InvalidInputError(f"{where}: face {face + 1} repeats a vertex (degenerate polygon): clean the mesh up")
    unique, uses = np.unique(edges, axis=0, return_counts=True)
    if (uses > 2).any():
        a, b = unique[np.argmax(uses > 2)]
        raise InvalidInputError(f"{where}: non-manifold: {int((uses > 2).sum())} edges are shared by more than two "
                                f"faces (first between vertices {a + 1} and {b + 1})")
    used = np.zeros(topology.num_points, bool)
    used[indices] = True
    if not used.all():
        raise InvalidInputError(f"{where}: {int((~used).sum())} vertices belong to no face (first: vertex "
                                f"{int(np.argmin(used)) + 1}): delete loose vertices")
    n = topology.num_points
    adjacency = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    count, label = connected_components(adjacency, directed=False)
    triangles, _ = topology.triangles()
    corners = topology.rest_points[triangles].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    piece_area = np.bincount(label[triangles[:, 0]], weights=area, minlength=count)
    skin = int(np.argmax(piece_area))
    skin_vertices = label == skin
    low, high = topology.rest_points[skin_vertices].min(0), topology.rest_points[skin_vertices].max(0)
    margin = 0.02 * (high - low).max()
    inner = []
    for piece in range(count):
        if piece == skin:
            continue
        points = topology.rest_points[label == piece]
        if (points.min(0) < low - margin).any() or (points.max(0) > high + margin).any():
            raise InvalidInputError(
                f"{where}: disconnected: a second piece of {len(points)} vertices lies outside the head (eyes, teeth "
                f"and other parts inside it are fine); delete it or register it on its own")
        inner.append(int(len(points)))
    skin_faces = skin_vertices[indices[topology.face_offsets[:-1]]]
    return MeshPieces(skin_faces, skin_vertices, sorted(inner, reverse=True))


@dataclass
class Registration:
    """What ``topology add`` computes: everything stored for one studio topology."""

    topology: ReferenceTopology  # the studio topology, rest points in the reference frame (cm)
    dense_map: DenseMap  # studio vertices on the reference
    studio_points: np.ndarray  # (S, 3) float64 studio vertices, input frame (the file's units)
    reference_on_studio: np.ndarray  # (N, 3) float64 the reference head placed on the studio head, input frame
    cm_per_unit: float
    manifest: dict
    reference: ReferenceTopology


def register_studio_head(path: str | Path, name: str, converter=None, landmarks_file: str | Path | None = None,
                         symmetry: str = "auto", units: str = "auto", seed: int = 0) -> Registration:
    """Register the studio head mesh at ``path`` (OBJ) onto the reference; see the module docstring."""
    from topos_server.data.synthetic_heads import outer_surface
    from topos_server.pipelines.convert import HeadConverter
    from topos_server.pipelines.input_landmarks import read_landmarks_file

    check_name(name)
    if symmetry not in ("auto", "none"):
        raise InvalidInputError(f"--symmetry must be auto or none, got {symmetry!r}")
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    started = time.perf_counter()
    try:
        studio = ReferenceTopology.from_obj(path, name=name)
    except ObjFormatError:
        raise
    except (ValueError, IndexError) as exc:
        raise InvalidInputError(f"{path}: not a usable OBJ mesh ({exc})") from None
    pieces = check_studio_mesh(studio, str(path))
    groups = obj_vertex_groups(path, studio)
    converter = converter or HeadConverter.load()
    reference = converter.topology
    landmarks = None if landmarks_file is None else read_landmarks_file(landmarks_file, reference)
    triangles, face_of = studio.triangles()
    skin_triangles = triangles[pieces.skin_faces[face_of]].astype(np.int64)
    points = studio.rest_points.astype(np.float64)
    conversion = converter.convert_surface(points, skin_triangles, units=units, seed=seed, refine=True,
                                           landmarks=landmarks, report=False)
    on_studio = conversion.input_frame_points.astype(np.float64)  # (N, 3) reference head on the studio head
    cm = conversion.cm_per_unit
    skin_count, skin_tris = outer_surface(reference)
    ref_triangles, _ = reference.triangles()

    # studio skin → the reference's outer skin, unless another reference part is much closer (a mouth or eye
    # socket modelled in the skin piece); inner pieces → any reference part (eyes to eyes, teeth to teeth)
    skin_hits = TriangleSurface(on_studio, skin_tris).closest(points)
    part_hits = TriangleSurface(on_studio, ref_triangles).closest(points)
    use_part = ~pieces.skin_vertices | ((part_hits.distance < 0.5 * skin_hits.distance)
                                        & (skin_hits.distance * cm > INNER_SURFACE_CM))
    distance = np.where(use_part, part_hits.distance, skin_hits.distance)
    residual_mm = distance[pieces.skin_vertices] * cm * 10.0
    prior_mm = prior_residual_mm(conversion, points[pieces.skin_vertices], skin_tris)
    if prior_mm > MAX_PRIOR_RESIDUAL_MM:
        raise NotAHead(f"{path}: does not register onto a head: TOPOS-VAE's closest head stays {prior_mm:.1f} mm "
                       f"from it (median, limit {MAX_PRIOR_RESIDUAL_MM:.0f} mm); check that it is a head, or pin it "
                       f"with --landmarks")
    if np.median(residual_mm) > MAX_RESIDUAL_MM:
        raise NotAHead(f"{path}: does not register onto a head: the reference skin placed on it stays "
                       f"{np.median(residual_mm):.1f} mm away (median, p95 {np.percentile(residual_mm, 95):.1f} mm, "
                       f"limit {MAX_RESIDUAL_MM} mm); check that it is a head, or pin it with --landmarks")
    target_triangles = np.concatenate([skin_tris, ref_triangles]).astype(np.int64)
    triangle_ids = np.where(use_part, len(skin_tris) + part_hits.triangle, skin_hits.triangle)
    barycentric = np.where(use_part[:, None], part_hits.barycentric, skin_hits.barycentric)
    dense = DenseMap.build(points, on_studio, target_triangles, triangle_ids, barycentric, cm)

    # the reference frame: conversion.points is the same head as on_studio, in the reference frame and cm
    to_reference = umeyama(on_studio, conversion.points.astype(np.float64))
    rest_reference = to_reference.apply(points)  # (S, 3) cm
    same = same_vertices(rest_reference, reference.rest_points.astype(np.float64))
    if len(same[0]):
        dense = dense.replaced(same[0], DenseMap.onto_vertices(same[1]))

    notes = []
    symmetric_fraction = None
    symmetry_map = None
    if symmetry == "auto":
        symmetry_map, symmetric_fraction = mirror_pairs(rest_reference)
        if symmetric_fraction < MIN_SYMMETRIC_FRACTION:
            notes.append(f"no symmetry stored: only {100 * symmetric_fraction:.0f} % of the vertices have a mirror "
                         f"partner within {SYMMETRY_TOLERANCE_CM * 10:.1f} mm")
            symmetry_map = None
    if studio.uv_values is None:
        notes.append("no UVs: heads in this topology carry no textures")
    if pieces.inner_piece_sizes:
        notes.append(f"{len(pieces.inner_piece_sizes)} inner pieces ({sum(pieces.inner_piece_sizes)} vertices: eyes, "
                     f"teeth, …) follow the nearest reference parts")
    else:
        notes.append("skin only: the reference's eyes, teeth and mouth interior are not carried")
    studio_landmarks = transferred_landmarks(reference, on_studio, points, skin_triangles)
    registered = replace_rest(studio, rest_reference.astype(np.float32), symmetry_map, studio_landmarks, pieces,
                              groups)
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "topology_id": registered.topology_id,
        "reference_topology_id": reference.topology_id,
        "reference_name": reference.name,
        "source": {"file": path.name, "sha256": sha256_file(path), "units": conversion.units,
                   "cm_per_unit": cm, "landmarks": None if landmarks_file is None else Path(landmarks_file).name},
        "vertices": registered.num_points,
        "faces": registered.num_faces,
        "face_sizes": {str(k): int(v) for k, v in zip(*np.unique(registered.face_vertex_counts, return_counts=True))},
        "has_uvs": registered.uv_values is not None,
        "udim_tiles": udim_tiles(registered),
        "materials": sorted({m.name for m in registered.materials}),
        "inner_pieces": pieces.inner_piece_sizes,
        "symmetry": None if symmetry_map is None else {"pairs_fraction": symmetric_fraction},
        "registration": {"alignment": conversion.report.get("alignment"),
                         "prior_residual_mm": prior_mm,
                         "residual_mm": {"median": float(np.median(residual_mm)), "mean": float(residual_mm.mean()), "p95": float(np.percentile(residual_mm, 95)),
                                         "max": float(residual_mm.max())},
                         "vertices_on_reference_vertices": float(len(same[0]) / registered.num_points)},
        "notes": notes,
    }
    manifest["add_seconds"] = round(time.perf_counter() - started, 3)
    return Registration(registered, dense, points, on_studio, cm, manifest, reference)


def prior_residual_mm(conversion, skin_points: np.ndarray, skin_triangles: np.ndarray) -> float:
    """Median distance (mm) from the studio skin to the VAE's head before the refinement (0 when not kept)."""
    if conversion.prior_input_frame_points is None:
        return 0.0
    prior = TriangleSurface(conversion.prior_input_frame_points.astype(np.float64), skin_triangles)
    return float(np.median(prior.closest(skin_points).distance) * conversion.cm_per_unit * 10.0)


def same_vertices(points: np.ndarray, reference_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(studio rows, reference ids) of studio vertices that are reference vertices, after aligning the two sets
    (a few rounds of nearest-vertex pairs + similarity); both in the reference frame."""
    tree = cKDTree(reference_points)
    size = float(np.linalg.norm(reference_points.max(0) - reference_points.min(0)))
    aligned = points
    for _ in range(3):
        distance, nearest = tree.query(aligned)
        close = distance < max(3.0 * np.median(distance), 1e-9 * size)
        if close.sum() < 4:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        aligned = umeyama(points[close], reference_points[nearest[close]]).apply(points)
    distance, nearest = tree.query(aligned, k=16)  # (S, 16): reference vertices can coincide (seams, lash roots)
    within = distance <= SAME_VERTEX_TOLERANCE * size
    own_index = within & (nearest == np.arange(len(points))[:, None])  # a tie goes to the vertex of the same index
    choice = np.where(own_index.any(1), own_index.argmax(1), 0)
    rows = np.flatnonzero(within[:, 0])
    return rows, nearest[rows, choice[rows]]


def mirror_pairs(points: np.ndarray) -> tuple[np.ndarray, float]:
    """(S,) int32 the vertex mirroring each (itself when none is near), and the paired fraction.

    The mirror plane starts as x = 0 of the reference frame and is refitted to the pairs it finds (the
    registered pose is a fraction of a millimetre off the mesh's own mid-plane).
    """
    tree = cKDTree(points)
    normal, offset = np.array([1.0, 0.0, 0.0]), 0.0
    for _ in range(4):
        mirrored = points - 2.0 * ((points @ normal) - offset)[:, None] * normal
        distance, partner = tree.query(mirrored)
        ok = (distance <= SYMMETRY_TOLERANCE_CM * 4) & (partner != np.arange(len(points)))
        if ok.sum() < 3:
            break
        across = points[ok] - points[partner[ok]]
        across *= np.sign(across @ normal)[:, None]  # all pointing to +x
        normal = across.sum(0) / np.linalg.norm(across.sum(0))
        offset = float((0.5 * (points[ok] + points[partner[ok]]) @ normal).mean())
    mirrored = points - 2.0 * ((points @ normal) - offset)[:, None] * normal
    distance, partner = tree.query(mirrored)
    ok = (distance <= SYMMETRY_TOLERANCE_CM) & (partner[partner] == np.arange(len(points)))
    return np.where(ok, partner, np.arange(len(points))).astype(np.int32), float(ok.mean())


def transferred_landmarks(reference: ReferenceTopology, on_studio: np.ndarray, studio_points: np.ndarray,
                          studio_triangles: np.ndarray) -> dict[str, LandmarkSet]:
    """The reference's landmark sets as barycentric points of the studio skin."""
    surface = TriangleSurface(studio_points, studio_triangles)
    out = {}
    for name, landmarks in reference.landmarks.items():
        hits = surface.closest(landmarks.evaluate(on_studio))
        out[name] = LandmarkSet(list(landmarks.names), surface.triangles[hits.triangle].astype(np.int32),
                                hits.barycentric.astype(np.float32))
    return out


def obj_vertex_groups(path: Path, studio: ReferenceTopology) -> dict[str, np.ndarray]:
    """The OBJ's ``g`` groups as vertex groups (the vertices of each group's faces)."""
    from topos_sdk.obj_reader import read_obj

    offsets = studio.face_offsets
    groups: dict[str, list[np.ndarray]] = {}
    for name, face_start, face_stop in read_obj(path).face_groups("g"):
        if name not in ("mesh", "default"):
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)  # stored as an archive member name
            groups.setdefault(name, []).append(studio.face_vertex_indices[offsets[face_start]:offsets[face_stop]])
    return {name: np.unique(np.concatenate(ids)).astype(np.int32) for name, ids in groups.items()}


def replace_rest(studio: ReferenceTopology, rest_points: np.ndarray, symmetry, landmarks, pieces: MeshPieces,
                 groups: dict[str, np.ndarray]) -> ReferenceTopology:
    topology = ReferenceTopology(
        name=studio.name, rest_points=rest_points, face_vertex_counts=studio.face_vertex_counts,
        face_vertex_indices=studio.face_vertex_indices, uv_values=studio.uv_values, uv_indices=studio.uv_indices,
        submeshes=studio.submeshes, materials=studio.materials,
        vertex_groups={**groups, "skin": np.flatnonzero(pieces.skin_vertices)},
        landmarks=landmarks, symmetry=symmetry, units="cm",
        info={"studio_topology": True})
    return topology


def udim_tiles(topology: ReferenceTopology) -> list[int]:
    if topology.uv_values is None:
        return []
    uv = topology.uv_values[topology.uv_indices].astype(np.float64)
    mean = np.add.reduceat(uv, topology.face_offsets[:-1], axis=0) / topology.face_vertex_counts[:, None]
    tiles = 1001 + np.floor(mean[:, 0]).astype(np.int64) + 10 * np.floor(mean[:, 1]).astype(np.int64)
    return sorted(int(t) for t in np.unique(tiles))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInputError(f"topology name {name!r}: use a letter then letters, digits, _ or - (at most 64)")
    return name


# ---- the studio topology in use --------------------------------------------------------------------------------
class StudioTopology:
    """A registered studio topology: carries reference-topology heads into it."""

    def __init__(self, topology: ReferenceTopology, dense_map: DenseMap, manifest: dict, folder: Path | None = None,
                 registration_geometry: dict | None = None):
        self.topology = topology
        self.dense_map = dense_map
        self.manifest = manifest
        self.folder = folder
        self._geometry = registration_geometry  # studio_points, reference_on_studio, cm_per_unit (texel maps)
        self._texel_maps: dict[int, object] = {}

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def reference_topology_id(self) -> str:
        return self.manifest["reference_topology_id"]

    def texel_map(self, reference: ReferenceTopology, size: int):
        """The studio-texel → reference-UV lookup at ``size``² per tile (built once, then read from the folder)."""
        from topos_server.texture.studio_rebake import TexelMap, build_texel_map

        if size in self._texel_maps:
            return self._texel_maps[size]
        stored = None if self.folder is None else self.folder / f"texels_{size}.npz"
        if stored is not None and stored.is_file():
            texel_map = TexelMap.load(stored)
        else:
            geometry = self._registration_geometry()
            texel_map = build_texel_map(self.topology, reference, geometry["studio_points"],
                                        geometry["reference_on_studio"], size)
            if stored is not None:
                try:
                    texel_map.save(stored)
                except OSError:
                    pass  # a read-only cache: rebuilt next time
        self._texel_maps[size] = texel_map
        return texel_map

    def _registration_geometry(self) -> dict:
        if self._geometry is None:
            with np.load(self.folder / REGISTRATION_FILE) as data:
                self._geometry = {k: data[k] for k in ("studio_points", "reference_on_studio")}
        return self._geometry

    def transfer(self, result: HeadResult, reference: ReferenceTopology | None = None) -> HeadResult:
        """The head ``result`` (reference topology) in this studio topology: points, blendshapes (deformation
        transfer through the dense map), textures re-baked into the studio UVs, camera and weights kept."""
        from topos_server.texture.studio_rebake import rebake

        reference = reference or result.topology
        if result.topology_id != self.reference_topology_id:
            raise TopologyMismatchError(f"topology {self.name!r} was registered on reference {self.reference_topology_id}; "
                                        f"the head is in {result.topology_id}")
        started = time.perf_counter()
        rebaking = {}
        pool = None
        if result.textures and self.topology.uv_values is not None:
            size = max(next(iter(t.tiles.values())).shape[0] for t in result.textures.values())
            texel_map = self.texel_map(reference, size)
            # cv2.remap and numpy release the GIL: the maps re-bake while the geometry is carried
            pool = ThreadPoolExecutor(max_workers=len(result.textures), thread_name_prefix="topos-rebake")
            rebaking = {k: pool.submit(rebake, texel_map, tex) for k, tex in result.textures.items()}
        try:
            points = self.dense_map.evaluate(result.points)  # (S, 3)
            deltas = None
            if result.blendshape_deltas is not None:
                deltas = self.dense_map.evaluate_deltas(result.points, result.blendshape_deltas)  # (K, S, 3)
            geometry_s = time.perf_counter() - started
            textures = {k: future.result() for k, future in rebaking.items()}
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        extra = dict(result.provenance.extra)
        extra["topology"] = {"name": self.name, "topology_id": self.topology.topology_id,
                             "from_topology_id": result.topology_id,
                             **({"textures": "skipped: the topology has no UVs"}
                                if result.textures and self.topology.uv_values is None else {})}
        timings = dict(result.provenance.timings_s)
        timings["topology_transfer"] = round(time.perf_counter() - started, 4)
        timings["topology_transfer_geometry"] = round(geometry_s, 4)
        provenance = replace(result.provenance, extra=extra, timings_s=timings)
        return HeadResult(points.astype(np.float32), topology=self.topology, textures=textures,
                          expression_weights=dict(result.expression_weights),
                          blendshape_names=list(result.blendshape_names) if deltas is not None else [],
                          blendshape_deltas=deltas, camera=result.camera, provenance=provenance,
                          view_cameras=list(result.view_cameras))


# ---- the store ---------------------------------------------------------------------------------------------------
_LOADED: dict[str, tuple[float, StudioTopology]] = {}


class TopologyStore:
    """Studio topologies in the asset cache: ``$TOPOS_HOME/topologies/NAME/{manifest.json, topology.npz, …}``."""

    def __init__(self, cache: AssetCache | None = None):
        self.cache = cache or AssetCache.default()
        self.root = self.cache.root / TOPOLOGIES_DIR

    def folder(self, name: str) -> Path:
        return self.root / check_name(name)

    def names(self) -> list[str]:
        return registered_topology_names(self.cache.root)

    def manifest(self, name: str) -> dict:
        path = self.folder(name) / MANIFEST_FILE
        if not path.is_file():
            have = self.names()
            raise TopologyNotFound(f"no studio topology {name!r} in {self.root}" +
                                   (f" (have: {', '.join(have)})" if have else " (none registered: `topos topology add`)"))
        manifest = json.loads(path.read_text())
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ToposError(f"{path}: not a studio topology manifest (format {manifest.get('format')!r})")
        return manifest

    def save(self, registration: Registration, overwrite: bool = False, texture_size: int = DEFAULT_TEXTURE_SIZE) -> Path:
        name = registration.topology.name
        folder = self.folder(name)
        if folder.exists() and not overwrite:
            raise InvalidInputError(f"studio topology {name!r} exists (remove it first, or --overwrite)")
        with atomic_output_dir(folder) as tmp:
            registration.topology.save(tmp / TOPOLOGY_FILE)
            with open(tmp / REGISTRATION_FILE, "wb") as fh:
                np.savez(fh, **registration.dense_map.arrays(), studio_points=registration.studio_points,
                         reference_on_studio=registration.reference_on_studio,
                         cm_per_unit=np.float64(registration.cm_per_unit))
            manifest = dict(registration.manifest)
            studio = StudioTopology(registration.topology, registration.dense_map, manifest, tmp,
                                    {"studio_points": registration.studio_points,
                                     "reference_on_studio": registration.reference_on_studio})
            if registration.topology.uv_values is not None and texture_size:
                started = time.perf_counter()
                studio.texel_map(registration.reference, texture_size)
                manifest["texel_map_seconds"] = {str(texture_size): round(time.perf_counter() - started, 3)}
            manifest["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        _LOADED.pop(str(folder), None)
        return folder

    def load(self, name: str) -> StudioTopology:
        """The studio topology ``name`` (loaded once per process and manifest version)."""
        manifest = self.manifest(name)
        folder = self.folder(name)
        stamp = (folder / MANIFEST_FILE).stat().st_mtime_ns
        memo = _LOADED.get(str(folder))
        if memo is not None and memo[0] == stamp:
            return memo[1]
        topology = ReferenceTopology.load(folder / TOPOLOGY_FILE)
        if topology.topology_id != manifest["topology_id"]:
            raise ToposError(f"{folder}: topology id {topology.topology_id} differs from the manifest's "
                             f"{manifest['topology_id']}: re-register it")
        with np.load(folder / REGISTRATION_FILE) as data:
            dense = DenseMap.from_arrays(data)
        studio = StudioTopology(topology, dense, manifest, folder)
        _LOADED[str(folder)] = (stamp, studio)
        return studio

    def find(self, topology_id: str) -> StudioTopology | None:
        """The registered studio topology with this topology id, or None."""
        for name in self.names():
            try:
                if self.manifest(name).get("topology_id") == topology_id:
                    return self.load(name)
            except (OSError, ValueError, ToposError):
                continue
        return None

    def remove(self, name: str) -> Path:
        self.manifest(name)  # one clear error when it is not there
        folder = self.folder(name)
        shutil.rmtree(folder)
        _LOADED.pop(str(folder), None)
        return folder


def load_studio_topology(name: str, cache: AssetCache | None = None) -> StudioTopology:
    return TopologyStore(cache).load(name)


def to_topology(result: HeadResult, name: str | None, cache: AssetCache | None = None) -> HeadResult:
    """``result`` carried into the studio topology ``name`` (unchanged when ``name`` is None)."""
    if not name:
        return result
    return load_studio_topology(name, cache).transfer(result)
