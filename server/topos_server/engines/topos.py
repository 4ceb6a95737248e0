"""The ``topos`` engine: portrait → face front-end → TOPOS-DiT (seeded) → TOPOS-VAE decode → head.

The DiT generates the neutral identity head; the portrait's expression and camera are then fitted to
the landmarks with that identity held fixed (the classic fit with no identity modes), and the textures
are baked through that camera as in the classic engine. Several seeds give several plausible heads of
one photo (:meth:`ToposEngine.generate_variants`: one batched DiT call).

Several photos of one person (an image entry that is a tuple): the DiT samples one head per photo, all in the same
batched call (photo ``v`` with seed ``seed + v``), and the identity is their mean (:func:`reconcile_view_heads`),
refined by the skin's shading across the photos as in the classic engine (fit/shading_refinement.py: identity modes
added to the mean); each photo's expression and camera are then fitted with that identity held fixed, every photo
is baked through its own camera and the bakes are merged by visibility and viewing angle (texture/multiview.py) as
in the classic engine. BENCHMARKS.md ("Several photos of one person") measures it: the committed DiT hardly moves
with the photo, so what the extra photos buy is mostly the average over several samples' noise."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from topos_sdk import AssetError, HeadResult, InvalidInputError, Provenance, ToposError
from topos_sdk.generate import MAX_VARIANTS
from topos_server.assets.cache import AssetCache
from topos_server.engines.base import GenerateOptions, ProgressCallback, check_same_person
from topos_server.engines.classic import CONTOUR_POOL_GROUP, MEDIAPIPE_LANDMARKS, ClassicEngine, face_provenance
from topos_server.face import FaceLandmarks, load_image
from topos_server.fit.landmark_fit import LandmarkBasis, LandmarkFit, fit_landmarks, yaw_degrees
from topos_server.fit.shading_refinement import ShadingHeadModel, refine_identity_by_shading
from topos_server.models import WEIGHTS_DIR
from topos_server.models.dit import ToposDiT
from topos_server.pipelines.convert import load_vae
from topos_server.pipelines.head_generation import SamplingOptions, portrait_condition, sample_latents
from topos_server.pipelines.head_latents import HeadLatents, vae_fingerprint
from topos_server.texture.learned import portrait_textures, views_textures

DEFAULT_DIT_WEIGHTS = WEIGHTS_DIR / "topos_dit_small"
DIT_WEIGHTS_VARIABLE = "TOPOS_DIT_WEIGHTS"
SAMPLING_FILE = "sampling.json"  # beside the weights: steps, guidance, shift, temperature chosen on held-out pairs


def load_dit(weights: str | Path | None = None, device: str = "cpu") -> ToposDiT:
    """The DiT of :func:`dit_weights_path` on ``device`` (bf16 on CUDA)."""
    path = dit_weights_path(weights)
    if not (path / "config.json").is_file():
        raise AssetError(f"no TOPOS-DiT weights in {path}: train them with `topos train dit --pairs DIR --out OUT` "
                         f"and set {DIT_WEIGHTS_VARIABLE}=OUT/model")
    model = ToposDiT.from_pretrained(path, low_cpu_mem_usage=False).eval()
    if torch.device(device).type == "cuda":
        model = model.to(device, torch.bfloat16)
    return model.to(device)


def dit_weights_path(weights: str | Path | None = None) -> Path:
    """``weights``, else ``$TOPOS_DIT_WEIGHTS`` (a studio's own model), else the bundled small model."""
    return Path(weights or os.environ.get(DIT_WEIGHTS_VARIABLE) or DEFAULT_DIT_WEIGHTS)


def sampling_defaults(weights: str | Path | None = None) -> SamplingOptions:
    """The sampler settings measured best for these weights (``sampling.json`` beside them), else the defaults."""
    file = dit_weights_path(weights) / SAMPLING_FILE
    if not file.is_file():
        return SamplingOptions()
    return SamplingOptions(**json.loads(file.read_text()))


class ToposEngine:
    name = "topos"
    max_batch_size = 16  # the DiT samples a batch in one call; the server groups requests up to this
    seed_per_image = True  # generate(..., seeds=[...]): the server batches requests whatever their seeds

    def __init__(self, cache: AssetCache | None = None, device: str = "cpu", weights: str | Path | None = None,
                 sampling: SamplingOptions | None = None):
        self.device = device
        self.classic = ClassicEngine(cache=cache)  # the front-end, the head model's expressions, the fit
        self.topology = self.classic.topology
        self.latents = HeadLatents(load_vae(device=device), self.topology)
        self.dit = load_dit(weights, device)
        installed = vae_fingerprint(self.latents)
        if self.dit.config.vae_id and self.dit.config.vae_id != installed:
            raise AssetError(f"the TOPOS-DiT weights generate latents of VAE {self.dit.config.vae_id}, the installed "
                             f"TOPOS-VAE is {installed}: retrain the DiT for this VAE")
        self.sampling = sampling or sampling_defaults(weights)
        self.contour_pool = self.topology.vertex_groups.get(CONTOUR_POOL_GROUP)
        self.no_identity = np.zeros((0, self.topology.num_points, 3), np.float32)

    # ---- the Engine interface ------------------------------------------------------------------------
    def generate(self, images: Sequence[bytes | np.ndarray | tuple], options: GenerateOptions,
                 progress: ProgressCallback | None = None, seeds: Sequence[int] | None = None) -> list[HeadResult]:
        """One head per image from one batched DiT call; ``seeds`` (one per image) override ``options.seed``.
        An entry that is a tuple of photos of one person gives one head (module notes); its photos share
        the batch's DiT call."""
        seeds = [int(options.seed)] * len(images) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(images):
            raise ValueError(f"{len(seeds)} seeds for {len(images)} images")
        for source in images:
            if isinstance(source, tuple):
                check_same_person(source, options)
        # every photo of every entry through the front-end, then all of them through one DiT call
        entries = [self._front_end_views(source, options, index, progress) if isinstance(source, tuple)
                   else [self._front_end(source, options, index, progress)] for index, source in enumerate(images)]
        flat_seeds = [seed + view for seed, views in zip(seeds, entries) for view in range(len(views))]
        heads, timings = self._sample([p for views in entries for p in views], flat_seeds)
        results, start = [], 0
        for index, (source, views, seed) in enumerate(zip(images, entries, seeds)):
            entry_heads, start = heads[start:start + len(views)], start + len(views)
            if isinstance(source, tuple):
                results.append(self._finish_same_person(views, entry_heads, seed, options, timings, index, progress,
                                                        len(images)))
            else:
                results.append(self._finish(views[0], entry_heads[0], seed, options, timings, index, progress,
                                            len(images)))
        return results

    def generate_variants(self, source: bytes | np.ndarray, options: GenerateOptions, count: int,
                          progress: ProgressCallback | None = None) -> list[HeadResult]:
        """``count`` heads of one portrait, seeds ``options.seed`` … ``options.seed + count − 1``: one DiT call."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_VARIANTS:
            raise InvalidInputError(f"variants must be an integer in [1, {MAX_VARIANTS}], got {count!r}")
        portrait = self._front_end(source, options, None, progress)
        seeds = [int(options.seed) + k for k in range(count)]
        heads, timings = self._sample([portrait] * count, seeds)
        return [self._finish(portrait, head, seed, options, timings, k, progress, count)
                for k, (head, seed) in enumerate(zip(heads, seeds))]

    def list_faces(self, source: bytes | np.ndarray):
        return self.classic.list_faces(source)

    # ---- stages --------------------------------------------------------------------------------------
    def _front_end(self, source, options: GenerateOptions, index, progress) -> dict:
        if progress:
            progress("landmarks", 0.0, index)
        t = time.perf_counter()
        image = source if isinstance(source, np.ndarray) else load_image(source)
        decode_s = time.perf_counter() - t
        t = time.perf_counter()
        face: FaceLandmarks = self.classic.detect(image, options.face_index)
        landmarks, crop = portrait_condition(image, face.points)
        portrait = {"image": image, "face": face, "landmarks": landmarks, "crop": crop, "source": source,
                    "timings": {"decode": decode_s, "landmarks": time.perf_counter() - t}}
        if self.dit.config.identity_condition:  # the DiT refines what the classic linear fit makes of the landmarks
            t = time.perf_counter()
            height, width = image.shape[:2]
            fit = fit_landmarks(self.classic.basis, face.points, (width, height), options.focal_length_px)
            portrait["identity"] = fit.identity.astype(np.float32)
            portrait["timings"]["classic_fit"] = time.perf_counter() - t
        return portrait

    def _front_end_views(self, sources: tuple, options: GenerateOptions, index, progress) -> list[dict]:
        """The front-end of every photo of one person; ``options.face_index`` picks the face of the first only
        (as the classic engine does); a photo without a face names itself."""
        portraits = []
        for view, source in enumerate(sources):
            view_options = options if view == 0 else replace(options, face_index=None)
            try:
                portraits.append(self._front_end(source, view_options, index, progress))
            except ToposError as exc:
                raise type(exc)(f"photo {view + 1} of {len(sources)}: {exc}") from None
        return portraits

    def _sample(self, portraits: list[dict], seeds: list[int]) -> tuple[np.ndarray, dict]:
        """(B, N, 3) float32 neutral heads from the DiT, one per portrait and seed."""
        t = time.perf_counter()
        landmarks = torch.from_numpy(np.stack([p["landmarks"] for p in portraits]))  # (B, 478, 3)
        crops = torch.from_numpy(np.stack([p["crop"] for p in portraits]))  # (B, 3, S, S)
        identity = (torch.from_numpy(np.stack([p["identity"] for p in portraits]))
                    if self.dit.config.identity_condition else None)  # (B, I)
        latents = sample_latents(self.dit, landmarks, crops, seeds, self.sampling, identity)  # (B, L, C)
        sample_s = time.perf_counter() - t
        t = time.perf_counter()
        heads = self.latents.decode(latents).cpu().numpy().astype(np.float32)  # (B, N, 3)
        return heads, {"dit": sample_s / len(seeds), "vae_decode": (time.perf_counter() - t) / len(seeds)}

    def _finish(self, portrait: dict, head: np.ndarray, seed: int, options: GenerateOptions, batch_timings: dict,
                index: int, progress, count: int) -> HeadResult:
        if progress:
            progress("fitting", (index + 0.5) / count, index)
        result = self._fitted(portrait, head, seed, options.focal_length_px, options.face_index is not None,
                              batch_timings)
        if progress:
            progress("texturing", (index + 0.7) / count, index)
        timings = {}
        result.textures, bake_size = portrait_textures(portrait["image"], result.posed_points(), result.camera,
                                                       result.points, self.topology, options.texture_size,
                                                       options.texture, seed, landmarks=portrait["face"].points,
                                                       timings=timings)
        result.provenance.timings_s.update({k: round(v, 4) for k, v in timings.items()})
        result.provenance.extra["texture"] = options.texture
        result.provenance.extra["texture_bake_size"] = bake_size
        return result

    def _finish_same_person(self, portraits: list[dict], heads: np.ndarray, seed: int, options: GenerateOptions,
                            batch_timings: dict, index: int, progress, count: int) -> HeadResult:
        """One head of several photos: the views' samples reconciled into one identity, per-view expression and
        camera fitted with it held fixed, every photo baked through its own camera and the bakes merged."""
        if progress:
            progress("fitting", (index + 0.5) / count, index)
        result, views = self._fitted_same_person(portraits, heads, seed, options.focal_length_px,
                                                 options.face_index is not None, batch_timings)
        if progress:
            progress("texturing", (index + 0.7) / count, index)
        timings = {}
        result.textures = views_textures([p["image"] for p in portraits], [v.posed_points() for v in views],
                                         [v.camera for v in views], result.points, self.topology,
                                         options.texture_size, options.texture, seed,
                                         landmarks=[p["face"].points for p in portraits], timings=timings)
        result.provenance.timings_s.update({k: round(v, 4) for k, v in timings.items()})
        result.provenance.extra["texture"] = options.texture
        return result

    def fit_same_person(self, images: Sequence[np.ndarray], seed: int = 0, focal_length_px: float | None = None,
                        face_index: int | None = None) -> HeadResult:
        """The untextured head of several decoded (H, W, 3) photos of one person (one DiT call): what the
        benchmarks measure, without the bakes."""
        options = GenerateOptions(seed=int(seed), focal_length_px=focal_length_px, face_index=face_index)
        portraits = self._front_end_views(tuple(images), options, None, None)
        heads, timings = self._sample(portraits, [int(seed) + view for view in range(len(portraits))])
        return self._fitted_same_person(portraits, heads, int(seed), focal_length_px, face_index is not None,
                                        timings)[0]

    def _fitted_same_person(self, portraits: list[dict], heads: np.ndarray, seed: int,
                            focal_length_px: float | None, face_asked: bool, batch_timings: dict
                            ) -> tuple[HeadResult, list[HeadResult]]:
        """(the untextured result, one untextured result per view): the views' (V, N, 3) DiT heads reconciled
        into one identity; per view, expression and camera fitted with it held fixed. The result keeps the
        first photo's expression and camera and every photo's camera (``view_cameras``), as the classic
        engine does."""
        t = time.perf_counter()
        head = reconcile_view_heads(heads)  # (N, 3)
        reconcile_s = time.perf_counter() - t
        t = time.perf_counter()
        head = self._refined_by_shading(portraits, head, focal_length_px)
        shading_s = time.perf_counter() - t
        basis = self._identity_free_basis(head)
        views = [self._fitted(portrait, head, seed + view, focal_length_px, face_asked and view == 0, batch_timings,
                              basis) for view, portrait in enumerate(portraits)]
        first = views[0]
        timings = {key: round(sum(v.provenance.timings_s.get(key, 0.0) for v in views), 4)
                   for key in ("decode", "landmarks", "fit")}
        timings.update({key: round(value * len(views), 4) for key, value in batch_timings.items()})  # V samples
        timings["reconcile"] = round(reconcile_s, 4)
        timings["shading_refinement"] = round(shading_s, 4)
        per_view = ("fit_rms_px", "focal_length_px", "yaw_deg", "eyes_hidden", "face")
        extra = {key: value for key, value in first.provenance.extra.items() if key not in per_view + ("faces_found",)}
        extra.update({
            "same_person_views": len(views),
            "views": [{**{key: v.provenance.extra[key] for key in per_view},
                       "source_image_sha256": v.provenance.source_image_sha256, "seed": v.provenance.seed}
                      for v in views],
            "identity_from": "mean of the views' DiT samples (photo v sampled with seed + v), then the skin's "
                             "shading across the photos (fit/shading_refinement.py)",
            "expression_from": "photo 1 (each view's is fitted; the asset keeps the first)"})
        result = HeadResult(
            points=head, topology=self.topology, expression_weights=first.expression_weights,
            blendshape_names=self.classic.expression_names, blendshape_deltas=self.classic.expression_basis,
            camera=first.camera, view_cameras=[v.camera for v in views],
            provenance=Provenance(engine=self.name, seed=seed, timings_s=timings,
                                  source_image_sha256=first.provenance.source_image_sha256, extra=extra))
        return result, views

    def _refined_by_shading(self, portraits: list[dict], head: np.ndarray, focal_length_px: float | None
                            ) -> np.ndarray:
        """(N, 3) float32: ``head`` (the samples' mean) plus the identity modes that make the skin's shading agree
        across the photos (fit/shading_refinement.py), each photo's expression and camera first fitted to it."""
        if len(portraits) < 2:
            return head
        identity_basis, expression_basis = self.classic.identity_basis, self.classic.expression_basis
        around = LandmarkBasis.from_model(self.topology.landmarks[MEDIAPIPE_LANDMARKS], head, identity_basis,
                                          expression_basis, contour_pool=self.contour_pool,
                                          turned=self.classic.basis.turned)
        no_identity = np.zeros(len(identity_basis))
        basis = self._identity_free_basis(head)
        fits = [replace(self._view_fit(portrait, head, focal_length_px, basis), identity=no_identity)
                for portrait in portraits]
        identity = refine_identity_by_shading([p["image"] for p in portraits], fits,
                                              [p["face"].points for p in portraits],
                                              ShadingHeadModel(head, identity_basis, expression_basis, around),
                                              self.topology)
        return (head + np.tensordot(identity, identity_basis, axes=1)).astype(np.float32)

    def _identity_free_basis(self, head: np.ndarray) -> LandmarkBasis:
        """The landmark basis around ``head`` (N, 3) with no identity modes: the fits that hold the identity there."""
        return LandmarkBasis.from_model(self.topology.landmarks[MEDIAPIPE_LANDMARKS], head, self.no_identity,
                                        self.classic.expression_basis, contour_pool=self.contour_pool,
                                        turned=self.classic.basis.turned,
                                        turned_correction=self.classic.basis.turned_correction)

    def _view_fit(self, portrait: dict, head: np.ndarray, focal_length_px: float | None,
                  basis: LandmarkBasis | None = None) -> LandmarkFit:
        """The photo's expression and camera fitted to its landmarks with the identity held at ``head`` (N, 3);
        ``basis``: :meth:`_identity_free_basis` of that head when the caller already has it."""
        basis = basis or self._identity_free_basis(head)
        height, width = portrait["image"].shape[:2]
        return fit_landmarks(basis, portrait["face"].points, (width, height), focal_length_px)

    def fit_portrait(self, image: np.ndarray, seeds: Sequence[int] = (0,), focal_length_px: float | None = None,
                     face_index: int | None = None) -> list[HeadResult]:
        """Untextured heads of a decoded (H, W, 3) portrait, one per seed (one DiT call): what the benchmarks
        measure, without the bake."""
        options = GenerateOptions(seed=int(seeds[0]), focal_length_px=focal_length_px, face_index=face_index)
        portrait = self._front_end(image, options, None, None)
        heads, timings = self._sample([portrait] * len(seeds), [int(s) for s in seeds])
        return [self._fitted(portrait, head, int(seed), focal_length_px, face_index is not None, timings)
                for head, seed in zip(heads, seeds)]

    def _fitted(self, portrait: dict, head: np.ndarray, seed: int, focal_length_px: float | None, face_asked: bool,
                batch_timings: dict, basis: LandmarkBasis | None = None) -> HeadResult:
        """The untextured result: expression and camera fitted to the landmarks with the identity held at ``head``."""
        image, face = portrait["image"], portrait["face"]
        t = time.perf_counter()
        fit = self._view_fit(portrait, head, focal_length_px, basis)
        timings = {**portrait["timings"], **batch_timings, "fit": time.perf_counter() - t}
        expression = fit.expression.astype(np.float32)
        source = portrait["source"]
        return HeadResult(
            points=head, topology=self.topology,
            expression_weights=dict(zip(self.classic.expression_names, expression.tolist())),
            blendshape_names=self.classic.expression_names, blendshape_deltas=self.classic.expression_basis,
            camera=fit.to_camera(),
            provenance=Provenance(
                engine=self.name, seed=seed, timings_s={k: round(v, 4) for k, v in timings.items()},
                source_image_sha256=Provenance.hash_image_bytes(source if isinstance(source, bytes) else image.tobytes()),
                extra={"sampling_steps": self.sampling.steps, "guidance": self.sampling.guidance,
                       "scheduler_shift": self.sampling.shift, "temperature": self.sampling.temperature,
                       "dit": self.dit.config.size_name,
                       "vae_id": self.dit.config.vae_id, "fit_rms_px": round(fit.rms_px, 3),
                       "faces_found": int(face.face_count), "focal_length_px": round(fit.focal_length_px, 2),
                       "yaw_deg": round(yaw_degrees(fit.rotation), 1), "eyes_hidden": list(fit.hidden_eyes),
                       "face": face_provenance(face, asked=face_asked)}))


def reconcile_view_heads(heads: np.ndarray) -> np.ndarray:
    """(V, N, 3) DiT heads of V photos of one person → (N, 3) float32: their per-vertex mean. The samples
    share the decoder's reference frame (no alignment needed); the mean keeps what the photos agree on and
    averages out each sample's noise. Measured against each photo's own sample, the sample whose photo the fit
    reprojects best and a multi-view landmark fit around the mean (BENCHMARKS.md, "Several photos of one
    person")."""
    heads = np.asarray(heads, np.float64)
    if heads.ndim != 3 or len(heads) == 0:
        raise ValueError(f"heads must be (V, N, 3), got {heads.shape}")
    return heads.mean(axis=0).astype(np.float32)
