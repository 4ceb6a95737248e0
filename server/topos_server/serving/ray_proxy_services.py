"""What Ray Serve's gRPC proxy registers for TOPOS (``grpc_options.grpc_servicer_functions``).

The proxy imports these functions by path, calls them with a placeholder servicer and routes each
method of the registered services to the method of the same name on the application's ingress
deployment (``topos_server.serving.ray_app.HeadGeneratorIngress``).

Importing this module also makes the ``topos.v1`` messages picklable: the proxy pickles each request
message to hand it to a replica, and pickle finds a class by its ``__module__``, which for the
committed stubs is protoc's ``topos.v1.topos_pb2`` (not an importable module). A ``copyreg``
reducer sends the message as (name, serialized bytes) instead, rebuilt by :func:`message_from_bytes`.
"""

from __future__ import annotations

import copyreg

from grpc_health.v1 import health_pb2_grpc

from topos_sdk._proto.v1 import topos_pb2 as pb
from topos_sdk._proto.v1 import topos_pb2_grpc as pb_grpc


def message_from_bytes(message_name: str, data: bytes):
    """Rebuild a ``topos.v1`` message pickled by :func:`_reduce_message`."""
    return getattr(pb, message_name).FromString(data)


def _reduce_message(message):
    return message_from_bytes, (type(message).__name__, message.SerializeToString())


for _name in pb.DESCRIPTOR.message_types_by_name:
    copyreg.pickle(getattr(pb, _name), _reduce_message)


def add_head_generator_servicer(servicer, server) -> None:
    """topos.v1.HeadGenerator, served by the application's ingress deployment."""
    pb_grpc.add_HeadGeneratorServicer_to_server(servicer, server)


def add_health_servicer(servicer, server) -> None:
    """grpc.health.v1.Health (``Check``), so load balancers and ``grpc_health_probe`` work as against
    ``topos serve``; answered by the ingress deployment, without a token."""
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)


SERVICER_FUNCTIONS = [f"{__name__}.{add_head_generator_servicer.__name__}",
                      f"{__name__}.{add_health_servicer.__name__}"]
