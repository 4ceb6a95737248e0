"""The ``classic`` engine: landmarks → morphable-model fit → texture baked from the photo. CPU only.

The asset's geometry is the fitted *identity* on a neutral expression; the portrait's expression is
kept as blendshape weights over the model's expression shapes, and the fitted camera goes with it so
the posed mesh overlays the photo.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

import numpy as np

from topos_sdk import HeadResult, Provenance, ToposError
from topos_sdk.faces import CHOICE_RULE, FaceList
from topos_server.assets.cache import AssetCache
from topos_server.assets.head_model_file import load_head_model_arrays
from topos_server.assets.landmark_offsets import turned_offsets
from topos_server.assets.turned_landmarks import load_correction
from topos_server.engines.base import GenerateOptions, ProgressCallback, check_same_person
from topos_server.face import FaceLandmarker, FaceLandmarks, load_image
from topos_server.fit.landmark_fit import LandmarkBasis, fit_landmarks, fit_landmarks_multiview, yaw_degrees
from topos_server.fit.shading_refinement import ShadingHeadModel, refine_identity_by_shading
from topos_server.texture.learned import portrait_textures, views_textures

MEDIAPIPE_LANDMARKS = "mediapipe"
CONTOUR_POOL_GROUP = "narrow_face"  # ICT's front-of-face vertices: where the jaw/cheek outline can fall


class ClassicEngine:
    name = "classic"
    max_batch_size = 1  # the work is per image; batching buys nothing on the CPU

    def __init__(self, cache: AssetCache | None = None, device: str = "cpu"):
        self.cache = cache or AssetCache.default()
        self.topology = self.cache.ict_topology()
        if MEDIAPIPE_LANDMARKS not in self.topology.landmarks:
            from topos_sdk import AssetError

            raise AssetError("the imported ICT topology has no MediaPipe correspondence; "
                             "re-run `topos assets import --ict ... --facemesh ...`")
        model = load_head_model_arrays(self.cache.head_model_file())  # numpy only: no torch in this engine
        self.neutral = model.neutral  # (N, 3)
        self.identity_basis = model.identity_basis  # (I, N, 3)
        self.expression_basis = model.expression_basis  # (E, N, 3)
        self.expression_names = list(model.expression_names)
        self.basis = LandmarkBasis.from_model(
            self.topology.landmarks[MEDIAPIPE_LANDMARKS], self.neutral, self.identity_basis, self.expression_basis,
            contour_pool=self.topology.vertex_groups.get(CONTOUR_POOL_GROUP), turned=turned_offsets(),
            turned_correction=load_correction())
        self.landmarker = FaceLandmarker(cache=self.cache, refine_iris=True)  # 478: the iris constrains gaze
        self._lock = threading.Lock()  # the landmarker's interpreters are not re-entrant

    def generate(self, images: Sequence[bytes | np.ndarray], options: GenerateOptions,
                 progress: ProgressCallback | None = None) -> list[HeadResult]:
        results = []
        for index, source in enumerate(images):
            def report(stage: str, fraction: float) -> None:
                if progress:
                    progress(stage, (index + fraction) / len(images), index)

            if isinstance(source, tuple):  # several photos of one person → one head
                results.append(self._generate_same_person(source, options, report))
            else:
                results.append(self._generate_one(source, options, report))
        return results

    @property
    def shading_head_model(self) -> ShadingHeadModel:
        """The head model as the shading refinement of several photos needs it."""
        return ShadingHeadModel(self.neutral, self.identity_basis, self.expression_basis, self.basis)

    def identity_points(self, identity: np.ndarray) -> np.ndarray:
        """(I,) coefficients → (N, 3) float32 neutral-expression head."""
        return (self.neutral + np.tensordot(identity, self.identity_basis, axes=1)).astype(np.float32)

    def list_faces(self, source: bytes | np.ndarray) -> FaceList:
        """Every face of a (group) photo, numbered left to right, the default choice marked."""
        image = source if isinstance(source, np.ndarray) else load_image(source)
        with self._lock:
            return self.landmarker.list_faces(image)

    def detect(self, image: np.ndarray, face_index: int | None = None) -> FaceLandmarks:
        """The 478 landmarks of the chosen face of a decoded (H, W, 3) photo (the front-end is not re-entrant)."""
        with self._lock:
            return self.landmarker.detect(image, face_index=face_index)

    def fit_portrait(self, image: np.ndarray, focal_length_px: float | None = None,
                     report=lambda stage, fraction: None, face_index: int | None = None
                     ) -> tuple[HeadResult, FaceLandmarks]:
        """Landmarks and model fit of a decoded (H, W, 3) portrait: an untextured result + the landmarks."""
        timings = {}
        t = time.perf_counter()
        report("landmarks", 0.1)
        with self._lock:
            face = self.landmarker.detect(image, face_index=face_index)
        timings["landmarks"] = time.perf_counter() - t

        t = time.perf_counter()
        report("fitting", 0.3)
        height, width = image.shape[:2]
        fit = fit_landmarks(self.basis, face.points, (width, height), focal_length_px)
        timings["fit"] = time.perf_counter() - t
        result = HeadResult(
            points=self.identity_points(fit.identity), topology=self.topology,
            expression_weights=dict(zip(self.expression_names, fit.expression.tolist())),
            blendshape_names=self.expression_names, blendshape_deltas=self.expression_basis,
            camera=fit.to_camera(),
            provenance=Provenance(engine=self.name, timings_s=timings, extra={
                "fit_rms_px": round(fit.rms_px, 3), "faces_found": int(face.face_count),
                "focal_length_px": round(fit.focal_length_px, 2),
                "yaw_deg": round(yaw_degrees(fit.rotation), 1), "eyes_hidden": list(fit.hidden_eyes),
                "face": face_provenance(face, asked=face_index is not None)}))
        return result, face

    def _generate_one(self, source, options: GenerateOptions, report) -> HeadResult:
        t = time.perf_counter()
        report("decoding", 0.0)
        image = source if isinstance(source, np.ndarray) else load_image(source)
        decode_s = time.perf_counter() - t

        result, face = self.fit_portrait(image, options.focal_length_px, report, options.face_index)
        report("texturing", 0.4)
        timings = {"decode": decode_s, **result.provenance.timings_s}
        result.textures, bake_size = portrait_textures(image, result.posed_points(), result.camera, result.points,
                                                       self.topology, options.texture_size, options.texture,
                                                       options.seed, landmarks=face.points, timings=timings)
        result.provenance.extra["texture"] = options.texture
        result.provenance.extra["texture_bake_size"] = bake_size
        result.provenance.timings_s = {k: round(v, 4) for k, v in timings.items()}
        result.provenance.seed = int(options.seed)
        result.provenance.source_image_sha256 = Provenance.hash_image_bytes(
            source if isinstance(source, bytes) else image.tobytes())
        report("done", 1.0)
        return result

    def _generate_same_person(self, sources: tuple, options: GenerateOptions, report) -> HeadResult:
        """One identity fitted to every photo (per-view pose, focal length and expression), then refined by the
        skin's shading across the photos; each photo baked through its own camera and the bakes merged by
        visibility and viewing angle."""
        check_same_person(sources, options)
        timings = {}
        t = time.perf_counter()
        report("decoding", 0.0)
        images = [source if isinstance(source, np.ndarray) else load_image(source) for source in sources]
        timings["decode"] = time.perf_counter() - t

        t = time.perf_counter()
        faces = []
        for view, image in enumerate(images):
            report("landmarks", 0.1 * (view + 1) / len(images))
            try:
                with self._lock:
                    faces.append(self.landmarker.detect(image, face_index=options.face_index if view == 0 else None))
            except ToposError as exc:
                raise type(exc)(f"photo {view + 1} of {len(images)}: {exc}") from None
        timings["landmarks"] = time.perf_counter() - t

        t = time.perf_counter()
        report("fitting", 0.2)
        fits = fit_landmarks_multiview(self.basis, [face.points for face in faces],
                                       [(image.shape[1], image.shape[0]) for image in images], options.focal_length_px)
        timings["fit"] = time.perf_counter() - t
        t = time.perf_counter()
        report("shading", 0.25)
        identity = refine_identity_by_shading(images, fits, [face.points for face in faces], self.shading_head_model,
                                              self.topology)
        timings["shading_refinement"] = time.perf_counter() - t
        points = self.identity_points(identity)  # (N, 3) the shared identity, neutral expression
        cameras = [fit.to_camera() for fit in fits]

        posed = [points + np.tensordot(fit.expression, self.expression_basis, axes=1) for fit in fits]  # (N, 3) each
        textures = views_textures(images, posed, cameras, points, self.topology, options.texture_size,
                                  options.texture, options.seed, landmarks=[face.points for face in faces],
                                  before_view=lambda view: report("texturing", 0.3 + 0.6 * view / len(images)),
                                  timings=timings)

        hashes = [Provenance.hash_image_bytes(source if isinstance(source, bytes) else image.tobytes())
                  for source, image in zip(sources, images)]
        views = [{"fit_rms_px": round(fit.rms_px, 3), "focal_length_px": round(fit.focal_length_px, 2),
                  "yaw_deg": round(yaw_degrees(fit.rotation), 1), "eyes_hidden": list(fit.hidden_eyes),
                  "face": face_provenance(face, asked=view == 0 and options.face_index is not None),
                  "source_image_sha256": digest}
                 for view, (fit, face, digest) in enumerate(zip(fits, faces, hashes))]
        report("done", 1.0)
        return HeadResult(
            points=points, topology=self.topology, textures=textures,
            expression_weights=dict(zip(self.expression_names, fits[0].expression.tolist())),
            blendshape_names=self.expression_names, blendshape_deltas=self.expression_basis,
            camera=cameras[0], view_cameras=cameras,
            provenance=Provenance(engine=self.name, seed=int(options.seed), source_image_sha256=hashes[0],
                                  timings_s={k: round(v, 4) for k, v in timings.items()},
                                  extra={"same_person_views": len(images), "views": views, "texture": options.texture,
                                         "identity_from": "the landmarks of every photo, then the skin's shading "
                                                          "across the photos (fit/shading_refinement.py)",
                                         "expression_from": "photo 1 (each view's is fitted; the asset keeps the first)"}))


def face_provenance(face: FaceLandmarks, asked: bool) -> dict:
    """Which face of the photo the head is, and why (for the asset's provenance and the CLI)."""
    chosen = face.faces.faces[face.face_index]
    return {**chosen.as_dict(), "of": len(face.faces.faces),
            "chosen_by": "face index asked for" if asked else CHOICE_RULE}
