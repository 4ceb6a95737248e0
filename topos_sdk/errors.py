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
