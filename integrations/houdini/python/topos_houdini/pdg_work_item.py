"""TOPs/PDG entry point: one head per work item.

In a Python Script TOP (in process)::

    from topos_houdini import pdg_work_item
    pdg_work_item.generate(work_item)

Out of process (a job script on a farm node)::

    from pdgjson import WorkItem
    from topos_houdini import pdg_work_item
    pdg_work_item.generate(WorkItem.fromJobEnvironment())

The portrait is the string attribute ``portrait`` or else the work item's first input file; optional
attributes ``topos_output`` (default ``$HIP/topos``), ``seed``, ``engine``, ``texture_size``, ``server``,
``topology`` (a studio topology; default the reference).
The asset layer is added as an output file tagged ``file/usd``. Generation is cached like the TOPOS Head
LOP's, so a re-cooked work item reuses the head on disk.
"""

from __future__ import annotations

import os

from .generation_cache import GenerationKey, generate_or_reuse, server_address

OUTPUT_TAG = "file/usd"
IMAGE_TAG_PREFIX = "file/image"


def attribute(work_item, name: str, default=None):
    """A work item attribute's first value, or ``default`` when the item has no such attribute."""
    try:
        value = work_item.attribValue(name)
    except (AttributeError, KeyError, TypeError, ValueError):
        return default
    return default if value is None or value == "" else value


def portrait_of(work_item) -> str:
    portrait = attribute(work_item, "portrait")
    if portrait:
        return str(portrait)
    files = list(getattr(work_item, "inputFiles", None) or [])
    images = [f for f in files if str(getattr(f, "tag", "")).startswith(IMAGE_TAG_PREFIX)] or files
    if not images:
        raise ValueError("work item has no 'portrait' attribute and no input file")
    return str(images[0].path)


def generate(work_item) -> str:
    """Generate (or reuse) the head for ``work_item``; reports the asset as its ``file/usd`` output."""
    portrait = portrait_of(work_item)
    default_out = os.path.join(os.environ.get("HIP", os.getcwd()), "topos")
    out_dir = str(attribute(work_item, "topos_output", default_out))
    try:
        key = GenerationKey.for_portrait(portrait, int(attribute(work_item, "seed", 0)),
                                         str(attribute(work_item, "engine", "classic")),
                                         int(attribute(work_item, "texture_size", 1024)),
                                         str(attribute(work_item, "topology", "")))
        asset = os.fspath(generate_or_reuse(portrait, out_dir, key,
                                            server_address(str(attribute(work_item, "server", "")))))
    except Exception as exc:
        work_item.addError(f"TOPOS: {portrait}: {exc}")
        raise
    work_item.addOutputFile(asset, OUTPUT_TAG, own=True)
    return asset
