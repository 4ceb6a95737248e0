"""OBJ reader: quads and n-gons kept, groups, negative indices, missing vt, compression, clear errors."""

from __future__ import annotations

import gzip
import lzma

import numpy as np
import pytest

from topos_sdk import ObjFormatError
from topos_sdk.obj_reader import read_obj

QUAD_OBJ = """# two quads and a triangle
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 2 0 0
v 2 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vt 0.5 0.5
o head
usemtl M_A
f 1/1 2/2 3/3 4/4
usemtl M_B
f 2/2 5/5 6/3 3/4
f 1/1 2/2 6/5
"""


def write(tmp_path, text, name="mesh.obj"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_quads_stay_quads_with_groups_and_uvs(tmp_path):
    mesh = read_obj(write(tmp_path, QUAD_OBJ))
    assert mesh.points.shape == (6, 3) and mesh.points.dtype == np.float32
    np.testing.assert_array_equal(mesh.face_vertex_counts, [4, 4, 3])
    np.testing.assert_array_equal(mesh.face_vertex_indices, [0, 1, 2, 3, 1, 4, 5, 2, 0, 1, 5])
    np.testing.assert_array_equal(mesh.uv_indices, [0, 1, 2, 3, 1, 4, 2, 3, 0, 1, 4])
    assert mesh.uv_values.shape == (5, 2)
    assert mesh.face_groups("usemtl") == [("M_A", 0, 1), ("M_B", 1, 3)]
    assert mesh.face_groups("o") == [("head", 0, 3)]


def test_negative_indices_count_back_from_the_last_vertex(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 1\nf -4/-2 -3/-1 -2/-1 -1/-2\n"
    mesh = read_obj(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.face_vertex_indices, [0, 1, 2, 3])
    np.testing.assert_array_equal(mesh.uv_indices, [0, 1, 1, 0])


def test_missing_vt_means_no_uvs(tmp_path):
    mesh = read_obj(write(tmp_path, "v 0 0 0\nv 1 0 0\nv 1 1 0\nvn 0 0 1\nf 1//1 2//1 3//1\n"))
    assert mesh.uv_values is None and mesh.uv_indices is None
    np.testing.assert_array_equal(mesh.face_vertex_counts, [3])


@pytest.mark.parametrize("suffix,opener", [(".obj.gz", gzip.open), (".obj.xz", lzma.open)])
def test_compressed_files_read_like_plain_ones(tmp_path, suffix, opener):
    path = tmp_path / f"mesh{suffix}"
    with opener(path, "wt") as fh:
        fh.write(QUAD_OBJ)
    plain = read_obj(write(tmp_path, QUAD_OBJ))
    packed = read_obj(path)
    np.testing.assert_array_equal(packed.face_vertex_indices, plain.face_vertex_indices)
    np.testing.assert_array_equal(packed.uv_values, plain.uv_values)


@pytest.mark.parametrize("face_line,message", [
    ("f 1 2 x", "bad vertex index 'x'"),
    ("f 0 1 2", "index 0 is not valid"),
    ("f 1 2 9", "out of range"),
    ("f 1 2 -9", "out of range"),
    ("f 1 2", "at least 3 vertices"),
    ("f 1/1 2/2 3", "mixes corners with and without texture coordinates"),
    ("f 1/1 2/2 3/7", "texture coordinate index 3/7"),
])
def test_malformed_faces_name_the_line(tmp_path, face_line, message):
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\n# comment\n" + face_line + "\n"
    path = write(tmp_path, text)
    with pytest.raises(ObjFormatError) as err:
        read_obj(path)
    assert err.value.line == 8
    assert str(err.value).startswith(f"{path}:8: ")
    if "3/7" in message:
        assert "out of range" in str(err.value)
    else:
        assert message in str(err.value)


@pytest.mark.parametrize("line,message", [
    ("v 1 2 abc", "bad vertex"),
    ("v 1 2", "needs 3 coordinates"),
    ("vt u v", "bad texture coordinate"),
    ("bogus 1 2 3", "unknown statement 'bogus'"),
])
def test_malformed_statements_name_the_line(tmp_path, line, message):
    path = write(tmp_path, "v 0 0 0\n\n" + line + "\n")
    with pytest.raises(ObjFormatError, match=f":3: .*{message}"):
        read_obj(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_obj(tmp_path / "nope.obj")
    with pytest.raises(ObjFormatError, match="no vertices"):
        read_obj(write(tmp_path, "# nothing\n"))
    broken = tmp_path / "broken.obj.xz"
    broken.write_bytes(b"not xz at all")
    with pytest.raises(ObjFormatError, match="cannot read"):
        read_obj(broken)
