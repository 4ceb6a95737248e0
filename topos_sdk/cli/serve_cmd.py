"""``topos serve``: run the gRPC server (needs the server extra: torch, grpcio-health-checking, ...)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve head generation over gRPC",
        description="Serve topos.v1.HeadGenerator over gRPC. SIGTERM/SIGINT drain gracefully: health goes "
                    "NOT_SERVING, new requests are refused, requests in flight get --grace seconds, exit 0 "
                    "(1 when the grace ran out or a second signal cancelled them).")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=50051, help="port (default 50051; 0 = any free port)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--engine", action="append", dest="engines", metavar="NAME",
                   help="engine to serve (repeatable; the first is the default; default classic)")
    p.add_argument("--max-batch", type=int, default=4, help="most requests per engine call (default 4)")
    p.add_argument("--max-batch-wait", type=float, default=0.01, metavar="SECONDS",
                   help="how long to wait for a batch to fill (default 0.01)")
    p.add_argument("--max-queue", type=int, default=32,
                   help="waiting requests beyond this get RESOURCE_EXHAUSTED (default 32)")
    p.add_argument("--token-file", help="file holding the bearer token clients must send")
    p.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key: serve TLS)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="how long requests in flight may finish after SIGTERM (default 30)")
    p.add_argument("--max-image-mb", type=float, default=16.0, help="largest accepted image in MiB (default 16)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from topos_server.serving.server import ServerConfig, serve
    from topos_server.serving.service import Limits

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
