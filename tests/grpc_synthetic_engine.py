"""A deterministic stand-in engine for the gRPC tests: real image validation (PIL), real-sized
results (points derived from a topology with a seeded RNG, blendshapes, UDIM textures), an optional
per-stage delay to exercise queueing, cancellation and draining. Not a face reconstruction."""

from __future__ import annotations

import hashlib
import io
import threading
import time

import numpy as np
from PIL import Image, UnidentifiedImageError

from topos_sdk import Camera, HeadResult, InvalidInputError, NoFaceFound, Provenance, TextureMap

STAGES = ("decode", "detect", "fit", "texture")


class SyntheticEngine:
    name = "synthetic"

    def __init__(self, topology, delay_s: float = 0.0, max_batch_size: int = 1, blendshapes: int = 3):
        self.topology = topology
        self.delay_s = delay_s
        self.max_batch_size = max_batch_size
        self.blendshape_count = blendshapes
        self.calls: list[int] = []  # batch size of every generate() call
        self.stages_run: list[str] = []
        self.started = threading.Event()  # set when a generate() call begins
        self.fail_with: Exception | None = None  # raised by the next generate() call

    @staticmethod
    def decode(image) -> np.ndarray:
        if isinstance(image, np.ndarray):
            return image
        if not image:
            raise InvalidInputError("the image is empty")
        try:
            with Image.open(io.BytesIO(image)) as img:
                return np.asarray(img.convert("RGB"))  # (H, W, 3) uint8
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidInputError(f"cannot decode the image: {exc}") from None

    def generate(self, images, options, progress=None):
        self.calls.append(len(images))
        self.started.set()
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        decoded = []
        for i, image in enumerate(images):
            pixels = self.decode(image)
            if pixels.std() < 1.0:  # a flat image: nothing that could be a face
                raise NoFaceFound(f"no face found in image {i} ({pixels.shape[1]}×{pixels.shape[0]})")
            decoded.append(pixels)
        results = []
        for stage_no, stage in enumerate(STAGES):
            self.stages_run.append(stage)
            if self.delay_s:
                time.sleep(self.delay_s)
            if progress is not None:
                progress(stage, (stage_no + 1) / len(STAGES), None)
        for pixels in decoded:
            results.append(self._result(pixels, options))
        return results

    def _result(self, pixels: np.ndarray, options) -> HeadResult:
        digest = hashlib.sha256(pixels.tobytes()).digest()
        rng = np.random.default_rng([options.seed, int.from_bytes(digest[:8], "little")])
        topo = self.topology
        n = topo.num_points
        points = topo.rest_points + rng.normal(0, 0.01, (n, 3)).astype(np.float32)  # (N, 3)
        deltas = np.zeros((self.blendshape_count, n, 3), np.float32)  # (K, N, 3), sparse like real shapes
        for k in range(self.blendshape_count):
            moved = rng.choice(n, size=max(1, n // 5), replace=False)
            deltas[k, moved] = rng.normal(0, 0.1, (len(moved), 3))
        size = options.texture_size // 8  # small tiles keep the tests fast; still several pieces at 2048
        albedo = TextureMap("albedo", {1001: rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                                       1002: rng.integers(0, 256, (size, size, 3), dtype=np.uint8)})
        normal = TextureMap("normal", {1001: rng.integers(0, 65536, (size, size, 3), dtype=np.uint16)}, "raw")
        h, w = pixels.shape[:2]
        camera = Camera(focal_length_px=float(max(h, w)), principal_point_px=(w / 2, h / 2), image_size=(w, h),
                        world_to_camera=np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -50.0], [0, 0, 0, 1]]))
        return HeadResult(
            points=points, topology=topo, textures={"albedo": albedo, "normal": normal},
            expression_weights={f"shape{k}": float(rng.uniform()) for k in range(self.blendshape_count)},
            blendshape_names=[f"shape{k}" for k in range(self.blendshape_count)], blendshape_deltas=deltas,
            camera=camera,
            provenance=Provenance(engine=self.name, seed=options.seed, timings_s={"total": 0.0},
                                  versions={"synthetic": "1"}, extra={"note": "test engine"}))
