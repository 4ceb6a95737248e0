"""Face front-end accuracy and speed: FaceMesh 468 on LiteRT against MediaPipe's own output.

    python bench/face_landmarks.py

Accuracy against ../shared/fixtures/astronaut_facemesh468.json (mediapipe 0.10.21, static image
mode), detection rate on skimage's LFW subset (100 faces, 100 non-faces, upscaled to 256²), and
median wall times per image (interpreters built once, one thread each).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "astronaut_facemesh468.json"


def median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    import cv2
    from PIL import Image
    from skimage.data import astronaut, lfw_subset

    from topos_sdk import NoFaceFound
    from topos_server.face import FaceLandmarker, load_image

    reference = np.asarray(json.loads(FIXTURE.read_text())["landmarks"], dtype=np.float32)  # (468, 3)
    image = astronaut()
    start = time.perf_counter()
    landmarker = FaceLandmarker()
    build_ms = (time.perf_counter() - start) * 1000
    two_pass = FaceLandmarker(refine_roi=True)

    print(f"machine: {machine_description()}")
    print(f"build FaceLandmarker (short-range + landmark interpreters): {build_ms:.0f} ms")
    for label, model in (("single pass (MediaPipe static mode)", landmarker), ("two-pass (landmark ROI)", two_pass)):
        points = model.detect(image).points
        distance = np.linalg.norm(points[:, :2] - reference[:, :2], axis=1)
        depth = np.abs(points[:, 2] - reference[:, 2])
        print(
            f"astronaut, {label}: xy mean {distance.mean():.4f} px, median {np.median(distance):.4f}, "
            f"max {distance.max():.4f}; z mean {depth.mean():.4f} px, max {depth.max():.4f}"
        )

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=92)
    jpeg = buffer.getvalue()
    region = landmarker.detect(image).region
    padded = np.full((1280, 1280, 3), 120, np.uint8)
    padded[100:612, 200:712] = image
    large = cv2.resize(image, (4096, 4096), interpolation=cv2.INTER_LINEAR)
    timings = {
        "decode 512² JPEG": median_ms(lambda: load_image(jpeg), 50),
        "short-range detection, 512²": median_ms(lambda: landmarker.short_range.detect(image), 50),
        "landmarks (crop + model + projection)": median_ms(lambda: landmarker.landmarks_in_region(image, region), 50),
        "detect + landmarks, 512² astronaut": median_ms(lambda: landmarker.detect(image), 50),
        "detect + landmarks, 1280² (full-range fallback)": median_ms(lambda: landmarker.detect(padded), 20),
        "detect + landmarks, 4096² array": median_ms(lambda: landmarker.detect(large), 10),
    }
    for label, milliseconds in timings.items():
        print(f"{label}: {milliseconds:.2f} ms")

    found, full_range, false_positives = 0, 0, 0
    for index, face in enumerate(lfw_subset()):
        pixels = cv2.resize((face * 255).astype(np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC)
        try:
            result = landmarker.detect(pixels)
        except NoFaceFound:
            continue
        if index < 100:
            found += 1
            full_range += result.detection.detector == "full_range"
        else:
            false_positives += 1
    print(f"LFW subset 256²: {found}/100 faces found ({full_range} by the full-range fallback), "
          f"{false_positives}/100 non-faces reported as faces")


if __name__ == "__main__":
    main()
