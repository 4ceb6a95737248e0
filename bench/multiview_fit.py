"""Several photos of one person vs one: neutral-skin shape error of the classic fit on synthetic renders
of held-out heads.

    python bench/multiview_fit.py [--heads 12] [--sheet docs/multiview_contact_sheet.png]

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
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402
from pose_fit import IMAGE_SIZE, SyntheticPortraits  # noqa: E402

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
    """One row per head: the three views' landmarks, then truth, 1-view and 3-view fits (grey, ¾ view)."""
    from topos_sdk import HeadResult
    from topos_sdk.preview import render_head

    tile = 220
    sheet_rows = []
    for row in rows:
        tiles = []
        for landmarks in row["landmarks"]:
            canvas = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 40, np.uint8)
            for x, y in np.round(landmarks[:, :2]).astype(int):
                cv2.circle(canvas, (int(x), int(y)), 2, (120, 200, 255), -1, cv2.LINE_AA)
            tiles.append(cv2.resize(canvas, (tile, tile), interpolation=cv2.INTER_AREA))
        for label, points in (("truth", row["truth"]), (f"1 view {row['error_1']:.2f} mm", row["fit_1"]),
                              (f"3 views {row['error_3']:.2f} mm", row["fit_3"])):
            image = render_head(HeadResult(points=points.astype(np.float32), topology=topology), yaw_deg=30.0,
                                size=tile)[:, :, :3].copy()
            cv2.putText(image, label, (6, tile - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(image)
        cv2.putText(tiles[0], "input landmarks: 0, +35, -35 deg", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (255, 255, 255), 1, cv2.LINE_AA)
        sheet_rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(sheet_rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of the first three heads here")
    args = parser.parse_args()

    from topos_server.data.synthetic_heads import SyntheticHeadOptions, SyntheticHeads
    from topos_server.engines.classic import ClassicEngine
    from topos_server.fit.landmark_fit import fit_landmarks, fit_landmarks_multiview

    engine = ClassicEngine()
    portraits = SyntheticPortraits(engine)
    from topos_server.assets.head_model import HeadModel

    model = HeadModel.load(engine.cache.head_model_file(), device="cpu")
    held_out = SyntheticHeads(model, engine.topology, seed=7100,
                              options=SyntheticHeadOptions(expression_probability=0.0))
    size = (IMAGE_SIZE, IMAGE_SIZE)
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
        single = fit_landmarks(engine.basis, views[0], size)
        seconds[1].append(time.perf_counter() - start)
        start = time.perf_counter()
        joint = fit_landmarks_multiview(engine.basis, views, [size] * len(views))
        seconds[3].append(time.perf_counter() - start)
        fits = {1: engine.identity_points(single.identity), 3: engine.identity_points(joint[0].identity)}
        for (n, region, scaled), values in errors.items():
            vertices = regions[region]
            values.append(aligned_error_mm(fits[n][vertices], truth[vertices], with_scale=scaled).mean())
        line = ", ".join(f"{n} view{'s' if n > 1 else ''} {errors[(n, 'front', True)][-1]:.2f} mm" for n in (1, 3))
        print(f"head {index} (front, shape): {line}", flush=True)
        if len(rows) < 3:
            rows.append({"landmarks": views, "truth": truth, "fit_1": fits[1], "fit_3": fits[3],
                         "error_1": errors[(1, "front", True)][-1], "error_3": errors[(3, "front", True)][-1]})

    print(f"\nmachine: {machine_description()}")
    print(f"{args.heads} held-out heads; fit {np.median(seconds[1]):.2f} s (1 view), {np.median(seconds[3]):.2f} s "
          f"(3 views), median\n")
    print("| region, alignment | 1 view (mean / median) | 3 views (mean / median) | 3 views lower by |")
    print("|---|---|---|---|")
    for region in regions:
        for scaled in (True, False):
            one, three = errors[(1, region, scaled)], errors[(3, region, scaled)]
            print(f"| {region}, {'similarity' if scaled else 'rigid'} | {np.mean(one):.2f} / {np.median(one):.2f} mm | "
                  f"{np.mean(three):.2f} / {np.median(three):.2f} mm | {100 * (1 - np.mean(three) / np.mean(one)):.0f} % "
                  f"({sum(a < b for a, b in zip(three, one))} of {args.heads} heads) |")
    if args.sheet:
        render_sheet(rows, engine.topology, args.sheet)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
