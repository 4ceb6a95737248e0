"""Generated protobuf / gRPC stubs of the wire contract (``proto/topos/v1/topos.proto``).

Committed; regenerate with ``python -m topos_sdk._proto.regenerate`` after editing the .proto
(``tests/test_grpc_stubs.py`` fails when they are stale). Do not edit the generated files.
"""
