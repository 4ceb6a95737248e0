"""Where everything lives in a head asset: file names, prim paths, metadata keys (one place).

::

    NAME/
      NAME.usda        root: defaultPrim /NAME (Xform, kind=component, assetInfo), payload → payload.usda
      payload.usda     subLayers = [mtl.usda, geo.usdc]
      geo.usdc         /NAME/Geom (SkelRoot with blendshapes, Scope without): one Mesh per mesh part,
                       /NAME/Geom/Skel + /NAME/Geom/Anim (UsdSkel), /NAME/Camera (source camera)
      mtl.usda         /NAME/Looks/<material>: UsdPreviewSurface + MaterialX networks; bindings as overs
      textures/        <map>.png, or <map>.<UDIM>.png when a map has several tiles (or a tile other than 1001)
      thumbnail.png    when a preview renderer is available
      NAME.usdz        optional package of all of the above
"""

from __future__ import annotations

import re

ROOT_SUFFIX = ".usda"
PAYLOAD_FILE = "payload.usda"
GEO_FILE = "geo.usdc"
MTL_FILE = "mtl.usda"
TEXTURE_DIR = "textures"
THUMBNAIL_FILE = "thumbnail.png"
UDIM_TOKEN = "<UDIM>"

METERS_PER_UNIT = 0.01
UP_AXIS = "Y"

GEOM_SCOPE = "Geom"
LOOKS_SCOPE = "Looks"
CAMERA_PRIM = "Camera"
VIEW_CAMERAS_SCOPE = "ViewCameras"  # multi-view assets: ViewCameras/view0, view1, … (one per photo)
SKELETON_PRIM = "Skel"
ANIMATION_PRIM = "Anim"
ROOT_JOINT = "root"

# metadata keys (customData on prims, assetInfo on the root prim)
TOPOLOGY_ID_KEY = "topos:topologyId"
MESH_NAME_KEY = "topos:mesh"
VERTEX_START_KEY = "topos:vertexStart"
FACE_START_KEY = "topos:faceStart"
SUBMESHES_KEY = "topos:submeshes"  # JSON list of SubMesh fields
MATERIAL_NAME_KEY = "topos:materialName"
CAMERA_KEY = "topos:camera"
PROVENANCE_KEY = "topos:provenance"  # JSON
EXPRESSION_WEIGHTS_KEY = "topos:expressionWeights"  # JSON, exact doubles in order
TEXTURES_KEY = "topos:textures"  # JSON: name → {colorSpace, file, tiles, dtype, channels}
BLENDSHAPE_NAMES_KEY = "topos:blendShapeNames"
UV_COUNT_KEY = "topos:uvCount"

VERTEX_ID_PRIMVAR = "topos:vertexId"
ST_VALUE_IDS_ATTR = "topos:stValueIds"  # global uv id of each st value

MATERIAL_FAMILY = "materialBind"
PART_FAMILY = "part"
PART_SUBSET_PREFIX = "part_"

_NAME_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def check_asset_name(name: str) -> str:
    """Asset (folder and file) names: letters, digits, ``_ . -``; no path separators."""
    if not name or not _NAME_OK.match(name) or name.endswith((".usda", ".usdz")):
        raise ValueError(f"asset name {name!r}: use letters, digits, '_', '.', '-' (no path separators)")
    return name


def texture_file(map_name: str, tiles) -> str:
    """Relative asset path of a texture map: UDIM pattern when it has several tiles or not just 1001."""
    tiles = sorted(tiles)
    if tiles == [1001]:
        return f"{TEXTURE_DIR}/{map_name}.png"
    return f"{TEXTURE_DIR}/{map_name}.{UDIM_TOKEN}.png"


def tile_file(pattern: str, tile: int) -> str:
    return pattern.replace(UDIM_TOKEN, str(tile))
