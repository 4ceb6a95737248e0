"""Paired training data for TOPOS-DiT: synthetic portraits of heads whose 3D truth is exact.

Sample ``index`` of a :class:`SyntheticPortraits` with ``(split, seed)`` depends on those three only:

1. **Head**: an ICT identity ~ N(0, 1) deformed outside the model's span
   (:func:`~topos_server.data.synthetic_heads.deform_out_of_span`) is the *neutral* head, the
   target; sparse random ARKit expression weights on top give the *posed* head that is rendered.
2. **Albedo** (UDIM 1001 face + 1002 back): a portrait of the split's
   :class:`~topos_server.data.texture_bank.TextureBank` (``train`` bank for ``train``, held-out
   portraits for ``eval``), randomly mirrored across the face's symmetry plane, mixed with a second
   one through a smooth random mask and tinted; or procedural skin (the bank's mean structure in a
   random skin tone with multi-scale mottling). Black-and-white photos' textures take a random skin
   tone. Eyes (pupil, iris, sclera), teeth and gums get the
   fixed colours of :mod:`topos_sdk.preview`; lashes and see-through shells are not drawn.
3. **Light**: a second-order spherical-harmonics ambient term (a random constant, linear and
   quadratic part in a slightly tinted colour) + 1–2 directional Lambert lights from the front
   half-space; no cast shadows.
4. **Camera**: pinhole, focal length 35–120 mm equivalent, head yaw up to ±70° (|yaw| ∝ u^1.6: more
   mass near frontal; positive turns the face toward the image's right), pitch ±15°, roll ±10°,
   distance so the face (cheek to cheek) is 80–200 px wide, the face off-centre by up to ±8 %.
5. **Image**: 256², 2× supersampled, over a random background (colour gradient + low-frequency
   blotches), slight sensor noise, JPEG-compressed half the time.
6. **Front-end**: the real :class:`~topos_server.face.FaceLandmarker` (iris refined) and the
   classic landmark fit run on the render exactly as at inference; renders without a detected face
   are skipped (counted). The aligned crop of :func:`~topos_server.face.aligned_crop.aligned_face_crop`
   is kept.

The eval split draws from a different random stream (split-tagged seeds), so its identities never
occur in training, and only from held-out portraits' textures.

Writer (``python -m topos_server.data.synthetic_portraits --out DIR --split train --count N --seed S``):
``DIR/shard_00000.npz`` … each for ``--shard-size`` consecutive indices, written to a temporary
name and renamed (a killed run leaves no half shard; a re-run skips complete shards). Reader:
:class:`PortraitPairs`.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from topos_sdk.atomic_files import atomic_output_path
from topos_sdk.errors import NoFaceFound
from topos_sdk.head_result import Camera, HeadResult, TextureMap
from topos_sdk.preview import _Scene  # the preview's surface colours: flat eyes/teeth, hidden shells, UDIM lookup
from topos_sdk.raster import perspective_correct, rasterize
from topos_server.data.synthetic_heads import SyntheticHeadOptions, deform_out_of_span, outer_surface
from topos_server.data.texture_bank import BACK_TILE, FACE_TILE, TextureBank
from topos_server.face.aligned_crop import aligned_face_crop
from topos_server.fit.landmark_fit import fit_landmarks
from topos_server.texture.skin_lighting import linear_to_srgb, srgb_to_linear

SPLIT_STREAMS = {"train": 1, "eval": 2}  # first word of every random seed: the splits never share a stream
GENERATOR_VERSION = "synthetic-portraits/1"
FACE_WIDTH_LANDMARKS = (234, 454)  # MediaPipe: the cheeks' outermost contour points
FACE_CENTRE_LANDMARKS = (1, 168)  # nose tip, between the eyes
SKIN_TONES = ((0.62, 0.45, 0.36), (0.11, 0.06, 0.04))  # linear RGB: light and dark ends of the procedural range
GREYSCALE_CHROMA = 0.1  # (max − min) / max of a bank entry's mean colour below this: a black-and-white photo


@dataclass(frozen=True)
class PortraitOptions:
    """The random ranges; the defaults are the training distribution."""

    image_size: int = 256
    supersample: int = 2
    crop_size: int = 96
    face_width_px: tuple[float, float] = (80.0, 200.0)
    focal_mm: tuple[float, float] = (35.0, 120.0)  # 35 mm equivalent (36 mm frame width)
    min_distance_cm: float = 30.0
    min_yaw_deg: float = 0.0
    max_yaw_deg: float = 70.0
    yaw_power: float = 1.6  # |yaw| = min + (max − min) · u^power
    max_pitch_deg: float = 15.0
    max_roll_deg: float = 10.0
    max_offset: float = 0.08  # × image size, face centre off the image centre
    procedural_probability: float = 0.15
    mirror_probability: float = 0.5
    mix_probability: float = 0.35
    tint_sigma: tuple[float, float] = (0.2, 0.05)  # log brightness, log per-channel gain
    jpeg_probability: float = 0.5
    expression_probability: float = 0.7
    max_expressions: int = 5
    heads: SyntheticHeadOptions = field(default_factory=SyntheticHeadOptions)


class SyntheticPortraits:
    """Sample factory: ``sample(index)`` → dict of arrays, or None when the front-end finds no face."""

    def __init__(self, split: str, seed: int, bank: TextureBank | None = None, engine=None,
                 options: PortraitOptions = PortraitOptions()):
        from topos_server.assets.head_model import HeadModel
        from topos_server.engines.classic import ClassicEngine

        if split not in SPLIT_STREAMS:
            raise ValueError(f"split must be one of {tuple(SPLIT_STREAMS)}, got {split!r}")
        self.split, self.seed, self.options = split, int(seed), options
        self.bank = bank if bank is not None else TextureBank(split)
        self.texture_names = self.bank.names
        if not self.texture_names:
            raise ValueError(f"texture bank {self.bank.folder} is empty; build it first "
                             f"(python -m topos_server.data.texture_bank --split {split} --count 120)")
        self.engine = engine or ClassicEngine()
        self.topology = self.engine.topology
        self.arkit_count = len(HeadModel.load(self.engine.cache.head_model_file()).arkit_expression_names)
        self.surface_vertex_count, _ = outer_surface(self.topology)
        self.landmarks = self.topology.landmarks["mediapipe"]
        mean_head = HeadResult(points=self.engine.neutral, topology=self.topology,
                               textures={"albedo": TextureMap("albedo", {FACE_TILE: np.zeros((4, 4, 3), np.uint8)})})
        # static parts: visible triangles, flat colours, eye directions (the placeholder albedo marks the skin textured)
        self.scene = _Scene.from_result(mean_head)
        self._mean_albedo: dict[int, np.ndarray] | None = None

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([SPLIT_STREAMS[self.split], self.seed, int(index)])

    # ---- one sample ------------------------------------------------------------------------------
    def render(self, index: int) -> dict:
        """The render and its truth, before the front-end: image, heads, camera, random choices."""
        rng = self.rng(index)
        opt = self.options
        identity = rng.normal(size=self.engine.identity_basis.shape[0]) * opt.heads.identity_scale  # (I,)
        in_span = self.engine.identity_points(identity).astype(np.float64)  # (N, 3)
        neutral = deform_out_of_span(in_span, self.surface_vertex_count, rng, opt.heads)
        expression = np.zeros(self.arkit_count)
        if rng.random() < opt.expression_probability:
            chosen = rng.choice(self.arkit_count, rng.integers(1, opt.max_expressions + 1), replace=False)
            expression[chosen] = rng.uniform(0.0, 1.0, len(chosen))
        posed = neutral + np.tensordot(expression, self.engine.expression_basis[: self.arkit_count], axes=1)
        albedo, texture = self.albedo(rng)
        camera, pose = self.camera(posed, rng)
        image = self.draw(posed, albedo, camera, rng)
        return {"image": image, "neutral": neutral, "posed": posed, "identity": identity, "expression": expression,
                "deformation_rms_cm": float(np.sqrt(((neutral - in_span) ** 2).sum(1).mean())),
                "camera": camera, **pose, **texture}

    def sample(self, index: int) -> dict | None:
        """Render → front-end → classic fit → aligned crop; None when no face is detected."""
        truth = self.render(index)
        image = truth["image"]
        try:
            face = self.engine.landmarker.detect(image)
        except NoFaceFound:
            return None
        height, width = image.shape[:2]
        fit = fit_landmarks(self.engine.basis, face.points, (width, height), None)
        crop, affine = aligned_face_crop(image, face.points, self.options.crop_size)
        camera = truth["camera"]
        return {
            "crop": crop,  # (96, 96, 3) uint8
            "crop_affine": affine.astype(np.float32),  # (2, 3) image → crop
            "landmarks": face.points.astype(np.float32),  # (478, 3) pixels + MediaPipe z
            "image_size": np.array([width, height], np.int32),
            "neutral": truth["neutral"].astype(np.float16),  # (N, 3) cm, ICT frame: the target
            "identity": truth["identity"].astype(np.float32),  # (100,) before the out-of-span deformation
            "deformation_rms_cm": np.float32(truth["deformation_rms_cm"]),
            "expression": truth["expression"].astype(np.float32),  # (53,) ARKit weights of the render
            "classic_identity": fit.identity.astype(np.float32),  # (100,)
            "classic_rms_px": np.float32(fit.rms_px),
            "classic_focal_px": np.float32(fit.focal_length_px),
            "yaw_deg": np.float32(truth["yaw_deg"]), "pitch_deg": np.float32(truth["pitch_deg"]),
            "roll_deg": np.float32(truth["roll_deg"]),
            "focal_px": np.float32(camera.focal_length_px),
            "world_to_camera": camera.world_to_camera.astype(np.float32),  # (4, 4)
            "texture_id": np.int32(truth["texture_id"]),  # index into texture_names; −1: procedural
            "texture_mix_id": np.int32(truth["texture_mix_id"]),  # −1: none
            "texture_mirrored": np.bool_(truth["texture_mirrored"]),
            "index": np.int64(index),
            "image": image,  # (256, 256, 3) uint8; the writer keeps only a few as previews
        }

    # ---- albedo ----------------------------------------------------------------------------------
    def albedo(self, rng: np.random.Generator) -> tuple[dict[int, np.ndarray], dict]:
        """Random linear albedo tiles {1001, 1002: (S, S, 3) float32} and what was chosen."""
        opt = self.options
        count = len(self.texture_names)
        if rng.random() < opt.procedural_probability:
            tiles, first, second, mirrored = self.procedural_skin(rng), -1, -1, False
        else:
            first = int(rng.integers(count))
            mirrored = bool(rng.random() < opt.mirror_probability)
            tiles = self.bank_tiles(first, mirrored, rng)
            second = -1
            if count > 1 and rng.random() < opt.mix_probability:
                second = int((first + rng.integers(1, count)) % count)
                other = self.bank_tiles(second, bool(rng.random() < opt.mirror_probability), rng)
                for tile in tiles:
                    mask = smooth_noise(rng, tiles[tile].shape[0], cells=4)[..., None]  # (S, S, 1) in [0, 1]
                    tiles[tile] = tiles[tile] * mask + other[tile] * (1.0 - mask)
        gain = np.exp(rng.normal(0.0, opt.tint_sigma[0]) + rng.normal(0.0, opt.tint_sigma[1], 3))  # (3,)
        tiles = {tile: np.clip(img * gain, 0.0, 1.0) for tile, img in tiles.items()}
        return tiles, {"texture_id": first, "texture_mix_id": second, "texture_mirrored": mirrored}

    def bank_tiles(self, entry: int, mirrored: bool, rng: np.random.Generator | None = None) -> dict[int, np.ndarray]:
        """Linear albedo tiles of a bank entry; a black-and-white photo's get a random skin tone (given ``rng``)."""
        data = self.bank.load(self.texture_names[entry])
        tiles = {FACE_TILE: data["albedo"].astype(np.float32), BACK_TILE: data["back_albedo"].astype(np.float32)}
        mean = tiles[FACE_TILE].reshape(-1, 3).mean(0)
        if rng is not None and (mean.max() - mean.min()) < GREYSCALE_CHROMA * mean.max():
            tone = random_skin_tone(rng)
            tiles = {tile: img.mean(axis=2, keepdims=True) * (tone / tone.mean()) for tile, img in tiles.items()}
        if mirrored:
            maps = self.mirror_maps(tiles[FACE_TILE].shape[0])
            tiles = {tile: cv2.remap(img, *maps[tile], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for tile, img in tiles.items()}
        return tiles

    def mirror_maps(self, size: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per tile the (S, S) x and y texel maps (cv2.remap) of the mirror image across the face's
        symmetry plane: a texel reads the texel of its mirror point (same barycentrics on the
        mirrored triangle corners); texels outside the islands read themselves."""
        from topos_server.texture.bake import mirror_texel_map, skin_uv_layout

        return {tt.tile: mirror_texel_map(self.topology, size, tt.tile)  # both cached by the bake
                for tt in skin_uv_layout(self.topology, size).tiles}

    def procedural_skin(self, rng: np.random.Generator) -> dict[int, np.ndarray]:
        """The bank's mean albedo structure (brows, lips, cheeks), normalised, in a random skin tone."""
        if self._mean_albedo is None:
            entries = [self.bank_tiles(i, mirrored=False) for i in range(min(16, len(self.texture_names)))]
            self._mean_albedo = {}
            for tile in (FACE_TILE, BACK_TILE):
                mean = np.mean([e[tile] for e in entries], axis=0)  # (S, S, 3)
                self._mean_albedo[tile] = mean / np.median(mean.reshape(-1, 3), axis=0)
        tone = random_skin_tone(rng)
        tiles = {}
        for tile, structure in self._mean_albedo.items():
            size = structure.shape[0]
            mottling = 1.0 + 0.12 * (smooth_noise(rng, size, 8) - 0.5) + 0.06 * (smooth_noise(rng, size, 48) - 0.5)
            tiles[tile] = structure * tone * mottling[..., None]
        return tiles

    # ---- camera ----------------------------------------------------------------------------------
    def camera(self, posed: np.ndarray, rng: np.random.Generator) -> tuple[Camera, dict]:
        opt = self.options
        size = opt.image_size
        yaw = (opt.min_yaw_deg + (opt.max_yaw_deg - opt.min_yaw_deg) * rng.random() ** opt.yaw_power) \
            * rng.choice([-1.0, 1.0])
        pitch = rng.uniform(-opt.max_pitch_deg, opt.max_pitch_deg)
        roll = rng.uniform(-opt.max_roll_deg, opt.max_roll_deg)
        rotation = head_rotation(yaw, pitch, roll)  # (3, 3) head → camera frame
        landmarks = self.landmarks.evaluate(posed)  # (478, 3)
        face_width = float(np.linalg.norm(landmarks[FACE_WIDTH_LANDMARKS[0]] - landmarks[FACE_WIDTH_LANDMARKS[1]]))
        face_px = np.exp(rng.uniform(*np.log(opt.face_width_px)))
        focal = size * np.exp(rng.uniform(*np.log(opt.focal_mm))) / 36.0
        focal = max(focal, opt.min_distance_cm * face_px / face_width)  # never nearer than min_distance_cm
        distance = focal * face_width / face_px
        face_centre = landmarks[list(FACE_CENTRE_LANDMARKS)].mean(0)
        offset_px = rng.uniform(-opt.max_offset, opt.max_offset, 2) * size
        target = np.array([offset_px[0] * distance / focal, -offset_px[1] * distance / focal, -distance])
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = rotation
        world_to_camera[:3, 3] = target - rotation @ face_centre  # the face centre lands on the target
        camera = Camera(focal, (size / 2.0, size / 2.0), (size, size), world_to_camera)
        return camera, {"yaw_deg": yaw, "pitch_deg": pitch, "roll_deg": roll}

    # ---- image -----------------------------------------------------------------------------------
    def draw(self, posed: np.ndarray, albedo: dict[int, np.ndarray], camera: Camera,
             rng: np.random.Generator) -> np.ndarray:
        """(S, S, 3) uint8 sRGB render of the posed head."""
        opt = self.options
        size, ss = opt.image_size, opt.supersample
        full = size * ss
        srgb_tiles = {tile: np.clip(np.rint(linear_to_srgb(img) * 255.0), 0, 255).astype(np.uint8)
                      for tile, img in albedo.items()}
        static = self.scene
        scene = _Scene(posed, static.triangles, static.flat_colour.copy(), static.textured, static.is_eye,
                       static.eye_directions, static.uv_triangles, static.uv_values,
                       TextureMap("albedo", srgb_tiles, "sRGB"))
        cam_points = camera.to_camera(posed)  # (N, 3) camera frame, looking down −Z
        depth = -cam_points[:, 2]
        screen = ss * camera.project(posed)  # (N, 2) pixels of the supersampled image
        tri = scene.triangles
        triangle_id, bary = rasterize(screen[tri], full, full, depth[tri])
        bary = perspective_correct(bary, triangle_id, depth[tri])
        covered = triangle_id >= 0  # (full, full)
        pix_tri, pix_bary = triangle_id[covered], bary[covered].astype(np.float64)  # (P,), (P, 3)

        vertex_normals = scene.vertex_normals @ camera.world_to_camera[:3, :3].T  # (N, 3) camera frame
        normals = np.einsum("pk,pkc->pc", pix_bary, vertex_normals[tri[pix_tri]])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)  # (P, 3)
        a, b, c = (cam_points[tri[:, k]] for k in range(3))
        facing_away = (np.cross(b - a, c - a)[:, 2] < 0)[pix_tri]  # back faces seen through the mouth or neck
        normals[facing_away] *= -1.0
        colour = scene.surface_colour(pix_tri, pix_bary)  # (P, 3) linear
        lit = colour * random_lighting(rng)(normals)  # (P, 3)

        rgb = np.zeros((full, full, 3), np.float32)
        rgb[covered] = lit
        alpha = cv2.resize(covered.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)[..., None]
        head = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        image = head + (1.0 - alpha) * random_background(rng, size)
        image = linear_to_srgb(np.clip(image, 0.0, 1.0)) + rng.normal(0.0, rng.uniform(0.0, 0.012), image.shape)
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        if rng.random() < opt.jpeg_probability:
            ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))])
            image = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])
        return image


