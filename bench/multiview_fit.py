"""Several photos of one person vs one: neutral-skin shape error of the classic fit and of the topos engine
on synthetic renders of held-out heads.

    python bench/multiview_fit.py [--heads 12] [--sheet docs/multiview_contact_sheet.png]
    python bench/multiview_fit.py --photos [--heads 40]
    OMP_NUM_THREADS=1 python bench/multiview_fit.py --engine topos [--heads 12] [--seed 0]

Heads: the ICT model's identity ~ N(0, 1) deformed outside the model's span (data/synthetic_heads.py:
random RBF warps of a few mm and a region scaling, no expression; seeds no training or test uses) — the
"held-out" truth no coefficient vector reproduces exactly. Each is photographed three times, from yaw 0°
and ±35° (pitch ±8°, roll ±4°), each photo with its own random expression, through a 512² pinhole camera
whose focal length the fit estimates; the detector's landmarks are simulated as in bench/pose_fit.py.
1 view = the frontal photo alone; 3 views = all three fitted jointly (shared identity, per-view pose,
focal length and expression). Error: the fitted neutral head vs the true neutral head, mean per-vertex
distance in mm, over the front of the face the landmarks see (ICT ``narrow_face``, 6,706 vertices) and
over the whole face sub-mesh (9,409: also ears, temples, under the chin, which no landmark constrains);
after a similarity alignment (rotation, translation, scale: the shape) and after a rigid one (a wrong
size counts; no number of photos fixes the size: scaling the head and every camera distance together
changes no photo, so it stays the prior's).

``--photos`` (classic): the same heads rendered as photos, as ``--engine topos`` below renders them, and the
real face front-end on every photo; the classic fit 1 view vs 3 views, and the mean head.

``--engine topos``: the DiT conditions on the image crop, so the same held-out heads (same seeds, same views, same
per-view expressions) are rendered as photos instead of simulated landmarks: textured with held-out portraits'
albedo (``TextureBank("eval")``), lit and drawn at 256² as ``data/synthetic_portraits.py`` draws the DiT's
evaluation pairs (its random focal length, distance and offset; the view's yaw, pitch and roll as above), and the
real face front-end runs on every photo. 1 view = ``ToposEngine.fit_portrait`` on the frontal photo (seed
``--seed``); 3 views = ``ToposEngine.fit_same_person`` (one DiT sample per photo, seeds ``seed``…``seed + 2``,
reconciled into one identity: their mean, refined by the skin's shading across the photos). Same errors and
alignments. On the same photos and detected landmarks, for comparison: the classic fit (1 view; 3 views jointly, as
shipped and by the landmarks alone), the mean head, and what else the engine could do with the samples — the mean
of the samples without the shading refinement (``topos_3_mean``), 1 photo sampled 3 times (seeds ``seed``…``seed +
2``: what averaging alone buys), each photo's sample on its own, the sample whose photo the fit reprojects best,
and a multi-view landmark fit of the identity modes around the mean of the samples."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402
from pose_fit import IMAGE_SIZE, SyntheticPortraits, render_view  # noqa: E402

VIEW_YAWS = (0.0, 35.0, -35.0)
OBSERVED_GROUP = "narrow_face"  # ICT's front of the face: the part the landmarks see
FACE_VERTEX_COUNT = 9409  # ICT's face sub-mesh: vertices 0 to 9408


def aligned_error_mm(fitted: np.ndarray, truth: np.ndarray, with_scale: bool = False) -> np.ndarray:
    """(V,) per-vertex distance in mm after the best rotation + translation (+ scale) of ``fitted`` onto
    ``truth`` (cm)."""
    from scipy.spatial.transform import Rotation

    a, b = fitted - fitted.mean(axis=0), truth - truth.mean(axis=0)
    rotation, _ = Rotation.align_vectors(b, a)
    a = rotation.apply(a)
    if with_scale:
        a *= (a * b).sum() / (a * a).sum()
    return 10.0 * np.linalg.norm(a - b, axis=1)


def render_sheet(rows: list[dict], topology, path: Path) -> None:
    """One row per head: the three views (photos or landmarks), then the truth and each fit of ``row["heads"]``
    ((label, (N, 3) points) pairs; grey, ¾ view)."""
    from topos_sdk import HeadResult
    from topos_sdk.preview import render_head

    tile = 220
    sheet_rows = []
    for row in rows:
        tiles = [cv2.resize(photo, (tile, tile), interpolation=cv2.INTER_AREA) for photo in row.get("photos", ())]
        for landmarks in row.get("landmarks", ()):
            canvas = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 40, np.uint8)
            for x, y in np.round(landmarks[:, :2]).astype(int):
                cv2.circle(canvas, (int(x), int(y)), 2, (120, 200, 255), -1, cv2.LINE_AA)
            tiles.append(cv2.resize(canvas, (tile, tile), interpolation=cv2.INTER_AREA))
        for label, points in row["heads"]:
            image = render_head(HeadResult(points=points.astype(np.float32), topology=topology), yaw_deg=30.0,
                                size=tile)[:, :, :3].copy()
            cv2.putText(image, label, (6, tile - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(image)
        inputs = "photos" if "photos" in row else "landmarks"
        cv2.putText(tiles[0], f"input {inputs}: 0, +35, -35 deg", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (255, 255, 255), 1, cv2.LINE_AA)
        sheet_rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(sheet_rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--engine", choices=("classic", "topos"), default="classic",
                        help="classic: simulated landmarks, the classic fit; topos: rendered photos, both engines")
    parser.add_argument("--seed", type=int, default=0, help="--engine topos: the DiT seed")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of the first --sheet-heads heads here")
    parser.add_argument("--sheet-heads", type=int, default=3)
    parser.add_argument("--photos", action="store_true",
                        help="classic: rendered photos through the real front-end instead of simulated landmarks")
    args = parser.parse_args()
    if args.engine == "topos":
        return topos_views(args)
    if args.photos:
        return classic_photo_views(args)

    from topos_server.data.synthetic_heads import SyntheticHeadOptions, SyntheticHeads
    from topos_server.engines.classic import ClassicEngine
    from topos_server.fit.landmark_fit import FitWeights, fit_landmarks, fit_landmarks_multiview

    engine = ClassicEngine()
    portraits = SyntheticPortraits(engine)
    from topos_server.assets.head_model import HeadModel

    model = HeadModel.load(engine.cache.head_model_file(), device="cpu")
    held_out = SyntheticHeads(model, engine.topology, seed=7100,
                              options=SyntheticHeadOptions(expression_probability=0.0))
    size = (IMAGE_SIZE, IMAGE_SIZE)
    # simulated landmarks sit exactly on the embedded points: the turned-head table (the real detector's) stays off
    simulated = FitWeights(turned_offsets=False)
    regions = {"front": engine.topology.vertex_groups[OBSERVED_GROUP], "face": np.arange(FACE_VERTEX_COUNT)}
    errors = {(n, region, scaled): [] for n in (1, 3) for region in regions for scaled in (True, False)}
    seconds = {1: [], 3: []}
    rows = []
    for index in range(args.heads):
        rng = np.random.default_rng([7100, index])
        truth = held_out.head(rng)  # (N, 3) neutral, outside the model's span
        views = []
        for yaw in VIEW_YAWS:
            expression = np.zeros(engine.expression_basis.shape[0])
            chosen = rng.choice(len(expression), size=3, replace=False)
            expression[chosen] = rng.uniform(0, 0.4, 3)
            posed = truth + np.tensordot(expression, engine.expression_basis, axes=1)
            landmarks, _, _ = portraits.render(posed, yaw, rng.uniform(-8, 8), rng.uniform(-4, 4), rng)
            views.append(landmarks)
        start = time.perf_counter()
        single = fit_landmarks(engine.basis, views[0], size, weights=simulated)
        seconds[1].append(time.perf_counter() - start)
        start = time.perf_counter()
        joint = fit_landmarks_multiview(engine.basis, views, [size] * len(views), weights=simulated)
        seconds[3].append(time.perf_counter() - start)
        fits = {1: engine.identity_points(single.identity), 3: engine.identity_points(joint[0].identity)}
        for (n, region, scaled), values in errors.items():
            vertices = regions[region]
            values.append(aligned_error_mm(fits[n][vertices], truth[vertices], with_scale=scaled).mean())
        line = ", ".join(f"{n} view{'s' if n > 1 else ''} {errors[(n, 'front', True)][-1]:.2f} mm" for n in (1, 3))
        print(f"head {index} (front, shape): {line}", flush=True)
        if len(rows) < args.sheet_heads:
            rows.append({"landmarks": views, "heads": [
                ("truth", truth), (f"1 view {errors[(1, 'front', True)][-1]:.2f} mm", fits[1]),
                (f"3 views {errors[(3, 'front', True)][-1]:.2f} mm", fits[3])]})

    print(f"\nmachine: {machine_description()}")
    print(f"{args.heads} held-out heads; fit {np.median(seconds[1]):.2f} s (1 view), {np.median(seconds[3]):.2f} s "
          f"(3 views), median\n")
    print_views_table(errors, 1, 3, regions, args.heads)
    if args.sheet:
        render_sheet(rows, engine.topology, args.sheet)
        print(f"contact sheet: {args.sheet}")


def print_views_table(errors: dict, one_view, three_views, regions: dict, count: int, mean_head=None) -> None:
    """The markdown table of 1 view against 3 views per region and alignment (mean / median mm, and on how many of
    the ``count`` heads three views did better); ``errors`` is keyed (method, region, scaled); with ``mean_head``
    (that method's key) a column for the mean head."""
    extra = " mean head |" if mean_head is not None else ""
    print("| region, alignment | 1 view (mean / median) | 3 views (mean / median) | 3 views lower by |" + extra)
    print("|---|---|---|---|" + ("---|" if mean_head is not None else ""))
    for region in regions:
        for scaled in (True, False):
            one, three = errors[(one_view, region, scaled)], errors[(three_views, region, scaled)]
            alignment = "similarity" if scaled else "rigid"
            line = (f"| {region}, {alignment} | {np.mean(one):.2f} / {np.median(one):.2f} mm "
                    f"| {np.mean(three):.2f} / {np.median(three):.2f} mm | "
                    f"{100 * (1 - np.mean(three) / np.mean(one)):.0f} % ({sum(a < b for a, b in zip(three, one))} "
                    f"of {count} heads) |")
            if mean_head is not None:
                line += f" {np.mean(errors[(mean_head, region, scaled)]):.2f} mm |"
            print(line)


def photographed_head(classic, photos_of, held_out, index: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Held-out head ``index`` (N, 3) and its three photos: the simulated-landmark rows' head, per-view
    expressions and pitch/roll draws (in their order), textured, lit and drawn as the DiT's eval pairs."""
    rng = np.random.default_rng([7100, index])
    truth = held_out.head(rng)  # (N, 3)
    expressions = []
    for _ in VIEW_YAWS:
        expression = np.zeros(classic.expression_basis.shape[0])
        chosen = rng.choice(len(expression), size=3, replace=False)
        expression[chosen] = rng.uniform(0, 0.4, 3)
        expressions.append((expression, rng.uniform(-8, 8), rng.uniform(-4, 4)))
    albedo, _ = photos_of.albedo(rng)
    photos = [render_view(photos_of, truth + np.tensordot(expression, classic.expression_basis, axes=1), albedo,
                          yaw, pitch, roll, rng)[0] for yaw, (expression, pitch, roll) in zip(VIEW_YAWS, expressions)]
    return truth, photos


def detected_photographed_heads(classic, count: int, skipped: list[str]):
    """The first ``count`` held-out heads as photos (:func:`photographed_head`) with the front-end run on each:
    yields (index, truth (N, 3), photos, faces, sizes); a head with a photo the front-end misses is counted
    in ``skipped`` (not fatal)."""
    from topos_server.assets.head_model import HeadModel
    from topos_server.data.synthetic_heads import SyntheticHeadOptions, SyntheticHeads
    from topos_server.data.synthetic_portraits import SyntheticPortraits as PhotoPortraits

    photos_of = PhotoPortraits("eval", seed=7100, engine=classic)  # held-out portraits' albedo; its light and camera
    model = HeadModel.load(classic.cache.head_model_file(), device="cpu")
    held_out = SyntheticHeads(model, classic.topology, seed=7100,
                              options=SyntheticHeadOptions(expression_probability=0.0))
    for index in range(count):
        truth, photos = photographed_head(classic, photos_of, held_out, index)
        try:
            faces = [classic.detect(photo) for photo in photos]
        except Exception as exc:  # noqa: BLE001 — a photo the front-end misses is counted, not fatal
            skipped.append(f"head {index}: {exc}")
            print(f"head {index}: skipped ({exc})", flush=True)
            continue
        yield index, truth, photos, faces, [(photo.shape[1], photo.shape[0]) for photo in photos]


def classic_photo_views(args) -> None:
    """``--photos``: the classic fit on the held-out heads rendered as photos through the real front-end
    (as ``--engine topos`` renders them, without the DiT), 1 view vs 3 views, and the mean head."""
    from topos_server.engines.classic import ClassicEngine
    from topos_server.fit.landmark_fit import fit_landmarks, fit_landmarks_multiview
    from topos_server.fit.shading_refinement import refine_identity_by_shading

    classic = ClassicEngine()
    regions = {"front": classic.topology.vertex_groups[OBSERVED_GROUP], "face": np.arange(FACE_VERTEX_COUNT)}
    methods = ("classic_1", "classic_3", "classic_3_shading", "mean_head")
    errors = {(m, region, scaled): [] for m in methods for region in regions for scaled in (True, False)}
    skipped, seconds = [], []
    for index, truth, photos, faces, sizes in detected_photographed_heads(classic, args.heads, skipped):
        single = fit_landmarks(classic.basis, faces[0].points, sizes[0])
        joint = fit_landmarks_multiview(classic.basis, [face.points for face in faces], sizes)
        start = time.perf_counter()
        shaded = refine_identity_by_shading(photos, joint, [face.points for face in faces], classic.shading_head_model,
                                            classic.topology)
        seconds.append(time.perf_counter() - start)
        fits = {"classic_1": classic.identity_points(single.identity),
                "classic_3": classic.identity_points(joint[0].identity),
                "classic_3_shading": classic.identity_points(shaded), "mean_head": classic.neutral}
        for (method, region, scaled), values in errors.items():
            vertices = regions[region]
            values.append(aligned_error_mm(fits[method][vertices], truth[vertices], with_scale=scaled).mean())
        print(f"head {index} (front, shape): " + ", ".join(f"{m} {errors[(m, 'front', True)][-1]:.2f}"
                                                           for m in methods) + " mm", flush=True)
    count = len(errors[("classic_1", "front", True)])
    print(f"\nmachine: {machine_description()}")
    print(f"{count} held-out heads ({len(skipped)} skipped: a photo without a detected face), rendered photos, "
          f"detected landmarks, the classic fit; shading refinement {np.median(seconds):.1f} s median\n")
    print("landmarks only (fit_landmarks_multiview):\n")
    print_views_table(errors, "classic_1", "classic_3", regions, count, mean_head="mean_head")
    print("\nlandmarks, then the shading across the photos (fit/shading_refinement.py), as the engine ships:\n")
    print_views_table(errors, "classic_1", "classic_3_shading", regions, count, mean_head="mean_head")


def topos_views(args) -> None:
    """``--engine topos``: the held-out heads as rendered photos; the topos engine 1 view vs 3 views, and on the same
    photos the classic fit, the mean head and the alternatives to the engine's reconciliation (module notes)."""
    from topos_server.engines.classic import MEDIAPIPE_LANDMARKS
    from topos_server.engines.topos import ToposEngine, reconcile_view_heads
    from topos_server.fit.landmark_fit import LandmarkBasis, fit_landmarks_multiview
    from topos_server.fit.shading_refinement import refine_identity_by_shading

    engine = ToposEngine()
    classic = engine.classic
    regions = {"front": engine.topology.vertex_groups[OBSERVED_GROUP], "face": np.arange(FACE_VERTEX_COUNT)}
    methods = ("topos_1", "topos_3", "topos_3_mean", "classic_1", "classic_3", "classic_3_landmarks", "mean_head",
               "topos_1x3", "each_view", "best_rms", "topos_3_landmark_fit")
    errors = {(m, region, scaled): [] for m in methods for region in regions for scaled in (True, False)}
    seconds = {"topos_1": [], "topos_3": []}
    rows, skipped = [], []
    for index, truth, photos, faces, sizes in detected_photographed_heads(classic, args.heads, skipped):
        start = time.perf_counter()
        one = engine.fit_portrait(photos[0], seeds=[args.seed])[0]
        seconds["topos_1"].append(time.perf_counter() - start)
        start = time.perf_counter()
        three = engine.fit_same_person(photos, seed=args.seed)
        seconds["topos_3"].append(time.perf_counter() - start)
        per_view = [engine.fit_portrait(photo, seeds=[args.seed + view])[0] for view, photo in enumerate(photos)]
        samples = np.stack([head.points for head in per_view])  # (3, N, 3): the samples fit_same_person reconciles
        repeated = engine.fit_portrait(photos[0], seeds=[args.seed + k for k in range(len(photos))])
        around = LandmarkBasis.from_model(engine.topology.landmarks[MEDIAPIPE_LANDMARKS], three.points,
                                          classic.identity_basis, classic.expression_basis,
                                          contour_pool=engine.contour_pool)
        refit = fit_landmarks_multiview(around, [face.points for face in faces], sizes)
        single = classic.fit_portrait(photos[0])[0]
        joint = fit_landmarks_multiview(classic.basis, [face.points for face in faces], sizes)
        shaded = refine_identity_by_shading(photos, joint, [face.points for face in faces], classic.shading_head_model,
                                            classic.topology)
        fits = {"topos_1": [one.points], "topos_3": [three.points],
                "classic_1": [single.points], "classic_3": [classic.identity_points(shaded)],
                "classic_3_landmarks": [classic.identity_points(joint[0].identity)],
                "mean_head": [classic.neutral],
                "topos_3_mean": [reconcile_view_heads(samples)],  # the engine's reconciliation before the shading
                "topos_1x3": [reconcile_view_heads(np.stack([head.points for head in repeated]))],
                "each_view": list(samples),  # every photo's own sample: the error of one of them, on average
                "best_rms": [samples[int(np.argmin([h.provenance.extra["fit_rms_px"] for h in per_view]))]],
                "topos_3_landmark_fit": [three.points
                                         + np.tensordot(refit[0].identity, classic.identity_basis, axes=1)]}
        for (method, region, scaled), values in errors.items():
            vertices = regions[region]
            values.append(np.mean([aligned_error_mm(points[vertices], truth[vertices], with_scale=scaled).mean()
                                   for points in fits[method]]))
        print(f"head {index} (front, shape): " + ", ".join(f"{m} {errors[(m, 'front', True)][-1]:.2f}"
                                                           for m in methods) + " mm", flush=True)
        if len(rows) < args.sheet_heads:
            rows.append({"photos": photos, "heads": [("truth", truth)] + [
                (f"{label} {errors[(method, 'front', True)][-1]:.2f} mm", fits[method][0])
                for method, label in (("topos_1", "topos 1 view"), ("topos_3", "topos 3 views"),
                                      ("classic_1", "classic 1 view"), ("classic_3", "classic 3 views"))]})

    count = len(errors[("topos_1", "front", True)])
    print(f"\nmachine: {machine_description()}")
    print(f"{count} held-out heads ({len(skipped)} skipped: a photo without a detected face), DiT seed {args.seed}; "
          f"topos {np.median(seconds['topos_1']):.2f} s (1 view), {np.median(seconds['topos_3']):.2f} s (3 views), "
          f"median, untextured\n")
    for first, second, label in (("topos_1", "topos_3", "topos engine"), ("classic_1", "classic_3", "classic fit")):
        print(f"{label}, rendered photos, detected landmarks:\n")
        print_views_table(errors, first, second, regions, count)
        print()
    print("every method, mean mm (front similarity / front rigid / face similarity / face rigid):\n")
    for method in methods:
        print(f"- {method}: " + " / ".join(f"{np.mean(errors[(method, region, scaled)]):.2f}"
                                           for region in regions for scaled in (True, False)))
    if args.sheet:
        render_sheet(rows, engine.topology, args.sheet)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
