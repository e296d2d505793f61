"""Fit and measure the per-region quality estimate: ``python -m cxr_dash.quality_fit``.

Rows: every SCR case a region's model did not train on (``--models``; for a
set trained on every case, a set of the same recipe trained on one fold),
as stored and under synthetic degradations (squashed, cropped, zoomed out,
rotated, blurred, noisy, other tone curves, inverted, lungs blacked out, a
dense patch). Each row holds the features of :mod:`cxr_dash.quality_estimate`
and the Jaccard the post-processed mask really scores. A ridge regression
per region is fitted on them; its figures on SCR are cross-validated by case
(no case scores a regression that saw it). ``--external DIR`` then measures
the fitted estimate on another hospital's lung set (mean of the two lung
estimates against the lungs' union Jaccard), which never takes part in the
fit. ``--write DIR`` stores the estimate in a model set (``quality.json``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import spearmanr

from . import data as scr
from .cli import model_set_or_exit, open_dataset, progress_bar
from .evaluate import heldout_by_region
from .inference import to_mask
from .metrics import jaccard
from .quality_estimate import (FEATURES, QualityModel, feature_table, fit_ridge,
                               perturbed_probabilities, region_statistics)

POOR = 0.85          # "real Jaccard < 0.85": what the warning should catch
# Severe ones (a mask lost or halved) and mild ones, the kind another hospital's export
# brings (a mask off by a few percent): the estimate must rank both.
DEGRADATIONS = ("squash", "crop_top", "zoom_out", "rotate", "blur", "noise", "gamma_low",
                "gamma_high", "invert", "lungs_black", "dense_patch", "low_resolution",
                "squash_mild", "crop_side", "zoom_out_grey", "export", "consolidation",
                "low_contrast")


def _resize_all(image, masks, shape):
    size = (shape[1], shape[0])
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            {r: cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
             for r, m in masks.items()})


def _warp_all(image, masks, matrix):
    h, w = image.shape
    warp = lambda a, flag: cv2.warpAffine(a, matrix, (w, h), flags=flag,   # noqa: E731
                                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return (warp(image, cv2.INTER_LINEAR),
            {r: warp(m.astype(np.uint8), cv2.INTER_NEAREST) > 0 for r, m in masks.items()})


def degrade(kind: str, image: np.ndarray, masks: dict, rng: np.random.Generator):
    """(image, masks) after one synthetic degradation; masks follow the geometry."""
    img = image.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    unit = (img - lo) / max(hi - lo, 1e-6)
    h, w = img.shape
    if kind == "squash":
        return _resize_all(img, masks, (int(h * rng.uniform(0.45, 0.6)), w))
    if kind == "crop_top":
        cut = int(h * rng.uniform(0.2, 0.4))
        return img[cut:], {r: m[cut:] for r, m in masks.items()}
    if kind in ("zoom_out", "rotate"):
        angle = rng.choice([-1, 1]) * rng.uniform(18, 35) if kind == "rotate" else 0.0
        scale = rng.uniform(0.45, 0.65) if kind == "zoom_out" else 1.0
        return _warp_all(img, masks, cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale))
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.006, 0.015) * w), masks
    if kind == "noise":
        return unit + rng.normal(0, rng.uniform(0.08, 0.2), img.shape).astype(np.float32), masks
    if kind in ("gamma_low", "gamma_high"):
        return unit ** (rng.uniform(0.2, 0.35) if kind == "gamma_low" else rng.uniform(3, 5)), masks
    if kind == "invert":
        return 1.0 - unit, masks
    if kind == "lungs_black":
        lungs = masks["left_lung"] | masks["right_lung"]
        side = rng.choice(["left_lung", "right_lung", "both"])
        hide = lungs if side == "both" else masks[side]
        out = unit.copy()
        out[hide] = float(np.percentile(unit, 1))
        return out, masks
    if kind == "dense_patch":
        out = unit.copy()
        ys, xs = np.nonzero(masks["left_lung"] | masks["right_lung"])
        i = rng.integers(len(ys))
        cv2.ellipse(out, (int(xs[i]), int(ys[i])), (int(w * rng.uniform(0.08, 0.2)),
                    int(h * rng.uniform(0.1, 0.25))), 0, 0, 360, float(np.percentile(unit, 98)), -1)
        return out, masks
    if kind == "squash_mild":
        return _resize_all(img, masks, (int(h * rng.uniform(0.7, 0.85)), w))
    if kind == "crop_side":
        cut = int(w * rng.uniform(0.08, 0.22))
        keep = slice(cut, None) if rng.uniform() < 0.5 else slice(None, w - cut)
        return img[:, keep], {r: m[:, keep] for r, m in masks.items()}
    if kind == "zoom_out_grey":
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-8, 8), rng.uniform(0.6, 0.85))
        level = float(np.percentile(img, rng.uniform(30, 70)))
        out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=level)
        return out, _warp_all(img, masks, m)[1]
    if kind == "export":     # another tone curve and edge enhancement
        sharp = unit + rng.uniform(1.0, 2.5) * (unit - cv2.GaussianBlur(unit, (0, 0), w * 0.006))
        return np.clip(sharp, 0, 1) ** rng.uniform(0.6, 1.6), masks
    if kind == "consolidation":
        lung = masks["left_lung"] if rng.uniform() < 0.5 else masks["right_lung"]
        ys, xs = np.nonzero(lung)
        i = rng.integers(len(ys))
        patch = np.zeros_like(unit)
        cv2.ellipse(patch, (int(xs[i]), int(ys[i])), (int(w * rng.uniform(0.06, 0.14)),
                    int(h * rng.uniform(0.08, 0.2))), 0, 0, 360, 1.0, -1)
        patch = cv2.GaussianBlur(patch, (0, 0), w * 0.03) * lung
        texture = cv2.GaussianBlur(rng.uniform(0.6, 1.4, unit.shape).astype(np.float32), (0, 0), w / 100)
        return unit + patch * texture * rng.uniform(0.4, 0.9) * (1 - unit), masks
    if kind == "low_contrast":
        flat = 0.3 + unit * rng.uniform(0.25, 0.5)
        ok, buf = cv2.imencode(".jpg", np.uint8(flat * 255), [cv2.IMWRITE_JPEG_QUALITY, 30])
        return cv2.imdecode(buf, 0).astype(np.float32), masks
    if kind == "low_resolution":
        small = cv2.resize(unit, (96, 96), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", np.uint8(np.clip(small, 0, 1) * 255), [cv2.IMWRITE_JPEG_QUALITY, 10])
        return cv2.resize(cv2.imdecode(buf, 0).astype(np.float32), (w, h)), masks
    raise ValueError(kind)


def score_rows(seg, image, masks, regions, variant: str, case: str, stats: dict) -> list[dict]:
    """One row per region: its features on this image and the Jaccard it really scores."""
    probs = seg.predict(image, regions, one_piece_at=None, trim_borders=False)
    perturbed = perturbed_probabilities(seg, np.asarray(image, np.float32), regions)
    features = feature_table(probs, perturbed, stats)
    rows = []
    for region in regions:
        truth = masks[region]
        prob = probs[region]
        if prob.shape != truth.shape:
            prob = cv2.resize(prob, truth.shape[::-1], interpolation=cv2.INTER_AREA)
        rows.append({"case": case, "variant": variant, "region": region,
                     "jaccard": jaccard(to_mask(prob), truth), "features": features[region]})
    return rows


def build_rows(seg, dataset, degradations: int, seed: int, limit: int | None) -> tuple[list, dict]:
    heldout = heldout_by_region(seg, dataset.cases_with_masks(), limit=limit)
    cases = sorted({c for cs in heldout.values() for c in cs})
    stats = reference_statistics(dataset, seg)
    rng = np.random.default_rng(seed)
    rows = []
    for i, case_id in enumerate(cases):
        case = dataset.load_case(case_id)
        regions = [r for r in seg.regions if case_id in heldout[r]]
        rows += score_rows(seg, case.image, case.masks, regions, "as stored", case_id, stats)
        for kind in rng.choice(DEGRADATIONS, size=degradations, replace=False):
            image, masks = degrade(str(kind), case.image, case.masks, rng)
            if any(not masks[r].any() for r in regions):
                continue     # a crop that removed a structure: nothing to score
            rows += score_rows(seg, image, masks, regions, str(kind), case_id, stats)
        progress_bar(i + 1, len(cases), case_id)
    return rows, stats


def reference_statistics(dataset, seg) -> dict:
    """SCR statistics (area, centroid) from the reference masks of the set's training cases."""
    trained = sorted(set().union(*(seg.training_cases(r) for r in seg.regions)))
    cases = trained or dataset.cases_with_masks()
    return region_statistics([dataset.load_case(c).masks for c in cases[::2]])


