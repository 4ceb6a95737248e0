"""``write_head_asset``: a ``HeadResult`` → a USD asset folder (see :mod:`topos_sdk.usd.layout`).

Textures: a map with one tile 1001 is written as ``textures/<map>.png``; a map with several tiles
(ICT skin spans 1001 face + 1002 back of head) as UDIM ``textures/<map>.<UDIM>.png`` — one file per
tile, which UsdUVTexture, MaterialX, Maya and Karma resolve. Each material's texture nodes name the
one tile file its UVs lie in, or the ``<UDIM>`` pattern if they span several (see
:mod:`topos_sdk.usd.materials`).

The whole folder is built in a temporary sibling and swapped in at the end
(:func:`topos_sdk.atomic_files.atomic_output_dir`): a failure leaves the previous asset untouched.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from pxr import Kind, Sdf, Usd, UsdGeom, UsdUtils

from .. import __version__
from ..atomic_files import atomic_output_dir
from ..errors import AssetError, TopologyMismatchError
from ..head_result import HeadResult
from . import layout, png_io
from .blendshapes import bind_mesh_blendshapes, define_skeleton
from .camera import define_camera
from .geometry import define_mesh, material_subset_name, mesh_path, prim_name, uv_owners
from .materials import (DEFAULT_MATERIAL, bind, define_material, material_tiles, textured_maps)


def write_head_asset(result: HeadResult, out_dir: str | os.PathLike, name: str | None = None, usdz: bool = False,
                     thumbnail: bool = True, overwrite: bool = True,
                     textured_materials: set[str] | None = None) -> Path:
    """Write ``out_dir/NAME/NAME.usda`` (+ payload, geo, mtl, textures, thumbnail, usdz); return its path.

    ``textured_materials`` overrides which materials sample the texture maps (default: by UDIM tile
    and name, see :mod:`topos_sdk.usd.materials`).
    """
    name = layout.check_asset_name(name or "head")
    topology = result.topology
    if topology is None:
        raise TopologyMismatchError("the HeadResult carries no topology object; attach it "
                                    "(e.g. AssetCache().ict_topology()) before writing USD")
    topology.require_points(result.points)
    folder = Path(out_dir) / name
    if folder.exists() and not overwrite:
        raise AssetError(f"{folder} exists (pass overwrite=True to replace it)")
    with atomic_output_dir(folder) as tmp, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        # the thumbnail renders and the PNGs compress in the pool (numpy and zlib release the GIL)
        # while this thread writes the layers
        rendering = pool.submit(_render_thumbnail, result) if thumbnail else None
        texture_files, pngs = _start_textures(result, tmp, pool)
        _write_layers(result, tmp, name, texture_files, textured_materials)
        thumb = rendering.result() if rendering is not None else None
        if thumb is not None:
            png_io.write_png(tmp / layout.THUMBNAIL_FILE, thumb)
        _write_root(result, tmp, name, texture_files, has_thumbnail=thumb is not None)
        for done in pngs:
            done.result()
        if usdz:
            _write_usdz(tmp, name)
    return folder / f"{name}{layout.ROOT_SUFFIX}"


def _render_thumbnail(result: HeadResult) -> np.ndarray | None:
    try:
        from ..preview import render_thumbnail
    except ImportError:
        return None
    return np.asarray(render_thumbnail(result))


def _start_textures(result: HeadResult, folder: Path, pool: ThreadPoolExecutor
                    ) -> tuple[dict[str, tuple[str, set[int]]], list[Future]]:
    """Start writing a PNG file for every map and tile in ``pool``; returns map name → (relative path
    pattern, tiles), and the writes to wait for."""
    if not result.textures:
        return {}, []
    (folder / layout.TEXTURE_DIR).mkdir()
    files, jobs = {}, []
    for map_name, tex in result.textures.items():
        if "." in layout.check_asset_name(map_name):
            raise ValueError(f"texture name {map_name!r}: no dots (the UDIM pattern uses them)")
        pattern = layout.texture_file(map_name, tex.tiles)
        files[map_name] = (pattern, set(tex.tiles))
        jobs += [(folder / layout.tile_file(pattern, tile), img) for tile, img in tex.tiles.items()]
    jobs.sort(key=lambda job: -job[1].nbytes)  # largest first: the pool's threads finish together
    return files, [pool.submit(png_io.write_png, path, img) for path, img in jobs]


def _write_layers(result: HeadResult, folder: Path, name: str, texture_files, textured_materials) -> None:
    topology = result.topology
    root = Sdf.Path.absoluteRootPath.AppendChild(_root_prim_name(name))
    geo_layer = Sdf.Layer.CreateNew(str(folder / layout.GEO_FILE))
    mtl_layer = Sdf.Layer.CreateNew(str(folder / layout.MTL_FILE))
    stage = Usd.Stage.CreateNew(str(folder / layout.PAYLOAD_FILE))
    stage.GetRootLayer().subLayerPaths = ["./" + layout.MTL_FILE, "./" + layout.GEO_FILE]
    _stage_metadata(stage, root)
    for layer in (geo_layer, mtl_layer):
        layer.defaultPrim = root.name
        layer.pseudoRoot.SetInfo(UsdGeom.Tokens.upAxis, layout.UP_AXIS)
        layer.pseudoRoot.SetInfo(UsdGeom.Tokens.metersPerUnit, layout.METERS_PER_UNIT)

    parts = topology.mesh_parts()
    has_shapes = result.blendshape_deltas is not None and len(result.blendshape_names) > 0

    stage.SetEditTarget(Usd.EditTarget(geo_layer))
    stage.OverridePrim(root)
    geom_path = root.AppendChild(layout.GEOM_SCOPE)
    if has_shapes:
        from pxr import UsdSkel
        UsdSkel.Root.Define(stage, geom_path)
        weights = np.array([result.expression_weights.get(n, 0.0) for n in result.blendshape_names], np.float32)
        skeleton, _ = define_skeleton(stage, geom_path, result.blendshape_names, weights)
    else:
        UsdGeom.Scope.Define(stage, geom_path)
    meshes = []
    for part, st_ids in zip(parts, uv_owners(topology, parts)):
        points = result.points[part.vertex_start:part.vertex_stop]
        mesh = define_mesh(stage, mesh_path(root, part.name), topology, part, points, st_ids)
        if has_shapes:
            bind_mesh_blendshapes(mesh, skeleton, result.blendshape_names,
                                  result.blendshape_deltas[:, part.vertex_start:part.vertex_stop])
        meshes.append((part, mesh))
    if result.camera is not None:
        define_camera(stage, root.AppendChild(layout.CAMERA_PRIM), result.camera, result.points)
    if result.view_cameras:
        views = root.AppendChild(layout.VIEW_CAMERAS_SCOPE)
        UsdGeom.Scope.Define(stage, views)
        for index, camera in enumerate(result.view_cameras):
            define_camera(stage, views.AppendChild(f"view{index}"), camera, result.points)

    stage.SetEditTarget(Usd.EditTarget(mtl_layer))
    stage.OverridePrim(root)
    looks = root.AppendChild(layout.LOOKS_SCOPE)
    UsdGeom.Scope.Define(stage, looks)
    tiles = material_tiles(topology)
    materials = {}
    for m in topology.materials:
        if m.name not in materials:
            maps = textured_maps(m.name, tiles.get(m.name, set()), texture_files, textured_materials)
            materials[m.name] = define_material(stage, looks, m.name, maps)
    for part, mesh in meshes:
        covered = sum(r.face_stop - r.face_start for r in part.materials)
        fallback = None
        if covered < part.face_stop - part.face_start:
            if DEFAULT_MATERIAL not in materials:
                materials[DEFAULT_MATERIAL] = define_material(stage, looks, DEFAULT_MATERIAL, {})
            fallback = materials[DEFAULT_MATERIAL]
        subsets = {material_subset_name(r.name): materials[r.name] for r in part.materials}
        bind(stage, mesh.GetPath(), subsets, fallback)

    geo_layer.Save()
    mtl_layer.Save()
    stage.GetRootLayer().Save()
    del stage  # release the layers before the folder is renamed


def _root_prim_name(name: str) -> str:
    return prim_name(name)


def _stage_metadata(stage: Usd.Stage, root: Sdf.Path) -> None:
    UsdGeom.SetStageUpAxis(stage, layout.UP_AXIS)
    UsdGeom.SetStageMetersPerUnit(stage, layout.METERS_PER_UNIT)
    stage.GetRootLayer().defaultPrim = root.name


def _write_root(result: HeadResult, folder: Path, name: str, texture_files, has_thumbnail: bool) -> None:
    root = Sdf.Path.absoluteRootPath.AppendChild(_root_prim_name(name))
    stage = Usd.Stage.CreateNew(str(folder / f"{name}{layout.ROOT_SUFFIX}"))
    _stage_metadata(stage, root)
    prim = UsdGeom.Xform.Define(stage, root).GetPrim()
    stage.SetDefaultPrim(prim)
    Usd.ModelAPI(prim).SetKind(Kind.Tokens.component)
    topos_info = {  # nested: key paths "topos:topologyId" etc. (":" is not allowed inside one key)
        layout.TOPOLOGY_ID_KEY: result.topology_id,
        layout.PROVENANCE_KEY: json.dumps(asdict(result.provenance), sort_keys=True, default=str),
        layout.EXPRESSION_WEIGHTS_KEY: json.dumps(result.expression_weights),
        layout.BLENDSHAPE_NAMES_KEY: json.dumps(list(result.blendshape_names)),
        layout.TEXTURES_KEY: json.dumps({
            k: {"colorSpace": tex.color_space, "file": texture_files[k][0], "tiles": sorted(tex.tiles)}
            for k, tex in result.textures.items()}),
    }
    info = {
        "name": name,
        "identifier": Sdf.AssetPath(f"./{name}{layout.ROOT_SUFFIX}"),
        "version": __version__,
        "topos": {key.split(":", 1)[1]: value for key, value in topos_info.items()},
    }
    if has_thumbnail:
        info["thumbnail"] = Sdf.AssetPath("./" + layout.THUMBNAIL_FILE)
    Usd.ModelAPI(prim).SetAssetInfo(info)
    prim.GetPayloads().AddPayload(Sdf.Payload("./" + layout.PAYLOAD_FILE))
    stage.GetRootLayer().Save()
    del stage


def _write_usdz(folder: Path, name: str) -> None:
    root_file = folder / f"{name}{layout.ROOT_SUFFIX}"
    usdz_file = folder / f"{name}.usdz"
    if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(root_file)), str(usdz_file)):
        raise AssetError(f"could not package {root_file} as usdz")
