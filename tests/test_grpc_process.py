"""A server in its own process: SIGTERM during a request lets it finish, then the process exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from topos_sdk.client import Client
from topos_sdk.errors import ServerUnavailable

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(address: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise AssertionError("server did not become SERVING")


def sigterm_during_request(proc: subprocess.Popen, address: str, image: bytes, token=None, **generate_kwargs):
    """Start a request, SIGTERM the server once the engine reports progress; returns (result, exit code, log)."""
    outcome, progressed = {}, threading.Event()

    def run():
        with Client(address, token=token, retries=0, timeout=120) as client:
            try:
                outcome["result"] = client.generate(image, on_progress=lambda s, f: s != "queued" and progressed.set(),
                                                    **generate_kwargs)
            except Exception as exc:  # reported below
                outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    assert progressed.wait(60), outcome
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with Client(address, token=token, retries=0) as late:  # refused while draining (or the port is already closed)
        with pytest.raises(ServerUnavailable):
            late.generate(image, **generate_kwargs)
    worker.join(120)
    code = proc.wait(60)
    return outcome, code, proc.stderr.read()


def launch_synthetic(tmp_path, port: int, delay_s: float) -> subprocess.Popen:
    launcher = tmp_path / "launch.py"
    launcher.write_text(textwrap.dedent(f"""
        import logging, sys
        sys.path.insert(0, {str(TESTS)!r})
        from conftest import make_quad_grid
        from grpc_synthetic_engine import SyntheticEngine
        from topos_server.serving.server import ServerConfig, serve
        logging.basicConfig(level=logging.INFO)
        engine = SyntheticEngine(make_quad_grid(), delay_s={delay_s})
        sys.exit(serve(ServerConfig(host="127.0.0.1", port={port}, engines=[], grace_s=30), {{"synthetic": engine}}))
    """))
    return subprocess.Popen([sys.executable, str(launcher)], stderr=subprocess.PIPE, text=True)


def test_sigterm_drains_the_request_in_flight_and_exits_0(tmp_path):
    port = free_port()
    proc = launch_synthetic(tmp_path, port, delay_s=0.75)
    try:
        address = f"127.0.0.1:{port}"
        wait_serving(address, proc)
        from test_grpc_server import PORTRAIT

        outcome, code, log = sigterm_during_request(proc, address, PORTRAIT, seed=1, texture_size=512)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "error" not in outcome, outcome
    assert outcome["result"].num_points > 0
    assert code == 0, log
    assert "shutting down: NOT_SERVING, 1 request(s) in flight" in log and "finished status=OK" in log
    assert "stopped" in log


def test_a_second_sigterm_cancels_the_request_and_exits_1(tmp_path):
    from test_grpc_server import PORTRAIT

    port = free_port()
    proc = launch_synthetic(tmp_path, port, delay_s=3.0)
    try:
        address = f"127.0.0.1:{port}"
        wait_serving(address, proc)
        outcome, progressed = {}, threading.Event()

        def run():
            try:
                with Client(address, retries=0) as client:
                    client.generate(PORTRAIT, on_progress=lambda s, f: s != "queued" and progressed.set())
            except Exception as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        assert progressed.wait(30)  # one 3 s stage done, three to go
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        worker.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1 and time.monotonic() - t < 6  # did not wait for the remaining 9 s of work
    assert outcome["error"].code in ("CANCELLED", "UNAVAILABLE")
    assert "second signal: cancelling 1 request(s) in flight" in proc.stderr.read()


def _classic_present() -> bool:
    return (TESTS.parent / "server" / "topos_server" / "engines" / "classic.py").exists()


@pytest.mark.skipif(not _classic_present(), reason="the classic engine module is not present")
def test_topos_serve_classic_sigterm_exits_0_after_the_request(tmp_path):
    from test_grpc_server import PORTRAIT

    port = free_port()
    token = tmp_path / "token"
    token.write_text("serve-test-token\n")
    topos = Path(sys.executable).parent / "topos"
    proc = subprocess.Popen([str(topos), "serve", "--port", str(port), "--device", "cpu", "--engine", "classic",
                             "--token-file", str(token), "--max-queue", "4"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        address = f"127.0.0.1:{port}"
        wait_serving(address, proc)
        outcome, code, log = sigterm_during_request(proc, address, PORTRAIT, seed=3, texture_size=512,
                                                    token="serve-test-token")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "error" not in outcome, f"{outcome}\n{log}"
    assert outcome["result"].topology.name and outcome["result"].num_points == outcome["result"].topology.num_points
    assert code == 0, log
