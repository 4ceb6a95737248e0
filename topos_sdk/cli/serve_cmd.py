"""``topos serve``: run the gRPC server (needs the server extra: torch, grpcio-health-checking, ...), or with
``--ray [ADDRESS]`` deploy it as a Ray Serve application (needs the ray extra)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve head generation over gRPC",
        description="Serve topos.v1.HeadGenerator over gRPC. SIGTERM/SIGINT drain gracefully: health goes "
                    "NOT_SERVING, new requests are refused, requests in flight get --grace seconds, exit 0 "
                    "(1 when the grace ran out or a second signal cancelled them). With --ray: the same contract "
                    "through Ray Serve's gRPC proxy, one deployment per engine, replicas on every GPU of the cluster.")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all; not with --ray, whose "
                                  "proxy listens on every interface)")
    p.add_argument("--port", type=int, default=50051, help="port (default 50051; 0 = any free port)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--engine", action="append", dest="engines", metavar="NAME",
                   help="engine to serve (repeatable; the first is the default; default classic)")
    p.add_argument("--max-batch", type=int, default=4, help="most requests per engine call (default 4)")
    p.add_argument("--max-batch-wait", type=float, default=0.01, metavar="SECONDS",
                   help="how long to wait for a batch to fill (default 0.01)")
    p.add_argument("--max-queue", type=int,
                   help="waiting requests beyond this get RESOURCE_EXHAUSTED (default 32; with --ray: --max-queued)")
    p.add_argument("--token-file", help="file holding the bearer token clients must send")
    p.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key: serve TLS)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="how long requests in flight may finish after SIGTERM (default 30)")
    p.add_argument("--max-image-mb", type=float, default=16.0, help="largest accepted image in MiB (default 16)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    ray = p.add_argument_group("Ray Serve (pip install \"topos[ray]\")")
    ray.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS",
                     help="deploy on Ray Serve: join the cluster at ADDRESS (e.g. auto, ray://head:10001) or, "
                          "without one, start a local Ray instance")
    ray.add_argument("--replicas", type=int, help="replicas per engine (default 1)")
    ray.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale each engine between MIN and MAX replicas")
    ray.add_argument("--max-queued", type=int,
                     help="requests waiting for a replica beyond this get RESOURCE_EXHAUSTED (default 32)")
    p.set_defaults(handler=run)


LOCAL_RAY = "local"


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from topos_server.serving.server import ServerConfig, serve
    from topos_server.serving.service import Limits

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.ray is not None:
        return run_on_ray(args)
    ray_only = [flag for flag, value in (("--replicas", args.replicas), ("--autoscale", args.autoscale),
                                         ("--max-queued", args.max_queued)) if value is not None]
    if ray_only:
        raise ValueError(f"{', '.join(ray_only)} go with --ray")
    args.host = args.host or "127.0.0.1"
    args.max_queue = 32 if args.max_queue is None else args.max_queue
    if args.max_batch < 1 or args.max_queue < 1:
        raise ValueError("--max-batch and --max-queue must be at least 1")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    max_image = int(args.max_image_mb * 2**20)
    config = ServerConfig(
        host=args.host, port=args.port, device=args.device, engines=args.engines or ["classic"],
        max_batch=args.max_batch, max_queue=args.max_queue, max_batch_wait_s=args.max_batch_wait,
        token=ServerConfig.read_token(args.token_file) if args.token_file else None,
        tls_cert=Path(args.tls_cert).read_bytes() if args.tls_cert else None,
        tls_key=Path(args.tls_key).read_bytes() if args.tls_key else None,
        metrics_port=args.metrics_port, grace_s=args.grace,
        limits=Limits(max_image_bytes=max_image, max_receive_message_bytes=max_image + (1 << 20)))
    return serve(config)


def run_on_ray(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    try:
        from topos_server.serving.ray_app import RayServeOptions, parse_autoscale, serve_on_ray
    except ImportError as exc:
        raise ValueError(f"--ray needs Ray Serve: pip install \"topos[ray]\" ({exc})") from None

    unsupported = [flag for flag, value in (("--host", args.host), ("--max-queue", args.max_queue),
                                            ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key),
                                            ("--metrics-port", args.metrics_port)) if value is not None]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)} do not apply with --ray: Ray Serve's gRPC proxy listens on "
                         f"every interface without TLS (put TLS on the load balancer in front of it), Ray exports "
                         f"its own metrics, and --max-queued bounds the queue")
    if args.replicas is not None and args.autoscale is not None:
        raise ValueError("--replicas and --autoscale exclude each other")
    token_file = None
    if args.token_file:
        token_file = str(Path(args.token_file).resolve())
        from topos_server.serving.server import ServerConfig

        ServerConfig.read_token(token_file)  # a bad file fails here, not in a replica
    options = RayServeOptions(
        engines=args.engines or ["classic"], device=args.device, replicas=args.replicas or 1,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
        max_queued=32 if args.max_queued is None else args.max_queued, max_batch=args.max_batch,
        max_batch_wait_s=args.max_batch_wait, token_file=token_file, max_image_bytes=int(args.max_image_mb * 2**20),
        grace_s=args.grace)
    options.check()
    logging.getLogger("topos.server").warning(
        "Ray Serve's gRPC proxy listens on every interface (port %d)%s", args.port,
        "" if token_file else "; without --token-file anyone who reaches it can generate")
    return serve_on_ray(options, None if args.ray == LOCAL_RAY else args.ray, args.port)