def head_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """(3, 3) head → camera rotation: yaw about +Y (positive: the face turns to the image's right), then
    pitch about +X (positive: the face tilts down), then roll about the view axis."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    yaw = np.array([[np.cos(y), 0.0, np.sin(y)], [0.0, 1.0, 0.0], [-np.sin(y), 0.0, np.cos(y)]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(p), -np.sin(p)], [0.0, np.sin(p), np.cos(p)]])
    roll = np.array([[np.cos(r), -np.sin(r), 0.0], [np.sin(r), np.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return roll @ pitch @ yaw


def random_skin_tone(rng: np.random.Generator) -> np.ndarray:
    """(3,) linear RGB between the light and dark ends of SKIN_TONES (geometric interpolation)."""
    light, dark = (np.array(t) for t in SKIN_TONES)
    t = rng.random()
    return np.exp((1 - t) * np.log(light) + t * np.log(dark))


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 smooth random field in [0, 1] with about ``cells`` blobs per side."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def random_lighting(rng: np.random.Generator):
    """A random light rig → shading function of (P, 3) camera-frame normals → (P, 3) linear RGB factor.

    Ambient: a second-order spherical-harmonics irradiance ``c + l·n + nᵀQn`` (Q symmetric, traceless),
    in one slightly tinted colour; then 1–2 directional lights (Lambert) from the camera's half-space.
    The rig is scaled so a normal facing the camera gets a random exposure of 0.7–1.3.
    """
    ambient_colour = np.exp(rng.normal(0.0, 0.08, 3))
    constant = rng.uniform(0.25, 0.6)
    linear = rng.normal(0.0, 0.12, 3)
    q = rng.normal(0.0, 0.06, (3, 3))
    q = (q + q.T) / 2.0
    q -= np.eye(3) * np.trace(q) / 3.0
    lights = []
    for _ in range(rng.integers(1, 3)):
        direction = rng.normal(size=3)
        direction[2] = abs(direction[2]) + 0.3
        lights.append((direction / np.linalg.norm(direction), rng.uniform(0.3, 1.0) * np.exp(rng.normal(0.0, 0.08, 3))))

    def shade(normals: np.ndarray) -> np.ndarray:
        ambient = constant + normals @ linear + np.einsum("pi,ij,pj->p", normals, q, normals)  # (P,)
        out = np.clip(ambient, 0.05, None)[:, None] * ambient_colour
        for direction, colour in lights:
            out = out + np.clip(normals @ direction, 0.0, None)[:, None] * colour
        return out

    exposure = rng.uniform(0.7, 1.3) / float(shade(np.array([[0.0, 0.0, 1.0]])).mean())
    return lambda normals: exposure * shade(normals)


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 linear: a colour gradient with low-frequency blotches."""
    colours = srgb_to_linear(rng.uniform(0.05, 0.95, (2, 3)))  # two ends of the gradient
    angle = rng.uniform(0, 2 * np.pi)
    cols, rows = np.meshgrid(np.linspace(-0.5, 0.5, size), np.linspace(-0.5, 0.5, size))
    t = np.clip(0.5 + (cols * np.cos(angle) + rows * np.sin(angle)), 0.0, 1.0)[..., None]
    base = colours[0] * (1 - t) + colours[1] * t
    blotches = 1.0 + rng.uniform(0.0, 0.5) * (smooth_noise(rng, size, int(rng.integers(2, 8)))[..., None] - 0.5)
    return (base * blotches).astype(np.float32)