def cross_validated(rows: list[dict], regions, folds: int = 5) -> dict[str, np.ndarray]:
    """{region: estimate per row}, each from a regression fitted without that row's case."""
    out = {}
    for region in regions:
        rs = [r for r in rows if r["region"] == region]
        cases = sorted({r["case"] for r in rs})
        fold_of = {c: i % folds for i, c in enumerate(cases)}
        x = np.asarray([r["features"] for r in rs])
        y = np.asarray([r["jaccard"] for r in rs])
        est = np.zeros(len(rs))
        for k in range(folds):
            test = np.asarray([fold_of[r["case"]] == k for r in rs])
            model = QualityModel({region: fit_ridge(x[~test], y[~test])}, {})
            est[test] = [model.estimate(region, f) for f in x[test]]
        out[region] = est
    return out


def agreement(estimate, real, threshold: float) -> dict:
    """Spearman, mean absolute error, and the warning's precision and recall for real < POOR."""
    estimate, real = np.asarray(estimate), np.asarray(real)
    warned, poor = estimate < threshold, real < POOR
    return {"n": int(len(real)), "spearman": float(spearmanr(estimate, real).statistic),
            "mae": float(np.mean(np.abs(estimate - real))),
            "poor": int(poor.sum()), "warned": int(warned.sum()),
            "precision": float((warned & poor).sum() / warned.sum()) if warned.any() else None,
            "recall": float((warned & poor).sum() / poor.sum()) if poor.any() else None}


