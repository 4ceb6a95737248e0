"""TOPOS for Maya: a shelf button and a dialog that call ``topos_sdk.generate.generate_head`` and bring
the USD asset in (``mayaUSDImport`` or a live ``mayaUsdProxyShape``). No geometry code lives here."""

__version__ = "0.1.0"


def show_dialog():
    """What the shelf button runs."""
    from . import dialog

    return dialog.show()
