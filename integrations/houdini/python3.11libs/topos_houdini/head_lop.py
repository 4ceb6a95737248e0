"""The ``topos_head`` LOP: a Generate button that writes a head asset, and a cook that references it."""

from __future__ import annotations

import os

import hou

from .generation_cache import GenerationKey, asset_name, cached_asset

LOCAL_SERVER = "local"


def generation_key(node) -> GenerationKey:
    return GenerationKey.for_portrait(_portrait(node), node.evalParm("seed"), node.evalParm("engine"),
                                      int(node.evalParm("texture_size")))


def _portrait(node) -> str:
    portrait = node.parm("portrait").evalAsString().strip()
    if not portrait:
        raise ValueError("choose a portrait image first")
    if not os.path.isfile(portrait):
        raise ValueError(f"{portrait}: no such file")
    return portrait


def generate(node) -> str | None:
    """Button callback: generate (or find in the cache) the head for the current parameters.

    Sets ``asset_file`` to the asset layer; returns its path, or ``None`` when cancelled or failed
    (the failure is shown in one dialog, or raised as a node error without a UI).
    """
    try:
        portrait = _portrait(node)
        key = generation_key(node)
        out_dir = node.parm("output_folder").evalAsString().strip()
        if not out_dir:
            raise ValueError("choose an output folder first")
        path = cached_asset(out_dir, portrait, key)
        if path is None:
            path = _generate(node, portrait, key, out_dir)
    except hou.OperationInterrupted:
        return None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
        _report_failure(node, exc)
        return None
    node.parm("asset_file").set(os.fspath(path))
    node.parm("asset_key").set(key.digest)
    return os.fspath(path)


def _generate(node, portrait: str, key: GenerationKey, out_dir: str):
    from topos_sdk.generate import generate_head

    server = node.parm("server").evalAsString().strip()
    with hou.InterruptableOperation("TOPOS: generating head", long_operation_name="TOPOS: generating head",
                                    open_interrupt_dialog=True) as operation:
        return generate_head(portrait, out_dir, server=None if server in ("", LOCAL_SERVER) else server,
                             engine=key.engine, seed=key.seed, texture_size=key.texture_size,
                             name=asset_name(portrait, key),
                             on_progress=lambda stage, fraction: operation.updateLongProgress(fraction, stage))


def _report_failure(node, exc: Exception) -> None:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = f"{node.path()}: could not generate the head:\n{message}"
    if hou.isUIAvailable():
        hou.ui.displayMessage(message, severity=hou.severityType.Error, title="TOPOS")
    else:
        raise hou.NodeError(message)


def cook(node) -> None:
    """PythonCook: reference the generated asset layer at ``primpath`` on the (input) stage."""
    asset_file = node.parm("asset_file").evalAsString().strip()
    if not asset_file:
        raise hou.NodeWarning("no head yet: set the portrait and press Generate")
    stage = node.editableStage()
    prim = stage.DefinePrim(node.parm("primpath").evalAsString().strip() or "/head")
    prim.GetReferences().AddReference(asset_file)
    stale = _parameters_changed_since_generate(node)
    if stale:
        raise hou.NodeWarning(stale)


def _parameters_changed_since_generate(node) -> str:
    recorded = node.parm("asset_key").evalAsString()
    try:
        current = generation_key(node).digest
    except (OSError, ValueError):
        return ""
    if recorded and recorded != current:
        return "parameters changed since the last Generate: press Generate to update the head"
    return ""
