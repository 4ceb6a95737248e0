"""Reading a head mesh of any topology for ``topos convert``: OBJ, PLY, STL, USD → triangles.

Returns an :class:`InputMesh` (points, triangles, optional per-vertex colours). Faces are fan
triangulated. Every malformed file raises :class:`~topos_sdk.errors.InvalidInputError` with one
line naming the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_sdk.errors import InvalidInputError

SUFFIXES = (".obj", ".obj.gz", ".obj.xz", ".ply", ".stl", ".usd", ".usda", ".usdc", ".usdz")


@dataclass
class InputMesh:
    points: np.ndarray  # (V, 3) float64
    triangles: np.ndarray  # (T, 3) int64
    vertex_colors: np.ndarray | None = None  # (V, 3) float32 in [0, 1]
    source: str = ""


def fan_triangles(counts: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(T, 3) fan triangulation of polygons given as counts (F,) and flat indices."""
    counts = np.asarray(counts, np.int64)
    indices = np.asarray(indices, np.int64)
    offsets = np.r_[0, np.cumsum(counts)[:-1]]
    n_tri = np.maximum(counts - 2, 0)
    face = np.repeat(np.arange(len(counts)), n_tri)
    k = np.arange(len(face)) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    base = offsets[face]
    return np.stack([indices[base], indices[base + k + 1], indices[base + k + 2]], 1)


def read_mesh(path: str | Path) -> InputMesh:
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    if name.endswith((".obj", ".obj.gz", ".obj.xz")):
        mesh = _read_obj(path)
    elif name.endswith(".ply"):
        mesh = _read_ply(path)
    elif name.endswith(".stl"):
        mesh = _read_stl(path)
    elif name.endswith((".usd", ".usda", ".usdc", ".usdz")):
        mesh = _read_usd(path)
    else:
        raise InvalidInputError(f"{path}: unsupported mesh format; use one of {', '.join(SUFFIXES)}")
    mesh.source = str(path)
    return _checked(mesh, path)


def _checked(mesh: InputMesh, path: Path) -> InputMesh:
    if len(mesh.points) < 4 or len(mesh.triangles) < 4:
        raise InvalidInputError(f"{path}: too few vertices or faces for a head ({len(mesh.points)} / {len(mesh.triangles)})")
    if not np.isfinite(mesh.points).all():
        raise InvalidInputError(f"{path}: vertex coordinates are not all finite")
    if mesh.triangles.min() < 0 or mesh.triangles.max() >= len(mesh.points):
        raise InvalidInputError(f"{path}: a face refers to a vertex that does not exist")
    return mesh


def _read_obj(path: Path) -> InputMesh:
    from topos_sdk.errors import ObjFormatError
    from topos_sdk.obj_reader import read_obj

    try:
        obj = read_obj(path)
    except ObjFormatError as exc:
        raise InvalidInputError(str(exc)) from exc
    colors = None if obj.vertex_colors is None else np.clip(obj.vertex_colors, 0, 1).astype(np.float32)
    return InputMesh(obj.points.astype(np.float64), fan_triangles(obj.face_vertex_counts, obj.face_vertex_indices), colors)


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _read_ply(path: Path) -> InputMesh:
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InvalidInputError(f"{path}: not a PLY file (no 'ply' magic or 'end_header')")
    header = data[:end].decode("ascii", "replace").splitlines()
    body = data[data.index(b"\n", end) + 1:]
    fmt, elements = None, []
    for line in header:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            elements[-1][2].append(words[1:])
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InvalidInputError(f"{path}: unsupported PLY format {fmt!r}")
    try:
        tables = _ply_ascii(body, elements) if fmt == "ascii" else _ply_binary(body, elements, "<" if "little" in fmt else ">")
    except (ValueError, IndexError, struct.error) as exc:
        raise InvalidInputError(f"{path}: malformed PLY body ({exc})") from exc
    vertex = tables.get("vertex")
    if vertex is None or not all(k in vertex for k in "xyz"):
        raise InvalidInputError(f"{path}: PLY has no vertex x/y/z")
    points = np.stack([vertex[k] for k in "xyz"], 1).astype(np.float64)
    colors = None
    if all(k in vertex for k in ("red", "green", "blue")):
        rgb = np.stack([vertex[k] for k in ("red", "green", "blue")], 1).astype(np.float32)
        colors = rgb / 255.0 if rgb.max() > 1.0 else rgb
    faces = tables.get("face", {})
    polys = faces.get("vertex_indices", faces.get("vertex_index"))
    if polys is None:
        raise InvalidInputError(f"{path}: PLY has no faces (a point cloud cannot be converted)")
    counts = np.array([len(p) for p in polys])
    return InputMesh(points, fan_triangles(counts, np.concatenate(polys) if len(polys) else np.zeros(0, np.int64)), colors)


