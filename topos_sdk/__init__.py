"""TOPOS SDK: reference topology, head results and USD head assets (numpy + grpcio + protobuf;
``pxr`` is imported only by :mod:`topos_sdk.usd`, from usd-core or the DCC's own USD)."""

from .errors import (AssetError, InvalidInputError, NoFaceFound, ObjFormatError, ToposError,
                     TopologyMismatchError)
from .head_result import Camera, HeadResult, Provenance, TextureMap
from .topology import LandmarkSet, MaterialRange, MeshPart, ReferenceTopology, SubMesh

__version__ = "0.1.0"

__all__ = [
    "AssetError", "Camera", "HeadResult", "InvalidInputError", "LandmarkSet", "MaterialRange", "MeshPart",
    "NoFaceFound", "ObjFormatError", "Provenance", "ReferenceTopology", "SubMesh", "TextureMap",
    "ToposError", "TopologyMismatchError",
]