# ---- shards ------------------------------------------------------------------------------------

PREVIEWS_PER_SHARD = 8
PER_SAMPLE_KEYS = ("crop", "crop_affine", "landmarks", "image_size", "neutral", "identity", "deformation_rms_cm",
                   "expression", "classic_identity", "classic_rms_px", "classic_focal_px", "yaw_deg", "pitch_deg",
                   "roll_deg", "focal_px", "world_to_camera", "texture_id", "texture_mix_id", "texture_mirrored",
                   "index")


def shard_path(out: Path, shard: int) -> Path:
    return out / f"shard_{shard:05d}.npz"


def write_shard(portraits: SyntheticPortraits, out: Path, shard: int, indices: range, log=print) -> dict:
    """Render ``indices`` into ``out/shard_NNNNN.npz`` atomically; returns its counts."""
    start = time.perf_counter()
    samples, skipped = [], []
    for index in indices:
        sample = portraits.sample(index)
        if sample is None:
            skipped.append(index)
        else:
            samples.append(sample)
    arrays = {key: np.stack([s[key] for s in samples]) for key in PER_SAMPLE_KEYS} if samples else {}
    previews = samples[:PREVIEWS_PER_SHARD]
    info = {"format": GENERATOR_VERSION, "split": portraits.split, "seed": portraits.seed,
            "indices": [indices.start, indices.stop], "options": asdict(portraits.options),
            "texture_bank": str(portraits.bank.folder), "seconds": round(time.perf_counter() - start, 1)}
    with atomic_output_path(shard_path(out, shard)) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays, skipped=np.array(skipped, np.int64),
                 preview=np.stack([s["image"] for s in previews]) if previews else np.zeros((0, 0, 0, 3), np.uint8),
                 preview_index=np.array([s["index"] for s in previews], np.int64),
                 texture_names=np.array(portraits.texture_names), info=np.array(json.dumps(info)))
    counts = {"shard": shard, "samples": len(samples), "skipped": len(skipped), "seconds": info["seconds"]}
    log(json.dumps(counts))
    return counts