def _ply_ascii(body: bytes, elements) -> dict:
    tokens = body.split()
    pos, tables = 0, {}
    for name, count, props in elements:
        columns = {p[-1]: [] for p in props}
        for _ in range(count):
            for p in props:
                if p[0] == "list":
                    n = int(tokens[pos])
                    columns[p[-1]].append(np.array(tokens[pos + 1:pos + 1 + n], np.int64))
                    pos += 1 + n
                else:
                    columns[p[-1]].append(float(tokens[pos]))
                    pos += 1
        tables[name] = {k: (np.array(v) if v and not isinstance(v[0], np.ndarray) else v) for k, v in columns.items()}
    return tables


def _ply_binary(body: bytes, elements, order: str) -> dict:
    pos, tables = 0, {}
    for name, count, props in elements:
        if all(p[0] != "list" for p in props):
            dtype = np.dtype([(p[-1], order + _PLY_TYPES[p[0]]) for p in props])
            arr = np.frombuffer(body, dtype, count, pos)
            pos += dtype.itemsize * count
            tables[name] = {p[-1]: arr[p[-1]] for p in props}
            continue
        columns = {p[-1]: [] for p in props}
        for _ in range(count):
            for p in props:
                if p[0] == "list":
                    cdt, idt = np.dtype(order + _PLY_TYPES[p[1]]), np.dtype(order + _PLY_TYPES[p[2]])
                    n = int(np.frombuffer(body, cdt, 1, pos)[0])
                    pos += cdt.itemsize
                    columns[p[-1]].append(np.frombuffer(body, idt, n, pos).astype(np.int64))
                    pos += idt.itemsize * n
                else:
                    dt = np.dtype(order + _PLY_TYPES[p[0]])
                    columns[p[-1]].append(np.frombuffer(body, dt, 1, pos)[0])
                    pos += dt.itemsize
        tables[name] = columns
    return tables


def _read_stl(path: Path) -> InputMesh:
    data = path.read_bytes()
    if len(data) >= 84:
        count = struct.unpack_from("<I", data, 80)[0]
        if 84 + 50 * count == len(data):
            records = np.frombuffer(data, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), count, 84)
            return _weld(records["v"].reshape(-1, 3).astype(np.float64))
    text = data.decode("ascii", "replace")
    if not text.lstrip().startswith("solid"):
        raise InvalidInputError(f"{path}: neither binary nor ASCII STL")
    verts = [line.split()[1:4] for line in text.splitlines() if line.strip().startswith("vertex")]
    if not verts or len(verts) % 3:
        raise InvalidInputError(f"{path}: ASCII STL without complete facets")
    try:
        return _weld(np.array(verts, np.float64))
    except ValueError as exc:
        raise InvalidInputError(f"{path}: malformed STL vertex ({exc})") from exc


def _weld(corners: np.ndarray) -> InputMesh:
    """STL stores corners per facet: merge equal positions into shared vertices."""
    points, inverse = np.unique(corners, axis=0, return_inverse=True)
    return InputMesh(points, inverse.reshape(-1, 3).astype(np.int64))


