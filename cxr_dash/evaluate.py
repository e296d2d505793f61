"""Evaluate a model set: ``python -m cxr_dash.evaluate --models weights``.

Per region and per case: Jaccard, Dice, mean contour distance and 95%
Hausdorff distance (mm), at the masks' 1024 x 1024 resolution, on cases the
region's model was not trained on; summarised as mean +/- sd. Both the raw
thresholded mask and the post-processed one (largest component, holes
filled) are scored, so the post-processing's effect is visible.

The SCR two-fold protocol: ``--twofold RUN_TRAINED_ON_ODD RUN_TRAINED_ON_EVEN``
scores each set on the other fold and pools the 2 x 100 cases.

Other hospitals: ``--external DIR`` (``images/`` + ``masks/`` with both lungs in
one mask, e.g. ``../shared/data/shenzhen``) scores the lungs there, overall and
per group (``_0`` normal, ``_1`` abnormal); see :mod:`cxr_dash.external`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

from . import data as scr
from .cli import model_set_or_exit, open_dataset, progress_bar, region_argument
from .errors import ModelSetError
from .inference import Segmenter, to_mask
from .manifest import read_manifest, training_cases, update_region
from .metrics import all_metrics, dice, jaccard, summarise
from .preprocess import content_box
from .regions import get_region

METRIC_KEYS = ("jaccard", "dice", "mean_contour_distance_mm", "hd95_mm", "missed_fraction", "extra_fraction")


def heldout_cases(entry: dict, available: list[str]) -> list[str]:
    """The available cases a region's model (its manifest entry) was not trained on."""
    trained = training_cases(entry)
    return [c for c in available if c not in trained]


def heldout_by_region(seg: Segmenter, available: list[str], regions=None,
                      limit: int | None = None) -> dict[str, list[str]]:
    """{region: the available cases its model did not train on (the first ``limit``)}."""
    return {r: heldout_cases(seg.entry(r), available)[: limit or None]
            for r in seg.regions if regions is None or r in regions}


def worst_cases(rows: dict[str, list[dict]], n: int = 5) -> list[dict]:
    """Each region's ``n`` lowest-Jaccard rows, worst first, tagged with the region."""
    return [{"region": region, **row} for region, rs in rows.items()
            for row in sorted(rs, key=lambda r: r["jaccard"])[:n]]


def checkpoint_chosen_on(entry: dict, cases: list[str]) -> list[str]:
    """The scored cases on which this model's kept epoch was chosen: with
    restore-best, the epoch of best validation IoU is kept, so its own
    validation cases are not unseen, whatever the training split says."""
    t = entry.get("training", {})
    if not t.get("restore_best"):
        return []
    chosen_on = {c.upper() for c in t.get("validation_cases", [])}
    return [c for c in cases if c.upper() in chosen_on]


def evaluate_segmenter(seg: Segmenter, dataset: scr.SCRDataset, cases_by_region: dict[str, list[str]],
                       threshold: float = 0.5, progress=None, tta: bool | None = None
                       ) -> dict[str, list[dict]]:
    """{region: [per-case row]} for the given cases of each region.

    ``tta``: test-time augmentation on/off; None: the model set's default.
    """
    tta = seg.default_tta if tta is None else tta
    rows: dict[str, list[dict]] = {r: [] for r in cases_by_region}
    all_cases = sorted({c for cs in cases_by_region.values() for c in cs})
    for i, case_id in enumerate(all_cases):
        regions = [r for r, cs in cases_by_region.items() if case_id in cs]
        image = dataset.load_image(case_id).pixels
        # predict's own path where it differs from the models' grid: TTA, or wide uniform
        # bands it crops (none on the SCR radiographs; a user's dataset may have them).
        whole = content_box(image) == (0, image.shape[0], 0, image.shape[1])
        if tta or not whole:
            full = seg.predict(image, regions, tta=tta, one_piece_at=None)   # raw, scored both ways
        else:
            small = seg.predict_at_input_size(image, regions)
        for region in regions:
            truth = dataset.load_mask(case_id, region)
            if tta or not whole:
                prob = cv2.resize(full[region], truth.shape[::-1], interpolation=cv2.INTER_AREA) \
                    if full[region].shape != truth.shape else full[region]
            else:   # one resize, straight from the model's grid to the mask's
                prob = seg.to_image(small[region], region, truth.shape)
            raw = prob >= threshold
            post = to_mask(prob, threshold, largest_only=True)
            row = {"case": case_id, **all_metrics(post, truth, scr.SCR_MASK_SPACING_MM),
                   "jaccard_raw": jaccard(raw, truth), "dice_raw": dice(raw, truth)}
            rows[region].append(row)
        if progress:
            progress(i + 1, len(all_cases), case_id)
    return rows


