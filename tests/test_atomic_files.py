"""Atomic writes: nothing half-written at the final path, and files readable like any other new file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from topos_sdk.atomic_files import atomic_output_dir, atomic_output_path


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def _expected_mode(tmp_path) -> int:
    (tmp_path / "plain").write_bytes(b"x")  # what any new file gets under this process's umask
    return _mode(tmp_path / "plain")


def test_a_safetensors_file_gets_the_mode_of_any_new_file(tmp_path):
    tables = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    with atomic_output_path(tmp_path / "w.safetensors") as tmp:
        save_file(tables, str(tmp))  # safetensors itself creates 0600
    assert _mode(tmp_path / "w.safetensors") == _expected_mode(tmp_path)
    np.testing.assert_array_equal(load_file(str(tmp_path / "w.safetensors"))["a"], tables["a"])
    with atomic_output_dir(tmp_path / "model") as folder:
        save_file(tables, str(folder / "weights.safetensors"))
        (folder / "private").write_bytes(b"")
        os.chmod(folder / "private", 0o400)  # chosen by the writer: left alone
    assert _mode(tmp_path / "model" / "weights.safetensors") == _expected_mode(tmp_path)
    assert _mode(tmp_path / "model" / "private") == 0o400


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "d") as folder:
        (folder / "f").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "d" / "f").read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["d", "w.bin"]
