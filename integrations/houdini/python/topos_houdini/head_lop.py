"""The ``topos::head::1.0`` LOP: a Generate button that writes a head asset, and a cook that references it.

Units: a TOPOS asset is in centimetres (``metersPerUnit`` 0.01) and USD does not rescale what it references,
so the cook puts a scale op on the referencing prim, asset metersPerUnit / stage metersPerUnit
(``convert_units``, on by default). A Solaris stage that authors no ``metersPerUnit`` is in metres.
"""

from __future__ import annotations

import os

import hou

from .generation_cache import GenerationKey, cached_asset, generate_or_reuse, server_address

UNIT_SCALE_SUFFIX = "toposUnits"  # the op is xformOp:scale:toposUnits
SOLARIS_METERS_PER_UNIT = 1.0     # Houdini's scene unit when the stage authors none
PORTABLE_ROOTS = ("HIP", "JOB")   # asset_file is stored relative to these when it lies under one


def generation_key(node) -> GenerationKey:
    topology = node.parm("topology")  # absent on nodes saved before the parameter existed
    return GenerationKey.for_portrait(_portrait(node), node.evalParm("seed"), node.evalParm("engine"),
                                      int(node.evalParm("texture_size")),
                                      topology.evalAsString() if topology is not None else "")


def topology_menu() -> list[str]:
    """The Topology parameter's menu (token, label pairs): the reference, then the studio topologies registered
    in this machine's asset cache (a server's own can be typed in)."""
    from topos_sdk.studio_topologies import registered_topology_names

    items = ["", "Reference (ICT-FaceKit)"]
    for name in registered_topology_names():
        items += [name, name]
    return items


def _portrait(node) -> str:
    portrait = node.parm("portrait").evalAsString().strip()
    if not portrait:
        raise ValueError("choose a portrait image first")
    if not os.path.isfile(portrait):
        raise ValueError(f"{portrait}: no such file")
    return portrait


def generate(node) -> str | None:
    """Button callback: generate (or find in the cache) the head for the current parameters.

    Sets ``asset_file`` to the asset layer ($HIP/$JOB-relative when it lies there); returns the absolute
    path, or ``None`` when cancelled or failed (the failure is shown in one dialog, or raised as a node
    error without a UI).
    """
    try:
        portrait = _portrait(node)
        key = generation_key(node)
        out_dir = node.parm("output_folder").evalAsString().strip()
        if not out_dir:
            raise ValueError("choose an output folder first")
        path = cached_asset(out_dir, portrait, key)
        if path is None:
            server = server_address(node.parm("server").evalAsString())
            with hou.InterruptableOperation("TOPOS: generating head", long_operation_name="TOPOS: generating head",
                                            open_interrupt_dialog=True) as operation:
                path = generate_or_reuse(portrait, out_dir, key, server, on_progress=lambda stage, fraction:
                                         operation.updateLongProgress(fraction, stage))
    except hou.OperationInterrupted:
        return None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
        _report_failure(node, exc)
        return None
    node.parm("asset_file").set(portable_path(os.fspath(path)))
    node.parm("asset_key").set(key.digest)
    return os.fspath(path)


def portable_path(path: str) -> str:
    """``path`` as ``$HIP/...`` or ``$JOB/...`` when it lies under one (the deepest wins), forward slashes.

    A hip file moved with its heads, or opened on another OS, still finds them.
    """
    absolute = os.path.abspath(path)
    best = None
    for variable in PORTABLE_ROOTS:
        root = hou.getenv(variable)
        if not root:
            continue
        root = os.path.abspath(root)
        try:
            relative = os.path.relpath(absolute, root)
        except ValueError:  # another drive on Windows
            continue
        inside = relative != os.curdir and not relative.startswith(os.pardir)
        if inside and os.path.normcase(os.path.join(root, relative)) == os.path.normcase(absolute):
            if best is None or len(root) > len(best[1]):
                best = (variable, root, relative)
    if best is None:
        return absolute.replace("\\", "/")
    variable, _, relative = best
    return f"${variable}/" + relative.replace("\\", "/")


def _report_failure(node, exc: Exception) -> None:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = f"{node.path()}: could not generate the head:\n{message}"
    if hou.isUIAvailable():
        hou.ui.displayMessage(message, severity=hou.severityType.Error, title="TOPOS")
    else:
        raise hou.NodeError(message)


def cook(node) -> None:
    """PythonCook: reference the generated asset layer at ``primpath``, scaled into the stage's units."""
    asset_file = node.parm("asset_file").evalAsString().strip()
    if not asset_file:
        raise hou.NodeWarning("no head yet: set the portrait and press Generate")
    stage = node.editableStage()
    prim = stage.DefinePrim(node.parm("primpath").evalAsString().strip() or "/head")
    prim.GetReferences().AddReference(asset_file)
    if node.evalParm("convert_units"):
        scale_to_stage_units(prim, asset_file)
    stale = _parameters_changed_since_generate(node)
    if stale:
        raise hou.NodeWarning(stale)


def unit_scale(stage, asset_file: str) -> float:
    """Factor from the asset's units to the stage's: asset metersPerUnit / stage metersPerUnit."""
    from pxr import Sdf, UsdGeom

    layer = Sdf.Layer.FindOrOpen(asset_file)
    if layer is None:
        raise hou.NodeError(f"cannot open {asset_file}")
    asset_mpu = (layer.pseudoRoot.GetInfo(UsdGeom.Tokens.metersPerUnit)
                 if layer.pseudoRoot.HasInfo(UsdGeom.Tokens.metersPerUnit) else UsdGeom.LinearUnits.centimeters)
    stage_mpu = (UsdGeom.GetStageMetersPerUnit(stage) if UsdGeom.StageHasAuthoredMetersPerUnit(stage)
                 else SOLARIS_METERS_PER_UNIT)
    return float(asset_mpu) / float(stage_mpu)


def scale_to_stage_units(prim, asset_file: str) -> float:
    """Put the unit scale on the referencing prim as the outermost op (the asset's own ops stay inside it)."""
    from pxr import Gf, UsdGeom

    factor = unit_scale(prim.GetStage(), asset_file)
    if UsdGeom.LinearUnitsAre(factor, 1.0):
        return 1.0
    xformable = UsdGeom.Xformable(prim)
    existing = xformable.GetOrderedXformOps()
    op = xformable.AddScaleOp(UsdGeom.XformOp.PrecisionDouble, UNIT_SCALE_SUFFIX)
    op.Set(Gf.Vec3d(factor))
    xformable.SetXformOpOrder([op] + list(existing), xformable.GetResetXformStack())
    return factor


def _parameters_changed_since_generate(node) -> str:
    recorded = node.parm("asset_key").evalAsString()
    try:
        current = generation_key(node).digest
    except (OSError, ValueError):
        return ""
    if recorded and recorded != current:
        return "parameters changed since the last Generate: press Generate to update the head"
    return ""
