"""Reading a head mesh of any topology for ``topos convert``: OBJ, PLY, STL, USD → triangles.

Returns an :class:`InputMesh` (points, triangles, optional per-vertex colours, optional UV textures:
OBJ ``vt`` + the ``map_Kd`` of each ``usemtl`` material, USD ``primvars:st`` + the ``UsdUVTexture``
feeding the bound ``UsdPreviewSurface``'s ``diffuseColor``). Faces are fan triangulated. Every
malformed file raises :class:`~topos_sdk.errors.InvalidInputError` with one line naming the file; a
texture that cannot be read is skipped with a warning (the geometry still converts).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_sdk.errors import InvalidInputError

log = logging.getLogger(__name__)

SUFFIXES = (".obj", ".obj.gz", ".obj.xz", ".ply", ".stl", ".usd", ".usda", ".usdc", ".usdz")


@dataclass
class UvTextures:
    """Colour images on the surface through UVs: one image per material, UVs per triangle corner."""

    corner_uvs: np.ndarray  # (T, 3, 2) float32, v up (OBJ/USD convention)
    triangle_image: np.ndarray  # (T,) int64 index into images, -1: no texture on this triangle
    images: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) float32 sRGB in [0, 1]
    names: list[str] = field(default_factory=list)  # the image files

    def subset(self, keep: np.ndarray) -> "UvTextures":
        return UvTextures(self.corner_uvs[keep], self.triangle_image[keep], self.images, self.names)


@dataclass
class InputMesh:
    points: np.ndarray  # (V, 3) float64
    triangles: np.ndarray  # (T, 3) int64
    vertex_colors: np.ndarray | None = None  # (V, 3) float32 in [0, 1]
    source: str = ""
    textures: UvTextures | None = None


def read_texture_image(path: Path) -> np.ndarray | None:
    """(H, W, 3) float32 sRGB in [0, 1], or None (with a warning) when the file is missing or unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if image is None:
        log.warning("%s: texture missing or unreadable; the converted head gets no colour from it", path)
        return None
    if image.dtype != np.uint8:
        image = (image.astype(np.float32) / np.iinfo(image.dtype).max * 255.0 if image.dtype.kind in "ui"
                 else np.clip(image, 0.0, 1.0) * 255.0).astype(np.float32)
    image = image.astype(np.float32) / 255.0
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, 2::-1] if image.shape[2] >= 3 else np.repeat(image[:, :, :1], 3, axis=2))


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
    triangles = fan_triangles(obj.face_vertex_counts, obj.face_vertex_indices)
    return InputMesh(obj.points.astype(np.float64), triangles, colors, textures=_obj_textures(obj, path))


# MTL texture-map options and how many values each takes (the file name follows them, and may hold spaces)
_MAP_OPTIONS = {"-blendu": 1, "-blendv": 1, "-bm": 1, "-boost": 1, "-cc": 1, "-clamp": 1, "-imfchan": 1,
                "-mm": 2, "-o": 3, "-s": 3, "-t": 3, "-texres": 1, "-type": 1}


def _map_file_name(tokens: list[str]) -> str:
    """The file name of a ``map_Kd`` statement's tokens, after its options."""
    i = 0
    while i < len(tokens) - 1 and tokens[i] in _MAP_OPTIONS:
        i += 1 + _MAP_OPTIONS[tokens[i]]
    return " ".join(tokens[i:])


def _obj_textures(obj, path: Path) -> UvTextures | None:
    """UV textures from ``vt`` and the ``map_Kd`` of each ``usemtl`` material in the ``mtllib`` files."""
    if obj.uv_values is None or not obj.material_libraries:
        return None
    maps: dict[str, Path] = {}
    for library in obj.material_libraries:
        library_path = path.parent / library
        if not library_path.is_file():
            log.warning("%s: material library %s not found; no texture", path, library)
            continue
        material = None
        for line in library_path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "newmtl":
                material = " ".join(parts[1:])
            elif len(parts) >= 2 and parts[0] == "map_Kd" and material is not None:
                maps[material] = library_path.parent / _map_file_name(parts[1:])
    if not maps:
        return None
    images, names, index_of = [], [], {}
    for material, image_path in maps.items():
        image = read_texture_image(image_path)
        if image is not None:
            index_of[material] = len(images)
            images.append(image)
            names.append(image_path.name)
    if not images:
        return None
    counts = obj.face_vertex_counts
    corner_uvs = obj.uv_values[fan_triangles(counts, obj.uv_indices)]  # (T, 3, 2)
    polygon_image = np.full(len(counts), -1, np.int64)
    for material, start, stop in obj.face_groups("usemtl"):
        polygon_image[start:stop] = index_of.get(material, -1)
    triangle_image = np.repeat(polygon_image, np.maximum(np.asarray(counts, np.int64) - 2, 0))
    return UvTextures(corner_uvs.astype(np.float32), triangle_image, images, names)


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
    points, triangles, colours, textures, offset = [], [], [], [], 0
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
        part_textures = _usd_textures(mesh, counts, indices, len(tris), path)
        if part_textures is not None and mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded:
            part_textures.corner_uvs = part_textures.corner_uvs[:, [0, 2, 1]]
        textures.append(part_textures)
        offset += len(pts)
    if not points:
        raise InvalidInputError(f"{path}: no visible UsdGeom.Mesh with faces in the stage")
    up = UsdGeom.GetStageUpAxis(stage)
    pts = np.concatenate(points)
    if up == UsdGeom.Tokens.z:  # to the reference's +Y up
        pts = pts[:, [0, 2, 1]] * np.array([1.0, 1.0, -1.0])
    vertex_colours = None if any(c is None for c in colours) else np.concatenate(colours)
    return InputMesh(pts, np.concatenate(triangles), vertex_colours,
                     textures=_merged_textures(textures, [len(tris) for tris in triangles]))