def summarise_rows(rows: dict[str, list[dict]]) -> dict[str, dict]:
    return {region: {k: summarise([r[k] for r in rs]) for k in METRIC_KEYS + ("jaccard_raw", "dice_raw")}
            for region, rs in rows.items() if rs}


def markdown_table(summary: dict[str, dict], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += ["| region | Jaccard | Dice | mean contour dist. (mm) | HD95 (mm) | missed / extra (% of truth) "
              "| Jaccard, no post-proc. | n | target | human observer | best published (SCR) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for region, s in summary.items():
        def fmt(k, digits=3):
            return f"{s[k]['mean']:.{digits}f} ± {s[k]['sd']:.{digits}f}"
        anchors = get_region(region).anchors
        reference = (f"{anchors.target:.2f} | {anchors.human_observer:.3f} | {anchors.best_published:.3f}"
                     if anchors else "— | — | —")
        lines.append(f"| {get_region(region).display_name} | {fmt('jaccard')} | {fmt('dice')} | "
                     f"{fmt('mean_contour_distance_mm', 2)} | {fmt('hd95_mm', 2)} | "
                     f"{100 * s['missed_fraction']['mean']:.1f} / {100 * s['extra_fraction']['mean']:.1f} | "
                     f"{fmt('jaccard_raw')} | {s['jaccard']['n']} | {reference} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxr_dash.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="model-set folder (default: weights/)")
    p.add_argument("--twofold", nargs=2, metavar=("TRAINED_ON_ODD", "TRAINED_ON_EVEN"),
                   help="two model sets for the SCR odd/even protocol")
    p.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    p.add_argument("--external", default=None, metavar="DIR",
                   help="score the lungs on another hospital's radiographs instead: DIR/images "
                        "and DIR/masks (both lungs in one mask, same file names)")
    p.add_argument("--cases", default="heldout", choices=("heldout", "odd", "even", "all"),
                   help="heldout: every case the region's model was not trained on")
    p.add_argument("--heldout-of", default=None, metavar="MODEL_DIR",
                   help="score on the cases another model set's region models held out "
                        "(compares two sets case for case; overrides --cases)")
    p.add_argument("--region", nargs="+", default=None, type=region_argument,
                   help="evaluate only these regions (default: every region of the set)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N cases")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--tta", choices=("set", "on", "off"), default="set",
                   help="test-time augmentation (4 sub-pixel-shifted grids); set: the model "
                        "set's default (manifest)")
    p.add_argument("--out", default="results/evaluation", help="folder for JSON and Markdown")
    p.add_argument("--update-manifest", action="store_true",
                   help="store the summary in the model set's manifest (what the app shows)")
    return p


def external_main(parser: argparse.ArgumentParser, args) -> int:
    from .external import evaluate_external, external_table, summarise_external

    model_dir = args.models or str(Path(__file__).resolve().parent.parent / "weights")
    seg = model_set_or_exit(parser, model_dir)
    tta = {"set": None, "on": True, "off": False}[args.tta]
    t0 = time.time()
    try:
        rows = evaluate_external(seg, args.external, args.limit, tta, progress_bar)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    summary = summarise_external(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = external_table(summary, f"{Path(args.external).name} — {model_dir}")
    result = {"protocol": f"external: {Path(args.external).name}", "model_sets": [model_dir],
              "scored": "left_lung | right_lung against the one lung mask, at its resolution",
              "postprocessing": "largest connected component, holes filled",
              "test_time_augmentation": seg.default_tta if tta is None else tta,
              "summary": summary, "per_case": rows, "seconds": round(time.time() - t0, 1)}
    (out / "external.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "external.md").write_text(table)
    print(table)
    return 0


def _chosen_regions(seg: Segmenter, args) -> list[str]:
    return [r for r in seg.regions if args.region is None or r in set(args.region)]


def _note_selection(selection: dict[str, int], seg: Segmenter,
                    cases_by_region: dict[str, list[str]]) -> None:
    """Count, per region, the scored cases its kept epoch was chosen on."""
    for r, cases in cases_by_region.items():
        n = len(checkpoint_chosen_on(seg.entry(r), cases))
        if n:
            selection[r] = selection.get(r, 0) + n


def _score_twofold(parser, args, dataset, folds, tta, selection):
    """The two fold models, each on the fold it did not train on, pooled."""
    rows: dict[str, list[dict]] = {}
    for model_dir, test_fold in zip(args.twofold, ("even", "odd")):
        seg = model_set_or_exit(parser, model_dir)
        cases = folds[test_fold][: args.limit or None]
        by_region = {r: cases for r in _chosen_regions(seg, args)}
        _note_selection(selection, seg, by_region)
        part = evaluate_segmenter(seg, dataset, by_region, args.threshold, progress_bar, tta)
        used_tta = seg.default_tta if tta is None else tta
        for r, rs in part.items():
            rows.setdefault(r, []).extend(rs)
    return rows, "SCR two-fold (odd/even), pooled", list(args.twofold), used_tta, None


def _score_one_set(parser, args, dataset, available, folds, tta, selection):
    """One model set on the cases ``--cases`` / ``--heldout-of`` name."""
    model_dir = args.models or str(Path(__file__).resolve().parent.parent / "weights")
    seg = model_set_or_exit(parser, model_dir)
    regions = _chosen_regions(seg, args)
    if args.heldout_of:
        try:
            other = read_manifest(args.heldout_of)["regions"]
        except ModelSetError as exc:
            parser.error(str(exc))
        cases_by_region = {r: heldout_cases(other[r], available)[: args.limit or None]
                           for r in regions if r in other}
    elif args.cases == "heldout":
        cases_by_region = heldout_by_region(seg, available, regions, args.limit)
    else:
        chosen = available if args.cases == "all" else folds[args.cases]
        cases_by_region = {r: chosen[: args.limit or None] for r in regions}
    _note_selection(selection, seg, cases_by_region)
    rows = evaluate_segmenter(seg, dataset, cases_by_region, args.threshold, progress_bar, tta)
    used_tta = seg.default_tta if tta is None else tta
    protocol = (f"cases held out by {args.heldout_of}" if args.heldout_of
                else f"cases: {args.cases}")
    return rows, protocol, [model_dir], used_tta, seg


def _selection_caution(selection: dict[str, int]) -> str:
    return "\n".join(
        f"Caution: the {get_region(r).display_name.lower()} model kept its epoch of best "
        f"validation IoU, chosen on {n} of the cases scored here: those are not unseen, and "
        "its figures are optimistic." for r, n in selection.items()) + "\n"


def _record_in_manifest(seg: Segmenter, model_dir: str, summary, protocol, used_tta) -> None:
    for region, s in summary.items():
        metrics = dict(seg.entry(region).get("metrics", {}))
        metrics["heldout_1024"] = {"protocol": protocol, "n": s["jaccard"]["n"],
                                   "test_time_augmentation": used_tta,
                                   **{k: {"mean": s[k]["mean"], "sd": s[k]["sd"]}
                                      for k in METRIC_KEYS + ("jaccard_raw",)}}
        update_region(model_dir, region, {"metrics": metrics})


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.external:
        return external_main(parser, args)
    dataset = open_dataset(args.data)
    available = dataset.cases_with_masks()
    folds = scr.split_folds(available)
    t0 = time.time()
    tta = {"set": None, "on": True, "off": False}[args.tta]
    selection: dict[str, int] = {}
    if args.twofold:
        rows, protocol, model_dirs, used_tta, seg = _score_twofold(
            parser, args, dataset, folds, tta, selection)
    else:
        rows, protocol, model_dirs, used_tta, seg = _score_one_set(
            parser, args, dataset, available, folds, tta, selection)
    summary = summarise_rows(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"protocol": protocol, "model_sets": model_dirs, "threshold": args.threshold,
              "resolution": "1024 x 1024 (SCR masks), 0.35 mm/pixel",
              "postprocessing": "largest connected component, holes filled",
              "test_time_augmentation": used_tta,
              "checkpoint_chosen_on_scored_cases": selection,
              "summary": summary, "per_case": rows, "seconds": round(time.time() - t0, 1)}
    (out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown_table(summary, f"{protocol} — {', '.join(model_dirs)}"
                                    f"{' — test-time augmentation' if used_tta else ''}")
    if selection:
        table += "\n" + _selection_caution(selection)
    (out / "evaluation.md").write_text(table)
    print(table)
    if args.update_manifest and not args.twofold:
        _record_in_manifest(seg, model_dirs[0], summary, protocol, used_tta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
