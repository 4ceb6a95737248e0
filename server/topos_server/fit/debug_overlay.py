"""``topos generate --debug``: the fitted mesh's wireframe drawn through the asset's camera over the
portrait, plus the detected and the fitted landmarks, so a person can see how well the fit sits."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from topos_sdk import HeadResult
from topos_sdk.atomic_files import atomic_output_path
from topos_server.face import FaceLandmarker, load_image
from topos_server.fit.quality import projected_landmarks

WIRE_MESHES = ("skin",)


def draw_overlay(image: np.ndarray, result: HeadResult, detected_px: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB → the same image with the wireframe and landmarks drawn on it."""
    topo = result.topology
    posed = result.posed_points()
    proj = result.camera.project(posed)  # (N, 2)
    canvas = (image.astype(np.float32) * 0.75).astype(np.uint8)
    offsets = topo.face_offsets
    lines = []
    for part in topo.mesh_parts():
        if part.name not in WIRE_MESHES:
            continue
        idx = topo.face_vertex_indices[offsets[part.face_start]:offsets[part.face_stop]]
        counts = topo.face_vertex_counts[part.face_start:part.face_stop]
        starts = offsets[part.face_start:part.face_stop] - offsets[part.face_start]
        for k in range(counts.max()):  # edge k of every face: corner k → corner k+1 (mod count)
            has = counts > k
            a = idx[(starts + k)[has]]
            b = idx[starts[has] + (k + 1) % counts[has]]
            lines.append(np.stack([proj[a], proj[b]], axis=1))
    segs = np.round(np.concatenate(lines) * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    cv2.polylines(canvas, list(segs), False, (90, 200, 255), 1, cv2.LINE_AA, shift=2)
    if detected_px is not None:
        for x, y in np.round(detected_px[:, :2]).astype(int):
            cv2.circle(canvas, (int(x), int(y)), 1, (255, 60, 60), -1, cv2.LINE_AA)
    if "mediapipe" in topo.landmarks:
        for x, y in np.round(projected_landmarks(result)).astype(int):
            cv2.circle(canvas, (int(x), int(y)), 1, (60, 255, 60), -1, cv2.LINE_AA)
    return canvas


def write_debug_files(folder: Path, image_bytes: bytes, result: HeadResult) -> None:
    """Write ``overlay.png`` and ``landmarks.json`` (detected vs fitted, pixels) into ``folder``."""
    image = load_image(image_bytes)
    face_index = result.provenance.extra.get("face", {}).get("index")  # the face the head was made from
    detected = FaceLandmarker(refine_iris=True).detect(image, face_index=face_index).points
    folder.mkdir(parents=True, exist_ok=True)
    overlay = draw_overlay(image, result, detected)
    ok, png = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    with atomic_output_path(folder / "overlay.png") as tmp:
        tmp.write_bytes(png.tobytes())
    payload = {"units": "pixels, origin top-left",
               "detected": np.round(detected, 3).tolist(),
               "fitted": np.round(projected_landmarks(result)[:len(detected)], 3).tolist()}
    with atomic_output_path(folder / "landmarks.json") as tmp:
        tmp.write_text(json.dumps(payload))
