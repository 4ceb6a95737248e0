"""What the artist sees when something goes wrong: one readable dialog (the details go to the script editor)."""

from __future__ import annotations

import traceback

from maya import cmds

TITLE = "TOPOS"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def show_failure(what: str, exc: BaseException) -> None:
    """``what`` failed because of ``exc``: a modal dialog with one line, the traceback printed for TDs."""
    message = f"{what}:\n{one_line(exc)}"
    print("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    cmds.confirmDialog(title=TITLE, message=message, button=["OK"], defaultButton="OK", icon="critical")


def show_cancelled() -> None:
    cmds.warning("TOPOS: generation cancelled")
