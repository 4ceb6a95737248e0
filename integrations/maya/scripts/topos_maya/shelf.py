"""The TOPOS shelf: one button that opens the dialog. Created with maya.cmds at start-up, idempotently."""

from __future__ import annotations

import maya.mel
from maya import cmds

SHELF = "TOPOS"
BUTTON_TAG = "topos_generate_head"  # docTag: how we recognise our button on a saved shelf
BUTTON_COMMAND = "import topos_maya; topos_maya.show_dialog()"


def ensure_shelf() -> str:
    """Make sure the TOPOS shelf with the Generate button exists; returns the button."""
    if cmds.about(batch=True):
        return ""
    top = maya.mel.eval("$topos_tmp = $gShelfTopLevel")
    if not cmds.shelfLayout(SHELF, exists=True):
        cmds.shelfLayout(SHELF, parent=top)
    for child in cmds.shelfLayout(SHELF, q=True, childArray=True) or []:
        if cmds.shelfButton(child, exists=True) and cmds.shelfButton(child, q=True, docTag=True) == BUTTON_TAG:
            return child
    return cmds.shelfButton(parent=SHELF, label="Head", imageOverlayLabel="TOPOS", image1="commandButton.png", docTag=BUTTON_TAG, sourceType="python",
                            command=BUTTON_COMMAND, annotation="TOPOS: generate a head from a portrait")
