"""The TOPOS shelf: one button that opens the dialog. Created with maya.cmds at start-up, idempotently.

Maya saves shelves on exit (``shelf_TOPOS.mel``) and loads them before ``userSetup.py`` runs; what it saves
does not reliably keep a button's ``docTag``, so our button is recognised by its command. Extra copies a
previous version left behind are removed.
"""

from __future__ import annotations

import maya.mel
from maya import cmds

SHELF = "TOPOS"
BUTTON_TAG = "topos_generate_head"
BUTTON_COMMAND = "import topos_maya; topos_maya.show_dialog()"
COMMAND_MARK = "topos_maya.show_dialog"  # any button whose command calls this is ours


def is_our_button(control: str) -> bool:
    if not cmds.shelfButton(control, exists=True):
        return False
    command = cmds.shelfButton(control, q=True, command=True) or ""
    return COMMAND_MARK in command or cmds.shelfButton(control, q=True, docTag=True) == BUTTON_TAG


def ensure_shelf() -> str:
    """Make sure the TOPOS shelf has exactly one Head button; returns it."""
    if cmds.about(batch=True):
        return ""
    top = maya.mel.eval("$topos_tmp = $gShelfTopLevel")
    if not cmds.shelfLayout(SHELF, exists=True):
        cmds.shelfLayout(SHELF, parent=top)
    ours = [c for c in cmds.shelfLayout(SHELF, q=True, childArray=True) or [] if is_our_button(c)]
    for duplicate in ours[1:]:
        cmds.deleteUI(duplicate, control=True)
    if ours:
        return ours[0]
    return cmds.shelfButton(parent=SHELF, label="Head", imageOverlayLabel="TOPOS", image1="commandButton.png",
                            docTag=BUTTON_TAG, sourceType="python", command=BUTTON_COMMAND,
                            annotation="TOPOS: generate a head from a portrait")
