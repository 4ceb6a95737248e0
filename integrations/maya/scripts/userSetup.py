"""Maya runs every userSetup.py on its script path at start-up: add the TOPOS shelf once the UI exists."""

import maya.utils

maya.utils.executeDeferred("import topos_maya.shelf; topos_maya.shelf.ensure_shelf()")
