"""The committed protobuf/gRPC stubs match proto/topos/v1/topos.proto, and the SDK client path stays
light: importing topos_sdk and running the client never imports torch and works without grpcio-tools."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from topos_sdk._proto import regenerate


def test_committed_stubs_are_current():
    stale = regenerate.stale_stubs()
    assert stale == [], f"stale stubs {stale}: run `python -m topos_sdk._proto.regenerate` and commit them"


def test_generated_grpc_module_imports_its_messages_relatively():
    text = (regenerate.STUB_DIR / "topos_pb2_grpc.py").read_text()
    assert "from . import topos_pb2" in text and "from topos.v1" not in text


def test_client_path_never_imports_torch(tmp_path):
    from grpc_synthetic_engine import SyntheticEngine
    from test_grpc_server import PORTRAIT, config, rich_topology
    from topos_server.serving.server import start_in_thread

    (tmp_path / "portrait.png").write_bytes(PORTRAIT)
    script = textwrap.dedent("""
        import sys
        sys.modules["grpc_tools"] = None  # as on a machine without grpcio-tools (grpc imports it if present)
        import topos_sdk
        from topos_sdk.client import Client
        with Client(sys.argv[1], retries=0) as client:
            head = client.generate(sys.argv[2], seed=1, texture_size=512)
            info = client.server_info()
        heavy = sorted(m for m in ("torch", "pxr", "cv2", "PIL", "scipy", "topos_server") if m in sys.modules)
        print(head.num_points, head.topology.topology_id, info["default_engine"], "heavy:", heavy)
    """)
    engine = SyntheticEngine(rich_topology())
    with start_in_thread(config(), {"synthetic": engine}) as srv:
        out = subprocess.run([sys.executable, "-c", script, srv.address, str(tmp_path / "portrait.png")],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(engine.topology.num_points), engine.topology.topology_id, "synthetic", "heavy:", "[]"]
