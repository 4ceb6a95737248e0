"""Load test: N requests at concurrency C against a TOPOS server on this machine (loopback only).

    python bench/load.py --requests 200 --concurrency 8                 # starts `topos serve --engine classic`
    python bench/load.py --requests 50 --concurrency 4 --synthetic       # the tests' synthetic engine instead
    python bench/load.py --server 127.0.0.1:50051 --server-pid 1234      # an already running local server
    python bench/load.py --ray --replicas 1 2 -n 40 -c 4 --texture-size 512   # Ray Serve, 1 then 2 replicas

Prints p50/p95/max latency, throughput, errors by type, lost results (a result missing, incomplete or
different from the first one for the same image and seed) and the server's RSS before (after one
warm-up request) and after the run. Bounded: at most 5000 requests and --time-limit seconds.

``--ray`` starts a local Ray instance in this process (one logical CPU per replica), deploys the
``topos`` application once per ``--replicas`` count (the classic engine, ``--max-queued`` bound) and
runs the same load through Ray Serve's gRPC proxy; RSS is given per engine replica process, plus the
ingress and the proxy.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAX_REQUESTS = 5000
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

SYNTHETIC_LAUNCHER = """
import sys
sys.path.insert(0, {tests!r})
from grpc_synthetic_engine import SyntheticEngine
from topos_server.assets.cache import AssetCache
from topos_server.serving.server import ServerConfig, serve
engine = SyntheticEngine(AssetCache.default().ict_topology(), delay_s={delay})
sys.exit(serve(ServerConfig(host="127.0.0.1", port={port}, engines=[], max_batch={max_batch},
                            max_queue={max_queue}), {{"synthetic": engine}}))
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def portrait_bytes(path: str | None) -> bytes:
    if path:
        return Path(path).read_bytes()
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


