"""``topos.v1`` messages (``topos_pb2``) and service stubs (``topos_pb2_grpc``); generated, do not edit."""
