"""Fake ``maya.mel``."""

from . import session as _session

GLOBALS = {"$gMainProgressBar": "MayaWindow|mainProgressBar", "$gShelfTopLevel": "MayaWindow|ShelfLayout"}


def eval(command: str):  # noqa: A001 - Maya's name
    _session.current.record("mel.eval", (command,), {})
    for name, value in GLOBALS.items():
        if name in command:
            return value
    return None