def _read_usd(path: Path) -> InputMesh:
    try:
        from pxr import Usd, UsdGeom
    except ImportError as exc:
        raise InvalidInputError(f"{path}: reading USD needs OpenUSD ('pxr', pip install usd-core)") from exc
    stage = Usd.Stage.Open(str(path))
    if stage is None:
        raise InvalidInputError(f"{path}: USD could not open the stage")
    cache = UsdGeom.XformCache()
    points, triangles, colours, offset = [], [], [], 0
    for prim in stage.Traverse():
        if not prim.IsA(UsdGeom.Mesh) or UsdGeom.Imageable(prim).ComputeVisibility() == UsdGeom.Tokens.invisible:
            continue
        mesh = UsdGeom.Mesh(prim)
        pts = np.asarray(mesh.GetPointsAttr().Get() or [], np.float64).reshape(-1, 3)
        counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get() or [], np.int64)
        indices = np.asarray(mesh.GetFaceVertexIndicesAttr().Get() or [], np.int64)
        if not len(pts) or not len(counts):
            continue
        xf = np.asarray(cache.GetLocalToWorldTransform(prim), np.float64)  # row-vector convention
        pts = pts @ xf[:3, :3] + xf[3, :3]
        tris = fan_triangles(counts, indices)
        if mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded:
            tris = tris[:, [0, 2, 1]]
        points.append(pts)
        triangles.append(tris + offset)
        colours.append(_usd_vertex_colours(mesh, len(pts)))
        offset += len(pts)
    if not points:
        raise InvalidInputError(f"{path}: no visible UsdGeom.Mesh with faces in the stage")
    up = UsdGeom.GetStageUpAxis(stage)
    pts = np.concatenate(points)
    if up == UsdGeom.Tokens.z:  # to the reference's +Y up
        pts = pts[:, [0, 2, 1]] * np.array([1.0, 1.0, -1.0])
    vertex_colours = None if any(c is None for c in colours) else np.concatenate(colours)
    return InputMesh(pts, np.concatenate(triangles), vertex_colours)


def _usd_vertex_colours(mesh, count: int) -> np.ndarray | None:
    """(count, 3) float32 ``primvars:displayColor`` per vertex (vertex/varying/constant interpolation), else None."""
    from pxr import UsdGeom

    primvar = UsdGeom.PrimvarsAPI(mesh.GetPrim()).GetPrimvar("displayColor")
    if not primvar or not primvar.HasValue():
        return None
    values = primvar.ComputeFlattened()
    if values is None:
        return None
    values = np.clip(np.asarray(values, np.float32).reshape(-1, 3), 0.0, 1.0)
    interpolation = primvar.GetInterpolation()
    if interpolation == UsdGeom.Tokens.constant and len(values) == 1:
        return np.repeat(values, count, axis=0)
    if interpolation in (UsdGeom.Tokens.vertex, UsdGeom.Tokens.varying) and len(values) == count:
        return values
    return None


def largest_component(mesh: InputMesh) -> InputMesh:
    """The connected component with the largest area (drops separate eyeballs, teeth, lashes, debris)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from topos_server.geometry.surface_points import face_normals_and_areas

    n = len(mesh.points)
    t = mesh.triangles
    graph = sp.csr_matrix((np.ones(3 * len(t)), (t.ravel(), np.roll(t, 1, axis=1).ravel())), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    if count == 1:
        return mesh
    _, area = face_normals_and_areas(mesh.points, t)
    best = np.argmax(np.bincount(label[t[:, 0]], weights=area, minlength=count))
    keep_tri = t[label[t[:, 0]] == best]
    used = np.unique(keep_tri)
    remap = np.full(n, -1, np.int64)
    remap[used] = np.arange(len(used))
    colors = None if mesh.vertex_colors is None else mesh.vertex_colors[used]
    return InputMesh(mesh.points[used], remap[keep_tri], colors, mesh.source)


def open_boundary_ratio(points: np.ndarray, triangles: np.ndarray) -> float:
    """Length of the longest boundary loop over √(surface area): 0 for a closed mesh, ~1–2 for a head with a
    neck cut and small holes, >3 for a face-only patch (scale-free)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from topos_server.geometry.surface_points import face_normals_and_areas

    triangles = np.asarray(triangles, np.int64)
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = unique[counts == 1]  # (B, 2)
    if not len(boundary):
        return 0.0
    n = len(points)
    graph = sp.coo_matrix((np.ones(len(boundary)), (boundary[:, 0], boundary[:, 1])), shape=(n, n))
    _, loop = connected_components(graph, directed=False)
    lengths = np.linalg.norm(points[boundary[:, 0]] - points[boundary[:, 1]], axis=1)
    _, area = face_normals_and_areas(points, triangles)
    return float(np.bincount(loop[boundary[:, 0]], lengths).max() / np.sqrt(max(area.sum(), 1e-30)))
