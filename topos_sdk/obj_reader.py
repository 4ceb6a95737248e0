"""A careful Wavefront OBJ reader that keeps quads and n-gons as they are.

Reads ``v``, ``vt``, ``vn`` (ignored), ``f`` (``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``, negative
indices), ``g``/``o``/``usemtl`` groups; ``.obj``, ``.obj.xz`` and ``.obj.gz``. Every problem is an
:class:`ObjFormatError` naming the file and line.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ObjFormatError


@dataclass
class ObjMesh:
    points: np.ndarray  # (N, 3) float32
    face_vertex_counts: np.ndarray  # (F,) int32
    face_vertex_indices: np.ndarray  # (sum counts,) int32
    uv_values: np.ndarray | None  # (M, 2) float32, None when the file has no usable vt
    uv_indices: np.ndarray | None  # (sum counts,) int32
    vertex_colors: np.ndarray | None = None  # (N, 3) float32 from "v x y z r g b"
    # (kind, name, first face) for every g / o / usemtl statement, in file order
    group_starts: list[tuple[str, str, int]] = field(default_factory=list)
    material_libraries: list[str] = field(default_factory=list)  # mtllib file names, relative to the OBJ

    def face_groups(self, kind: str = "usemtl") -> list[tuple[str, int, int]]:
        """Contiguous face runs ``(name, face_start, face_stop)`` by ``usemtl``, ``g`` or ``o``."""
        starts = [(name, f) for k, name, f in self.group_starts if k == kind]
        n = len(self.face_vertex_counts)
        if not starts:
            return [("mesh", 0, n)] if n else []
        if starts[0][1] > 0:
            starts.insert(0, ("default", 0))
        runs = []
        for i, (name, f0) in enumerate(starts):
            f1 = starts[i + 1][1] if i + 1 < len(starts) else n
            if f1 > f0:
                runs.append((name, f0, f1))
        return runs


def _open_text(path: Path) -> io.TextIOBase:
    suffix = path.suffix.lower()
    if suffix == ".xz":
        return io.TextIOWrapper(lzma.open(path, "rb"), encoding="utf-8", errors="replace")
    if suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace")


def read_obj(path: str | os.PathLike) -> ObjMesh:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such OBJ file")
    where = str(path)
    points: list[list[float]] = []
    colors: list[list[float]] = []
    uvs: list[list[float]] = []
    counts: list[int] = []
    v_idx: list[int] = []
    t_idx: list[int] = []
    faces_missing_vt = 0
    groups: list[tuple[str, str, int]] = []
    libraries: list[str] = []

    def resolve(token: str, count: int, lineno: int, what: str) -> int:
        try:
            i = int(token)
        except ValueError:
            raise ObjFormatError(where, lineno, f"bad {what} index {token!r}") from None
        if i > 0:
            i -= 1
        elif i < 0:
            i += count
        else:
            raise ObjFormatError(where, lineno, f"{what} index 0 is not valid (OBJ indices start at 1)")
        if not 0 <= i < count:
            raise ObjFormatError(where, lineno, f"{what} index {token} out of range ({count} defined so far)")
        return i

    try:
        fh = _open_text(path)
        with fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                tag = parts[0]
                if tag == "v":
                    try:
                        vals = [float(x) for x in parts[1:]]
                    except ValueError:
                        raise ObjFormatError(where, lineno, f"bad vertex {line!r}") from None
                    if len(vals) not in (3, 4, 6, 7):
                        raise ObjFormatError(where, lineno, f"vertex needs 3 coordinates, got {len(vals)}")
                    points.append(vals[:3])
                    if len(vals) >= 6:
                        colors.append(vals[3:6] if len(vals) == 6 else vals[4:7])
                elif tag == "vt":
                    try:
                        vals = [float(x) for x in parts[1:]]
                    except ValueError:
                        raise ObjFormatError(where, lineno, f"bad texture coordinate {line!r}") from None
                    if len(vals) < 1:
                        raise ObjFormatError(where, lineno, "texture coordinate needs u (and v)")
                    uvs.append((vals + [0.0])[:2])
                elif tag == "f":
                    corners = parts[1:]
                    if len(corners) < 3:
                        raise ObjFormatError(where, lineno, f"face needs at least 3 vertices, got {len(corners)}")
                    has_vt = None
                    for c in corners:
                        fields = c.split("/")
                        v_idx.append(resolve(fields[0], len(points), lineno, "vertex"))
                        this_vt = len(fields) > 1 and fields[1] != ""
                        if has_vt is None:
                            has_vt = this_vt
                        elif has_vt != this_vt:
                            raise ObjFormatError(where, lineno, "face mixes corners with and without texture coordinates")
                        t_idx.append(resolve(fields[1], len(uvs), lineno, "texture coordinate") if this_vt else -1)
                    if not has_vt:
                        faces_missing_vt += 1
                    counts.append(len(corners))
                elif tag in ("g", "o", "usemtl"):
                    groups.append((tag, " ".join(parts[1:]) or "default", len(counts)))
                elif tag == "mtllib":
                    libraries.extend(parts[1:])
                elif tag in ("vn", "vp", "s", "l", "p", "cstype", "deg", "curv", "surf", "parm", "end"):
                    continue
                else:
                    raise ObjFormatError(where, lineno, f"unknown statement {tag!r}")
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ObjFormatError(where, 0, f"cannot read file: {exc}") from None

    if not points:
        raise ObjFormatError(where, 0, "no vertices")
    if colors and len(colors) != len(points):
        colors = []
    has_uv = bool(uvs) and faces_missing_vt == 0 and bool(counts)
    return ObjMesh(
        points=np.asarray(points, np.float32).reshape(-1, 3),
        face_vertex_counts=np.asarray(counts, np.int32),
        face_vertex_indices=np.asarray(v_idx, np.int32),
        uv_values=np.asarray(uvs, np.float32).reshape(-1, 2) if has_uv else None,
        uv_indices=np.asarray(t_idx, np.int32) if has_uv else None,
        vertex_colors=np.asarray(colors, np.float32) if colors else None,
        group_starts=groups,
        material_libraries=libraries,
    )
