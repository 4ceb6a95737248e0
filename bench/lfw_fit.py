"""Landmark overlay quality of the classic fit on the 100 faces of skimage's LFW subset (upscaled to 256²).

    python bench/lfw_fit.py

For each face the detector finds: mean error of the fitted head's embedded MediaPipe landmarks and of the
inner ICT (Multi-PIE 17–67) landmarks, projected through the fitted camera, as % of the inter-ocular distance.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402


def main() -> None:
    import cv2
    from skimage.data import lfw_subset
    from topos_server.engines import shared_engine
    from topos_server.fit.quality import landmark_errors

    from topos_sdk import NoFaceFound

    engine = shared_engine("classic", "cpu")
    faces = lfw_subset()[:100]
    mp, inner, missed, fit_ms = [], [], 0, []
    for face in faces:
        img = (np.clip(face, 0, 1) * 255).astype(np.uint8)
        img = cv2.resize(img, (256, 256), interpolation=cv2.INTER_CUBIC)
        rgb = np.repeat(img[:, :, None], 3, axis=2)
        try:
            result, face = engine.fit_portrait(rgb)
        except NoFaceFound:
            missed += 1
            continue
        fit_ms.append(result.provenance.timings_s["fit"] * 1000)
        errors = landmark_errors(result, face.points)
        mp.append(errors["mediapipe"])
        inner.append(errors["ict_inner"])
    mp, inner = np.array(mp) * 100, np.array(inner) * 100
    print(f"Machine: {machine_description()}")
    print(f"LFW subset: {len(faces)} faces, detected {len(mp)}, missed {missed}; fit {np.median(fit_ms):.0f} ms median")
    print()
    print("| landmarks | mean | median | p95 | max | share ≤ target |")
    print("|---|---|---|---|---|---|")
    for name, arr, target in (("MediaPipe (target 3%)", mp, 3.0), ("ICT inner (target 5%)", inner, 5.0)):
        print(f"| {name} | {arr.mean():.2f}% | {np.median(arr):.2f}% | {np.percentile(arr, 95):.2f}% | "
              f"{arr.max():.2f}% | {(arr <= target).mean():.0%} |")


if __name__ == "__main__":
    main()
