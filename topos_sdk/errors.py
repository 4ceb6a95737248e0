"""Exceptions the SDK raises. Every one carries a message meant for a person."""

from __future__ import annotations


class ToposError(Exception):
    """Base of every error TOPOS raises on purpose."""


class ObjFormatError(ToposError):
    """A malformed OBJ file; the message names the file and the line."""

    def __init__(self, path: str, line: int, message: str):
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class TopologyMismatchError(ToposError):
    """A layer or result does not match the expected reference topology."""


class AssetError(ToposError):
    """A head asset folder is missing, unreadable or malformed."""


class InvalidInputError(ToposError):
    """Bad input from the caller (image, options, file)."""


class NoFaceFound(InvalidInputError):
    """The portrait holds no detectable face."""


class EngineUnavailable(InvalidInputError):
    """The engine name is unknown, or the engine is not served / not installed."""


class RemoteError(ToposError):
    """A TOPOS server answered with an error status. ``code`` is the gRPC status name
    (``"UNAVAILABLE"``, ...), ``request_id`` the server's id of the request (for its logs)."""

    def __init__(self, message: str, code: str = "UNKNOWN", request_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class ServerUnavailable(RemoteError):
    """The server cannot be reached or is shutting down (after the client's retries)."""


class Unauthenticated(RemoteError):
    """The server needs a bearer token and none or a wrong one was given."""


class ServerBusy(RemoteError):
    """The server's queue is full; try again later or lower the concurrency."""


class DeadlineExceeded(RemoteError):
    """The request did not finish within its deadline."""


class RequestCancelled(RemoteError):
    """The request was cancelled (by the caller or the server)."""
