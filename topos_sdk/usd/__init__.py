"""USD head assets (the only part of the SDK that imports ``pxr``: from usd-core or the DCC's own USD).

- :func:`write_head_asset` — ``HeadResult`` → ``NAME/NAME.usda`` asset folder (atomic),
- :func:`read_head_asset` — folder / ``NAME.usda`` / ``.usdz`` → ``HeadResult``,
- :func:`verify_topology` — what differs between an asset's meshes and a ``ReferenceTopology``,
- :func:`validate_asset` — ``pxr.UsdValidation`` errors plus TOPOS rules, one line each.

The asset layout is described in :mod:`topos_sdk.usd.layout`. ``pxr`` is imported on first use of
these functions, so ``topos_sdk.usd.png_io`` and ``layout`` work without USD.
"""

from __future__ import annotations

_EXPORTS = {
    "write_head_asset": "asset_writer",
    "read_head_asset": "asset_reader",
    "verify_topology": "validation",
    "validate_asset": "validation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import pxr  # noqa: F401
    except ImportError as exc:
        raise ImportError("topos_sdk.usd needs OpenUSD's Python module 'pxr': `pip install topos[usd]` "
                          "(usd-core), or run inside Maya/Houdini, which bring their own") from exc
    import importlib

    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, name)