def start_server(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if args.synthetic:
        code = SYNTHETIC_LAUNCHER.format(tests=str(REPO / "tests"), delay=args.synthetic_delay, port=port,
                                         max_batch=args.max_batch, max_queue=args.max_queue)
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [str(Path(sys.executable).parent / "topos"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--engine", args.engine, "--device", args.device, "--max-batch", str(args.max_batch),
               "--max-queue", str(args.max_queue), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, f"127.0.0.1:{port}"


def wait_serving(address: str, proc: subprocess.Popen | None, timeout: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    end = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}:\n{proc.stderr.read()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.25)
    raise SystemExit(f"server at {address} did not become SERVING within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", "-n", type=int, default=200)
    p.add_argument("--concurrency", "-c", type=int, default=8)
    p.add_argument("--engine", default="classic")
    p.add_argument("--device", default="cpu")
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--image", help="portrait file (default: skimage's astronaut)")
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--server", help="address of a running server on this machine (default: start one)")
    p.add_argument("--server-pid", type=int, help="its process id, for RSS")
    p.add_argument("--token", help="bearer token of the running server")
    p.add_argument("--synthetic", action="store_true", help="serve the tests' synthetic engine (ICT-sized results)")
    p.add_argument("--synthetic-delay", type=float, default=0.0, help="seconds per synthetic engine stage")
    p.add_argument("--time-limit", type=float, default=1800, help="give up after this many seconds")
    p.add_argument("--ray", action="store_true", help="through Ray Serve on a local Ray instance (needs topos[ray])")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="with --ray: replica counts to run")
    p.add_argument("--max-queued", type=int, default=64, help="with --ray: requests waiting for a replica")
    args = p.parse_args(argv)
    if args.ray and (args.server or args.synthetic):
        raise SystemExit("--ray starts its own local Ray instance with the real engine; not with --server/--synthetic")
    if any(n < 1 for n in args.replicas):
        raise SystemExit("--replicas must be positive")
    if not 1 <= args.requests <= MAX_REQUESTS or not 1 <= args.concurrency <= 64:
        raise SystemExit(f"--requests must be in 1..{MAX_REQUESTS}, --concurrency in 1..64")
    if args.server and args.server.rsplit(":", 1)[0] not in LOOPBACK:
        raise SystemExit("bench/load.py only talks to servers on this machine (127.0.0.1 / localhost)")

    image = portrait_bytes(args.image)
    if args.ray:
        return run_on_ray(args, image)
    proc = None
    if args.server:
        address, pid = args.server, args.server_pid
    else:
        proc, address = start_server(args)
        pid = proc.pid
    engine = "synthetic" if args.synthetic else args.engine
    try:
        t = time.monotonic()
        wait_serving(address, proc, timeout=300)
        startup = time.monotonic() - t
        rss_start = rss_mib(pid) if pid else None
        run = run_load(address, image, engine, args, rss=lambda: rss_mib(pid) if pid else None)
    finally:
        if proc is not None:
            proc.terminate()
            code = proc.wait(120)
            if code != 0:
                print(f"server exited with {code}:\n{proc.stderr.read()}", file=sys.stderr)

    print(f"engine {engine}, texture {args.texture_size}, {args.requests} requests at concurrency {args.concurrency}, "
          f"{os.cpu_count()} CPU cores")
    print(f"server start {startup:.1f} s, warm-up request {run.warmup_s:.2f} s")
    print_run(run)
    if run.rss_before is not None:
        print(f"server RSS: {rss_start:.0f} MiB after start, {run.rss_before:.0f} MiB after warm-up, "
              f"{run.rss_after:.0f} MiB after the run ({run.rss_after - run.rss_before:+.0f} MiB)")
    return 0 if not run.errors and not run.lost else 1


@dataclass
class LoadRun:
    latencies: list[float]
    errors: Counter
    lost: int
    wall_s: float
    warmup_s: float
    rss_before: float | dict | None = None
    rss_after: float | dict | None = None

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s


def run_load(address: str, image: bytes, engine: str, args, rss=lambda: None) -> LoadRun:
    """One warm-up request (the reference result), then ``args.requests`` at ``args.concurrency``."""
    from topos_sdk.client import Client
    from topos_sdk.errors import ToposError

    client = Client(address, token=args.token, timeout=args.time_limit, retries=2)
    try:
        t = time.monotonic()
        reference = client.generate(image, seed=args.seed, engine=engine, texture_size=args.texture_size)
        warmup = time.monotonic() - t
        rss_before = rss()

        deadline = time.monotonic() + args.time_limit
        latencies, errors, lost = [], Counter(), 0

        def one(_):
            if time.monotonic() > deadline:
                return None, "time limit"
            t0 = time.monotonic()
            try:
                result = client.generate(image, seed=args.seed, engine=engine, texture_size=args.texture_size,
                                         timeout=max(deadline - time.monotonic(), 1))
                return (time.monotonic() - t0, result), None
            except ToposError as exc:
                return None, f"{type(exc).__name__}: {exc}"

        t = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            for done, error in pool.map(one, range(args.requests)):
                if error:
                    errors[error] += 1
                    continue
                seconds, result = done
                latencies.append(seconds)
                if result.differences(reference) or result.topology is None:
                    lost += 1
        wall = time.monotonic() - t
        return LoadRun(latencies, errors, lost, wall, warmup, rss_before, rss())
    finally:
        client.close()


def print_run(run: LoadRun) -> None:
    print(f"latency p50 {run.percentile(50):.3f} s  p95 {run.percentile(95):.3f} s  "
          f"max {max(run.latencies, default=float('nan')):.3f} s")
    print(f"throughput {run.throughput:.2f} requests/s over {run.wall_s:.1f} s")
    print(f"ok {len(run.latencies)}, errors {sum(run.errors.values())}, lost or different results {run.lost}")
    for error, count in run.errors.most_common():
        print(f"  {count} × {error}")


# ---- Ray Serve ----------------------------------------------------------------------------------
def ray_processes() -> dict[str, list[int]]:
    """Ray Serve's processes on this machine by role (Ray names them ray::ServeReplica:APP:DEPLOYMENT)."""
    roles: dict[str, list[int]] = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        for marker, role in (("ServeReplica:topos:engine-", "engine replica"),
                             ("ServeReplica:topos:HeadGeneratorIngress", "ingress"), ("ProxyActor", "proxy")):
            if title.startswith("ray::") and marker in title:
                roles.setdefault(role, []).append(int(cmdline.parent.name))
    return roles


def ray_rss() -> dict[str, list[float]]:
    rss = {}
    for role, pids in ray_processes().items():
        values = []
        for pid in pids:
            try:
                values.append(rss_mib(pid))
            except (OSError, RuntimeError):
                pass
        rss[role] = sorted(values)
    return rss


def run_on_ray(args, image: bytes) -> int:
    import ray
    from ray import serve
    from topos_server.serving import ray_app

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=max(args.replicas), include_dashboard=False, log_to_driver=False)
    port = free_port()
    rows = []
    try:
        for replicas in args.replicas:
            t = time.monotonic()
            ray_app.deploy(ray_app.RayServeOptions(engines=[args.engine], device=args.device, replicas=replicas,
                                                   max_queued=args.max_queued, max_batch=args.max_batch), port)
            wait_serving(f"127.0.0.1:{port}", None, timeout=300)
            startup = time.monotonic() - t
            run = run_load(f"127.0.0.1:{port}", image, args.engine, args, rss=ray_rss)
            print(f"\n== Ray Serve, {replicas} replica(s) of {args.engine}: {args.requests} requests at concurrency "
                  f"{args.concurrency}, texture {args.texture_size}, {os.cpu_count()} CPU cores")
            print(f"deploy {startup:.1f} s, warm-up request {run.warmup_s:.2f} s")
            print_run(run)
            for role, values in run.rss_after.items():
                before = run.rss_before.get(role, [])
                print(f"RSS {role}: " + ", ".join(f"{a:.0f}" for a in values) + " MiB after the run"
                      + (" (after warm-up: " + ", ".join(f"{b:.0f}" for b in before) + ")" if before else ""))
            rows.append((replicas, run))
            serve.delete(ray_app.APP_NAME)
    finally:
        serve.shutdown()
        ray.shutdown()
    print("\n| replicas | ok / errors / lost | throughput | p50 | p95 | RSS per engine replica |")
    print("|---|---|---|---|---|---|")
    for replicas, run in rows:
        rss = ", ".join(f"{v:.0f}" for v in run.rss_after.get("engine replica", []))
        print(f"| {replicas} | {len(run.latencies)} / {sum(run.errors.values())} / {run.lost} | "
              f"{run.throughput:.2f} req/s | {run.percentile(50):.2f} s | {run.percentile(95):.2f} s | {rss} MiB |")
    return 0 if all(not run.errors and not run.lost for _, run in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
