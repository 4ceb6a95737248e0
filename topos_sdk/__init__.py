"""TOPOS SDK: reference topology, head results and USD head assets (numpy + grpcio + protobuf;
``pxr`` is imported only by :mod:`topos_sdk.usd`, from usd-core or the DCC's own USD)."""

from .errors import (AssetError, InvalidInputError, NoFaceFound, ObjFormatError, ToposError,
                     TopologyMismatchError)
from .head_result import Camera, HeadResult, Provenance, TextureMap
from .topology import LandmarkSet, MaterialRange, MeshPart, ReferenceTopology, SubMesh

__version__ = "0.1.0"

__all__ = [
    "AssetError", "Camera", "Client", "HeadResult", "InvalidInputError", "LandmarkSet", "MaterialRange", "MeshPart",
    "NoFaceFound", "ObjFormatError", "Provenance", "ReferenceTopology", "SubMesh", "TextureMap",
    "ToposError", "TopologyMismatchError",
]


def __getattr__(name: str):
    # the gRPC client loads grpcio and the generated stubs only when it is used
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(f"module 'topos_sdk' has no attribute {name!r}")