def write_dataset(portraits: SyntheticPortraits, out: str | Path, count: int, shard_size: int = 200,
                  log=print) -> list[dict]:
    """Every missing shard of indices 0 … count−1 (complete shards are kept); the counts of those written."""
    out = Path(out)
    if count < 1 or shard_size < 1:
        raise ValueError(f"count and shard size must be positive, got {count}, {shard_size}")
    out.mkdir(parents=True, exist_ok=True)
    return [write_shard(portraits, out, shard, range(first, min(first + shard_size, count)), log)
            for shard, first in enumerate(range(0, count, shard_size)) if not shard_path(out, shard).exists()]


class PortraitPairs:
    """Torch dataset over every shard of a folder; ``pairs[i]`` → dict of tensors (one detected sample).

    The shards' arrays are memory-mapped (the writer stores them uncompressed), so shuffled access
    reads only the sample's bytes and the OS page cache is shared by data-loader workers.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.shards = [memory_map_npz(path) for path in sorted(self.folder.glob("shard_*.npz"))]
        if not self.shards:
            raise ValueError(f"{self.folder}: no shard_*.npz files")
        sizes = [len(shard["index"]) if "index" in shard else 0 for shard in self.shards]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])  # (S + 1,)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict:
        import torch

        if not 0 <= index < len(self):
            raise IndexError(f"{len(self)} samples in {self.folder}, asked for {index}")
        number = int(np.searchsorted(self.offsets, index, side="right") - 1)
        local = index - int(self.offsets[number])
        return {key: torch.as_tensor(np.array(self.shards[number][key][local])) for key in PER_SAMPLE_KEYS}


def memory_map_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` as read-only memory maps (no pickled objects)."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for member in archive.infolist():
            if member.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: {member.filename} is compressed; shards must be written with np.savez")
            fh.seek(member.header_offset)
            local_header = fh.read(30)  # the zip local file header: name and extra-field lengths at 26 and 28
            name_length, extra_length = struct.unpack("<HH", local_header[26:30])
            fh.seek(member.header_offset + 30 + name_length + extra_length)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(fh)]
            shape, fortran_order, dtype = read_header(fh)
            name = member.filename.removesuffix(".npy")
            if np.prod(shape) == 0:  # an empty file region cannot be mapped
                arrays[name] = np.empty(shape, dtype)
            else:
                arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                         order="F" if fortran_order else "C")
    return arrays


def contact_sheet(folder: str | Path, count: int = 16, tile: int = 192, columns: int = 4) -> np.ndarray:
    """(rows·tile, columns·tile, 3) uint8: the shards' preview renders with their detected landmarks
    (green, iris red) and yaw, spread over the yaw range (sorted by |yaw|)."""
    previews = []
    for path in sorted(Path(folder).glob("shard_*.npz")):
        with np.load(path) as shard:
            row_of = {int(index): row for row, index in enumerate(shard["index"])}
            for image, index in zip(shard["preview"], shard["preview_index"]):
                row = row_of[int(index)]
                previews.append((float(shard["yaw_deg"][row]), image, shard["landmarks"][row]))
    if not previews:
        raise ValueError(f"{folder}: no preview renders in its shards")
    previews.sort(key=lambda p: abs(p[0]))
    chosen = [previews[i] for i in np.linspace(0, len(previews) - 1, min(count, len(previews))).round().astype(int)]
    tiles = []
    for yaw, image, landmarks in chosen:
        scale = tile / image.shape[0]
        out = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)
        for k, (x, y) in enumerate(landmarks[:, :2] * scale):
            cv2.circle(out, (int(x), int(y)), 1, (255, 40, 40) if k >= 468 else (40, 255, 40), -1)
        cv2.putText(out, f"yaw {yaw:+.0f}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(out)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    return np.concatenate([np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)], axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topos_server.data.synthetic_portraits",
                                     description="Write (synthetic portrait, neutral head) pairs for TOPOS-DiT "
                                                 "in shards.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", choices=tuple(SPLIT_STREAMS), required=True)
    parser.add_argument("--count", type=int, required=True, help="renders to attempt (indices 0 … count−1)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--shard-size", type=int, default=200)
    parser.add_argument("--bank-root", default=None, help="texture bank root (default: $TOPOS_HOME/texture_bank)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    portraits = SyntheticPortraits(args.split, args.seed, TextureBank(args.split, args.bank_root))
    written = write_dataset(portraits, args.out, args.count, args.shard_size, log=lambda line: print(line, flush=True))
    attempted = sum(c["samples"] + c["skipped"] for c in written)
    seconds = time.perf_counter() - start
    print(json.dumps({"shards_written": len(written), "attempted": attempted,
                      "detected": sum(c["samples"] for c in written),
                      "samples_per_s": round(attempted / seconds, 3) if attempted else None}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