def _merged_textures(parts: list[UvTextures | None], triangle_counts: list[int]) -> UvTextures | None:
    """One UvTextures for several meshes (meshes without a texture get image −1)."""
    if all(part is None for part in parts):
        return None
    corner_uvs, triangle_image, images, names = [], [], [], []
    for part, count in zip(parts, triangle_counts):
        if part is None:
            corner_uvs.append(np.zeros((count, 3, 2), np.float32))
            triangle_image.append(np.full(count, -1, np.int64))
            continue
        corner_uvs.append(part.corner_uvs)
        triangle_image.append(np.where(part.triangle_image >= 0, part.triangle_image + len(images), -1))
        images += part.images
        names += part.names
    return UvTextures(np.concatenate(corner_uvs), np.concatenate(triangle_image), images, names)


def _usd_textures(mesh, counts: np.ndarray, indices: np.ndarray, triangle_count: int, path: Path) -> UvTextures | None:
    """UVs (``primvars:st`` or the name the material's UsdPrimvarReader reads) and the image on the bound
    UsdPreviewSurface's ``diffuseColor`` (a UsdUVTexture), else None."""
    from pxr import UsdGeom, UsdShade

    material, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    if not material:
        return None
    shader = material.ComputeSurfaceSource()[0]
    if not shader or shader.GetIdAttr().Get() != "UsdPreviewSurface":
        return None
    diffuse = shader.GetInput("diffuseColor")
    source = diffuse.GetConnectedSources()[0] if diffuse else []
    texture = UsdShade.Shader(source[0].source.GetPrim()) if source else None
    if not texture or texture.GetIdAttr().Get() != "UsdUVTexture":
        return None
    file_input = texture.GetInput("file")
    asset = file_input.Get() if file_input else None
    if asset is None:
        return None
    image_path = Path(asset.resolvedPath or (path.parent / asset.path))
    if "<UDIM>" in str(image_path):
        log.warning("%s: UDIM texture %s is not read (single images only); no colour from it", path, asset.path)
        return None
    varname = "st"
    st_source = texture.GetInput("st").GetConnectedSources()[0] if texture.GetInput("st") else []
    if st_source:
        reader = UsdShade.Shader(st_source[0].source.GetPrim())
        name = reader.GetInput("varname").Get() if reader.GetInput("varname") else None
        varname = str(name) if name else varname
    primvar = UsdGeom.PrimvarsAPI(mesh.GetPrim()).GetPrimvar(varname)
    if not primvar or not primvar.HasValue():
        return None
    uvs = np.asarray(primvar.ComputeFlattened(), np.float32).reshape(-1, 2)
    interpolation = primvar.GetInterpolation()
    if interpolation == UsdGeom.Tokens.faceVarying and len(uvs) == len(indices):
        corner_uvs = uvs[fan_triangles(counts, np.arange(len(indices)))]
    elif interpolation in (UsdGeom.Tokens.vertex, UsdGeom.Tokens.varying) and len(uvs) > indices.max():
        corner_uvs = uvs[fan_triangles(counts, indices)]
    else:
        return None
    image = read_texture_image(image_path)
    if image is None:
        return None
    return UvTextures(corner_uvs, np.zeros(triangle_count, np.int64), [image], [image_path.name])


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
    textures = None if mesh.textures is None else mesh.textures.subset(label[t[:, 0]] == best)
    return InputMesh(mesh.points[used], remap[keep_tri], colors, mesh.source, textures)


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