def choose_threshold(estimate, real) -> float:
    """The warning threshold with the best F1 for real Jaccard < POOR (SCR rows only)."""
    estimate, real = np.asarray(estimate), np.asarray(real)
    best, best_f1 = POOR, -1.0
    for t in np.arange(0.60, 0.95, 0.01):
        warned, poor = estimate < t, real < POOR
        tp = (warned & poor).sum()
        f1 = 2 * tp / max(1, warned.sum() + poor.sum())
        if f1 > best_f1:
            best, best_f1 = float(round(t, 2)), f1
    return best


def external_rows(seg, model: QualityModel, root: str, limit: int | None) -> list[dict]:
    """Per case of an external lung set: the lungs' estimate and their real union Jaccard."""
    from .external import LUNGS, find_cases, score_case
    from .imaging import read_image, read_mask

    rows = []
    cases = find_cases(root)[: limit or None]
    for i, case in enumerate(cases):
        image = read_image(case.image_path).pixels
        truth = read_mask(case.mask_path)
        quality = seg.estimate_quality(image, regions=LUNGS, quality_model=model)
        probs = seg.predict(image, LUNGS)
        rows.append({"case": case.name, "group": case.group,
                     "estimate": float(np.mean([quality[r] for r in LUNGS])),
                     "jaccard": score_case(probs, truth)["jaccard"]})
        progress_bar(i + 1, len(cases), case.name)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxr_dash.quality_fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="model set whose held-out cases give the rows")
    p.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    p.add_argument("--degradations", type=int, default=3, help="degraded copies per case")
    p.add_argument("--limit", type=int, default=None, help="first N held-out cases per region")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", default=None, help="reuse rows saved by an earlier run (JSON)")
    p.add_argument("--external", default=None, metavar="DIR", help="measure on an external lung set")
    p.add_argument("--external-models", default=None, metavar="DIR",
                   help="model set to measure there (default: --models)")
    p.add_argument("--write", default=None, metavar="MODEL_DIR", help="store quality.json there")
    p.add_argument("--out", default="results/quality")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seg = model_set_or_exit(parser, args.models)
    if args.rows:
        saved = json.loads(Path(args.rows).read_text())
        rows, stats = saved["rows"], saved["stats"]
    else:
        rows, stats = build_rows(seg, open_dataset(args.data), args.degradations, args.seed, args.limit)
        (out / "rows.json").write_text(json.dumps({"features": FEATURES, "stats": stats, "rows": rows}))
    regions = [r for r in seg.regions if any(row["region"] == r for row in rows)]
    estimates = cross_validated(rows, regions)
    all_est = np.concatenate([estimates[r] for r in regions])
    all_real = np.concatenate([[row["jaccard"] for row in rows if row["region"] == r] for r in regions])
    threshold = choose_threshold(all_est, all_real)
    report = {"threshold": threshold, "scr_cross_validated": {}}
    for region in regions:
        real = [row["jaccard"] for row in rows if row["region"] == region]
        stored = [row["variant"] == "as stored" for row in rows if row["region"] == region]
        report["scr_cross_validated"][region] = {
            "all rows": agreement(estimates[region], real, threshold),
            "as stored": agreement(np.asarray(estimates[region])[stored], np.asarray(real)[stored],
                                   threshold)}
        print(f"{region}: SCR (cross-validated) {report['scr_cross_validated'][region]}")
    model = QualityModel({r: fit_ridge(np.asarray([row["features"] for row in rows if row["region"] == r]),
                                       np.asarray([row["jaccard"] for row in rows if row["region"] == r]))
                          for r in regions}, stats, threshold,
                         f"{len(rows)} rows: held-out SCR cases of {seg.model_dir}, as stored and degraded")
    if args.external:
        target = model_set_or_exit(parser, args.external_models or args.models)
        ext = external_rows(target, model, args.external, args.limit)
        report["external"] = {"all": agreement([r["estimate"] for r in ext], [r["jaccard"] for r in ext],
                                               threshold), "rows": ext}
        for group in sorted({r["group"] for r in ext}):
            g = [r for r in ext if r["group"] == group]
            report["external"][group] = agreement([r["estimate"] for r in g], [r["jaccard"] for r in g],
                                                  threshold)
        print(f"external {Path(args.external).name}: {report['external']['all']}")
    if args.write:
        model.save(args.write, {"measured": {k: v for k, v in report.items() if k != "external"}
                                | ({"external": {k: v for k, v in report["external"].items()
                                                 if k != "rows"}} if "external" in report else {})})
    (out / "quality.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
