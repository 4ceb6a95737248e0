"""``topos serve --ray`` as a user runs it: a subprocess that starts a local Ray instance, deploys one
classic replica behind the gRPC proxy on 127.0.0.1, answers ``topos generate --server`` with the
in-process asset, and on SIGTERM removes the application, stops Ray, exits 0 and leaves no process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'topos[ray]'")

from test_grpc_server import PORTRAIT  # noqa: E402
from test_ray_serving import _alive, _descendants, _wait_serving  # noqa: E402
from topos_server.serving.ray_app import free_port  # noqa: E402

from topos_sdk.cli import main  # noqa: E402
from topos_sdk.usd import read_head_asset  # noqa: E402

pytestmark = pytest.mark.slow


def test_topos_serve_ray_serves_generate_and_stops_cleanly_on_sigterm(tmp_path):
    (tmp_path / "token.txt").write_text("cli-token\n")
    (tmp_path / "astronaut.png").write_bytes(PORTRAIT)
    port = free_port()
    topos = Path(sys.executable).parent / "topos"
    proc = subprocess.Popen(
        [str(topos), "serve", "--ray", "--replicas", "1", "--port", str(port), "--device", "cpu",
         "--token-file", str(tmp_path / "token.txt"), "--log-level", "WARNING"],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    try:
        _wait_serving(f"127.0.0.1:{port}", timeout=120)
        common = [str(tmp_path / "astronaut.png"), "--seed", "3", "--texture-size", "512"]
        assert main(["generate", *common, "-o", str(tmp_path / "ray"), "--server", f"127.0.0.1:{port}",
                     "--token-file", str(tmp_path / "token.txt")]) == 0
        assert main(["generate", *common, "-o", str(tmp_path / "local")]) == 0
        through_ray = read_head_asset(tmp_path / "ray" / "astronaut" / "astronaut.usda")
        local = read_head_asset(tmp_path / "local" / "astronaut" / "astronaut.usda")
        assert through_ray.differences(local, atol=1e-5) == []

        ray_processes = _descendants(proc.pid)
        assert ray_processes, "the Ray instance runs under the command"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, proc.stderr.read()
        deadline = time.monotonic() + 30
        while _alive(ray_processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(ray_processes), "Ray processes outlived `topos serve --ray`"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
