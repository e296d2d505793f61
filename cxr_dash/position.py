"""Position or anatomy? Quantitative tests of what a region model learned.

Every test takes ``predict``: (N, S, S, 3) -> (N, S, S) probabilities at
the model's input size, and ``x``: one (S, S, 3) model input, so the same
code tests a trained U-Net, a toy model, or anything else.

1. Translation: shift the input; compare Dice(f(Tx), T f(x)) ("follows the
   anatomy") with Dice(f(Tx), f(x)) ("stays where it was"). Their difference,
   divided by the largest difference the shift allows, 1 - Dice(T f(x), f(x)),
   is the anatomy-following index: +1 follows the anatomy, -1 stays put.
2. Scale: the same with zoom in and out about the image centre.
3. Flip: horizontal flip. For lateral models, where does the mask go? (A
   flipped left lung looks like a right lung: laterality is partly position.)
4. Content removal: blank, mean-grey and noise inputs, and the image with
   the region itself inpainted or blurred away. A model that draws its region
   on a content-free input relies on position. With only the region removed
   the neighbours remain (lung borders, ribs, the shoulder), so a mask drawn
   there is inferred from context or from the region's blurred remnant:
   reported as evidence, not counted towards the verdict.
5. Position prior: the atlas (mean training mask) as a predictor, and per
   case whether the prediction sits nearer the atlas than the truth does.
6. Context vs region: occlusion sensitivity inside the predicted region
   against outside it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import cv2
import numpy as np

from .augment import BORDER_VALUE, affine_matrix, warp
from .metrics import dice

Predict = Callable[[np.ndarray], np.ndarray]

SHIFTS = (-0.2, -0.1, -0.05, 0.05, 0.1, 0.2)     # fractions of the image side
SCALES = (0.8, 0.9, 1.1, 1.2)
THRESHOLD = 0.5
# Verdict thresholds on the anatomy-following index (mean of translation and scale).
ANATOMY_ABOVE = 0.3
POSITION_BELOW = -0.3
PHANTOM_LIMIT = 0.5      # Dice of a content-free prediction with the real one


def _binary(p: np.ndarray) -> np.ndarray:
    return p >= THRESHOLD


def _warp_mask(mask: np.ndarray, m: np.ndarray) -> np.ndarray:
    return warp(mask.astype(np.float32), m, nearest=True) > 0.5


def _follow_index(follow: float, stay: float, moved_vs_original: float) -> float | None:
    room = 1.0 - moved_vs_original
    if room < 0.05:          # the transform barely moves the mask: no information
        return None
    return float(np.clip((follow - stay) / room, -1.0, 1.0))


@dataclass
class TransformRow:
    kind: str          # "shift_x", "shift_y", "scale"
    amount: float
    follow: float      # Dice(f(Tx), T f(x))
    stay: float        # Dice(f(Tx), f(x))
    moved_vs_original: float
    index: float | None


def _transform_test(predict: Predict, x: np.ndarray, transforms) -> list[TransformRow]:
    base = _binary(predict(x[None])[0])
    batch = np.stack([warp(x, m, border_value=BORDER_VALUE) for _, _, m in transforms])
    preds = _binary(predict(batch))
    rows = []
    for (kind, amount, m), pred in zip(transforms, preds):
        moved = _warp_mask(base, m)
        follow, stay, mvo = dice(pred, moved), dice(pred, base), dice(moved, base)
        rows.append(TransformRow(kind, amount, follow, stay, mvo, _follow_index(follow, stay, mvo)))
    return rows


def translation_test(predict: Predict, x: np.ndarray, shifts=SHIFTS) -> list[TransformRow]:
    size = x.shape[0]
    transforms = [("shift_x", s, affine_matrix(size, shift_x=s)) for s in shifts]
    transforms += [("shift_y", s, affine_matrix(size, shift_y=s)) for s in shifts]
    return _transform_test(predict, x, transforms)


def scale_test(predict: Predict, x: np.ndarray, scales=SCALES) -> list[TransformRow]:
    size = x.shape[0]
    return _transform_test(predict, x, [("scale", s, affine_matrix(size, scale=s)) for s in scales])


def mean_index(rows: list[TransformRow]) -> float:
    vals = [r.index for r in rows if r.index is not None]
    return float(np.mean(vals)) if vals else math.nan


def _centroid_x(mask: np.ndarray) -> float:
    cols = np.nonzero(mask)[1]
    return float(cols.mean() / mask.shape[1]) if cols.size else math.nan


def flip_test(predict: Predict, x: np.ndarray) -> dict:
    base = _binary(predict(x[None])[0])
    flipped = _binary(predict(x[None, :, ::-1].copy())[0])
    mirrored = base[:, ::-1]
    return {"follows_mirrored_anatomy": dice(flipped, mirrored),
            "stays_on_its_side": dice(flipped, base),
            "centroid_x_before": _centroid_x(base), "centroid_x_after": _centroid_x(flipped),
            "area_ratio": float(flipped.sum() / base.sum()) if base.sum() else math.nan}


def remove_region(x: np.ndarray, mask: np.ndarray, how: str = "inpaint") -> np.ndarray:
    """The input with the (dilated) region inpainted (Telea) or blurred beyond recognition."""
    size = x.shape[0]
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8),
                       iterations=max(1, size // 64))
    grey = (np.clip(x[..., 0], 0, 1) * 255).astype(np.uint8)
    if how == "inpaint":
        filled = cv2.inpaint(grey, grown, inpaintRadius=max(3, size // 32), flags=cv2.INPAINT_TELEA)
    else:
        blurred = cv2.GaussianBlur(grey, (0, 0), sigmaX=size / 12)
        filled = np.where(grown > 0, blurred, grey)
    out = filled.astype(np.float32) / 255.0
    return np.repeat(out[..., None], 3, axis=2)


def content_removal_test(predict: Predict, x: np.ndarray, seed: int = 0) -> dict[str, dict]:
    """For each content-free or region-free input: the predicted area relative to the
    original prediction, and the overlap with it (``phantom`` Dice)."""
    base = _binary(predict(x[None])[0])
    rng = np.random.default_rng(seed)
    inputs = {
        "blank": np.zeros_like(x),
        "mean grey": np.full_like(x, float(x.mean())),
        "noise": np.repeat(rng.random(x.shape[:2], dtype=np.float32)[..., None], 3, axis=2),
        "region inpainted": remove_region(x, base, "inpaint") if base.any() else x.copy(),
        "region blurred": remove_region(x, base, "blur") if base.any() else x.copy(),
    }
    preds = _binary(predict(np.stack(list(inputs.values()))))
    out = {}
    for (name, _), pred in zip(inputs.items(), preds):
        out[name] = {"dice_with_original": dice(pred, base) if base.any() else math.nan,
                     "area_ratio": float(pred.sum() / base.sum()) if base.sum() else math.nan}
    return out


def atlas_from_masks(masks: np.ndarray) -> np.ndarray:
    """Mean training mask (N, S, S) -> probability atlas (S, S) float32."""
    return masks.astype(np.float32).mean(axis=0)


def atlas_comparison(pred: np.ndarray, truth: np.ndarray, atlas: np.ndarray) -> dict:
    """Per case: the atlas as a predictor, and whether the model sits nearer the atlas than the truth."""
    from .metrics import jaccard

    atlas_mask = atlas >= THRESHOLD
    pred_to_atlas, truth_to_atlas = dice(pred, atlas_mask), dice(truth, atlas_mask)
    return {"model_jaccard": jaccard(pred, truth), "atlas_jaccard": jaccard(atlas_mask, truth),
            "pred_to_atlas_dice": pred_to_atlas, "truth_to_atlas_dice": truth_to_atlas,
            "nearer_atlas_than_truth": bool(pred_to_atlas > truth_to_atlas)}


@dataclass
class PositionReport:
    """All tests for one region on one image, and the verdict they support."""

    region: str
    translation: list[TransformRow]
    scale: list[TransformRow]
    flip: dict
    content_removal: dict
    occlusion: dict | None = None
    atlas: dict | None = None
    summary: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["translation"] = [asdict(r) for r in self.translation]
        d["scale"] = [asdict(r) for r in self.scale]
        return d


def summarise_evidence(translation_index: float, scale_index: float, phantom: float,
                       occlusion_enrichment: float | None = None,
                       atlas_pull: float | None = None,
                       region_inpainted: float | None = None,
                       region_blurred: float | None = None) -> dict:
    """Verdict from the numbers. ``phantom``: the largest Dice between a prediction on a
    content-free input (blank / grey / noise) and the real prediction;
    ``region_inpainted`` / ``region_blurred``: the same with only the region
    inpainted or blurred away (evidence only: see the module's note 4)."""
    idx = [v for v in (translation_index, scale_index) if v == v]
    follow = float(np.mean(idx)) if idx else math.nan
    reasons = [f"anatomy-following index {follow:+.2f} (translation {translation_index:+.2f}, "
               f"scale {scale_index:+.2f}; +1 follows anatomy, -1 stays put)",
               f"prediction on content-free input overlaps the real one at Dice {phantom:.2f}"]
    if region_inpainted is not None and region_inpainted == region_inpainted:
        reasons.append(f"with the region itself inpainted from its surroundings it is still drawn at "
                       f"Dice {region_inpainted:.2f} (inferred from context), blurred away at Dice "
                       f"{region_blurred:.2f} (its blurred remnant)")
    if occlusion_enrichment is not None and occlusion_enrichment == occlusion_enrichment:
        reasons.append(f"occlusion sensitivity inside the region is {occlusion_enrichment:.1f}x "
                       "its area share")
    if atlas_pull is not None and atlas_pull == atlas_pull:
        reasons.append(f"predictions sit nearer the atlas than the truth in {atlas_pull:.0%} of cases")
    if follow != follow:
        verdict = "undetermined"
    elif follow >= ANATOMY_ABOVE and phantom < PHANTOM_LIMIT:
        verdict = "anatomy"
    elif follow <= POSITION_BELOW or (phantom >= PHANTOM_LIMIT and follow < ANATOMY_ABOVE):
        verdict = "position"
    else:
        verdict = "mixed"
    return {"verdict": verdict, "anatomy_following_index": follow, "phantom_dice": phantom,
            "region_inpainted_dice": region_inpainted, "region_blurred_dice": region_blurred,
            "evidence": reasons}


CONTENT_FREE = ("blank", "mean grey", "noise")


def _largest_dice(content_removal: dict, names) -> float:
    vals = [v["dice_with_original"] for k, v in content_removal.items()
            if k in names and v["dice_with_original"] == v["dice_with_original"]]
    return max(vals, default=0.0)


def run_all(predict: Predict, x: np.ndarray, region: str, atlas: np.ndarray | None = None,
            truth: np.ndarray | None = None, occlusion: bool = True,
            occlusion_patch: int | None = None, occlusion_stride: int | None = None) -> PositionReport:
    """Every test on one image for one region model."""
    base = _binary(predict(x[None])[0])
    tr, sc = translation_test(predict, x), scale_test(predict, x)
    report = PositionReport(region, tr, sc, flip_test(predict, x), content_removal_test(predict, x))
    enrichment = None
    if occlusion:
        from .occlusion import occlusion_sensitivity

        size = x.shape[0]
        res = occlusion_sensitivity(predict, x, base, occlusion_patch or max(2, size // 8),
                                    occlusion_stride or max(1, size // 8), baseline="mean")
        split = res.inside_outside(base)
        area = split["region_area_fraction"]
        enrichment = split["inside_fraction"] / area if area > 0 else math.nan
        report.occlusion = {**split, "enrichment": enrichment, "patch": res.patch, "stride": res.stride}
    if atlas is not None and truth is not None:
        report.atlas = atlas_comparison(base, truth, atlas)
    removal = report.content_removal
    report.summary = summarise_evidence(mean_index(tr), mean_index(sc),
                                        _largest_dice(removal, CONTENT_FREE), enrichment,
                                        region_inpainted=removal["region inpainted"]["dice_with_original"],
                                        region_blurred=removal["region blurred"]["dice_with_original"])
    return report


# ---------------------------------------------------------------- figures

def figure_transform_curves(reports: dict[str, PositionReport]):
    """Follow vs stay Dice against shift and scale, one column per region."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .regions import REGIONS

    fig, axes = plt.subplots(3, len(reports), figsize=(3.2 * len(reports), 7.5), squeeze=False,
                             sharey=True)
    for col, (region, rep) in enumerate(reports.items()):
        colour = REGIONS[region].hex_colour
        for row, kind in enumerate(("shift_x", "shift_y", "scale")):
            ax = axes[row, col]
            rows = [r for r in (rep.scale if kind == "scale" else rep.translation) if r.kind == kind]
            xs = [r.amount for r in rows]
            ax.plot(xs, [r.follow for r in rows], "o-", color=colour, label="follows anatomy")
            ax.plot(xs, [r.stay for r in rows], "s--", color="grey", label="stays put")
            ax.set_ylim(0, 1.02)
            ax.set_xlabel({"shift_x": "shift x (fraction)", "shift_y": "shift y (fraction)",
                           "scale": "zoom factor"}[kind])
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{REGIONS[region].display_name}\n{rep.summary.get('verdict', '')}",
                             fontsize=11)
            if col == 0:
                ax.set_ylabel("Dice")
    # One legend for every panel, above them, in neutral colours (each region's
    # curve has its own colour; the line styles carry the meaning).
    from matplotlib.lines import Line2D
    fig.legend([Line2D([], [], color="black", marker="o"), Line2D([], [], color="grey", marker="s", ls="--")],
               ["follows the anatomy: Dice(f(Tx), T f(x))", "stays put: Dice(f(Tx), f(x))"],
               loc="upper center", ncol=2, fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def figure_content_removal(reports: dict[str, PositionReport]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .regions import REGIONS

    names = list(next(iter(reports.values())).content_removal)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(reports)
    for i, (region, rep) in enumerate(reports.items()):
        vals = [rep.content_removal[n]["dice_with_original"] for n in names]
        bars = ax.bar(np.arange(len(names)) + i * width, np.nan_to_num(vals), width,
                      color=REGIONS[region].hex_colour, label=REGIONS[region].display_name)
        # Zero is the common, telling answer on content-free inputs: label it,
        # and tell an undefined value (no region predicted at all) from it.
        ax.bar_label(bars, labels=["n/a" if v != v else f"{v:.2f}" for v in vals], fontsize=6,
                     padding=1)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.set_ylabel("Dice with the real prediction")
    ax.set_ylim(0, 1)
    ax.set_title("Does the model still draw its region without the image content?")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def figure_dataset(per_region: dict[str, list[PositionReport]]):
    """Over a dataset: each case's anatomy-following index per region (against
    the verdict thresholds), and the mean Dice of what is still drawn when
    the content, or only the region, is removed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .regions import REGIONS

    regions = list(per_region)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    rng = np.random.default_rng(0)
    for i, region in enumerate(regions):
        reps = per_region[region]
        for offset, (label, rows_of, marker) in enumerate(
                (("shift", lambda r: r.translation, "o"), ("zoom", lambda r: r.scale, "^"))):
            values = np.array([mean_index(rows_of(r)) for r in reps], float)
            xs = i + (offset - 0.5) * 0.3 + rng.uniform(-0.06, 0.06, len(values))
            left.scatter(xs, values, s=14, marker=marker, color=REGIONS[region].hex_colour,
                         alpha=0.75, label=label if i == 0 else None)
    for level, text in ((ANATOMY_ABOVE, "anatomy above"), (POSITION_BELOW, "position below")):
        left.axhline(level, color="grey", lw=0.8, ls="--")
        left.text(len(regions) - 0.5, level, f" {text}", va="center", fontsize=7, color="grey")
    left.set_xticks(range(len(regions)), [REGIONS[r].display_name for r in regions], fontsize=8)
    left.set_xlim(-0.6, len(regions) - 0.4)
    left.set_ylim(-1.05, 1.05)
    left.set_ylabel("anatomy-following index")
    left.set_title(f"Per case ({len(next(iter(per_region.values())))} cases): o shift, ^ zoom",
                   fontsize=9)
    names = list(next(iter(per_region.values()))[0].content_removal)
    width = 0.8 / len(regions)
    for i, region in enumerate(regions):
        means = [np.nanmean([r.content_removal[n]["dice_with_original"] for r in per_region[region]])
                 for n in names]
        bars = right.bar(np.arange(len(names)) + i * width, np.nan_to_num(means), width,
                         color=REGIONS[region].hex_colour, label=REGIONS[region].display_name)
        right.bar_label(bars, labels=["n/a" if v != v else f"{v:.2f}" for v in means], fontsize=6,
                        padding=1)
    right.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8, rotation=20)
    right.set_ylim(0, 1)
    right.set_ylabel("mean Dice with the real prediction")
    right.set_title("Still drawn without the content / the region", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- dataset report

def dataset_report(segmenter, dataset, cases: list[str], regions=None, occlusion_cases: int = 3,
                   progress=None) -> dict:
    """Run every test over ``cases`` (held out from training) and summarise per region."""
    from .data import pack
    from .regions import REGION_KEYS

    regions = tuple(regions or segmenter.regions)
    per_region: dict[str, list[PositionReport]] = {r: [] for r in regions}
    atlases: dict[str, np.ndarray] = {}
    for region in regions:
        size = segmenter.input_size(region)
        trained = segmenter.entry(region).get("training", {}).get("cases") or dataset.cases_with_masks()
        masks = pack(dataset, trained, size, view=segmenter.view(region))["masks"][:, REGION_KEYS.index(region)]
        atlases[region] = atlas_from_masks(masks)
    total = len(cases) * len(regions)
    done = 0
    for i, case_id in enumerate(cases):
        image = dataset.load_image(case_id).pixels
        for region in regions:
            x = segmenter.prepare(image, region)
            truth = segmenter.prepare_mask(dataset.load_mask(case_id, region), region)
            with segmenter.run_of_calls(region) as predict:
                rep = run_all(predict, x, region, atlases[region], truth,
                              occlusion=i < occlusion_cases)
            per_region[region].append(rep)
            done += 1
            if progress:
                progress(done, total, f"{case_id} {region}")
    summary = {}
    for region, reps in per_region.items():
        tr = float(np.nanmean([mean_index(r.translation) for r in reps]))
        sc = float(np.nanmean([mean_index(r.scale) for r in reps]))
        phantom = float(np.nanmean([r.summary["phantom_dice"] for r in reps]))
        occ = [r.occlusion["enrichment"] for r in reps if r.occlusion]
        enrichment = float(np.nanmean(occ)) if occ else None
        atl = [r.atlas for r in reps if r.atlas]
        pull = float(np.mean([a["nearer_atlas_than_truth"] for a in atl])) if atl else None
        inpainted, blurred = (float(np.nanmean([r.content_removal[k]["dice_with_original"] for r in reps]))
                              for k in ("region inpainted", "region blurred"))
        s = summarise_evidence(tr, sc, phantom, enrichment, pull, inpainted, blurred)
        s.update({
            "cases": len(reps),
            "translation_index": tr, "scale_index": sc,
            "flip_follows_mirrored": float(np.nanmean([r.flip["follows_mirrored_anatomy"] for r in reps])),
            "flip_stays_on_side": float(np.nanmean([r.flip["stays_on_its_side"] for r in reps])),
            "content_removal": {k: float(np.nanmean([r.content_removal[k]["dice_with_original"] for r in reps]))
                                for k in reps[0].content_removal},
            "model_jaccard": float(np.mean([a["model_jaccard"] for a in atl])) if atl else None,
            "atlas_jaccard": float(np.mean([a["atlas_jaccard"] for a in atl])) if atl else None,
            "nearer_atlas_than_truth": pull,
            "occlusion_enrichment": enrichment,
        })
        summary[region] = s
    return {"summary": summary, "per_region": per_region}


def markdown_summary(summary: dict, model_dir: str, cases: list[str],
                     views: dict[str, str] | None = None, includes_training_cases: bool = False) -> str:
    """``views``: {region: description} of models that see part of the image only."""
    from .regions import REGIONS

    which = "cases, training cases included" if includes_training_cases else "held-out cases"
    lines = ["# Position or anatomy?", "",
             f"Model set `{model_dir}`, {len(cases)} {which}, inputs at the models' size.",
             "Anatomy-following index: +1 the mask follows shifted/zoomed anatomy, -1 it stays put.",
             "", "| region | verdict | follow index (shift / zoom) | content-free Dice | "
             "region inpainted / blurred Dice | flip: follows mirror / stays | atlas J vs model J | "
             "nearer atlas than truth | occlusion enrichment |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(v, spec=".2f"):
        return "—" if v is None or v != v else format(v, spec)    # NaN: not measured

    for region, s in summary.items():
        lines.append(
            f"| {REGIONS[region].display_name} | **{s['verdict']}** | {f(s['translation_index'], '+.2f')} / "
            f"{f(s['scale_index'], '+.2f')} | {f(s['phantom_dice'])} | "
            f"{f(s.get('region_inpainted_dice'))} / {f(s.get('region_blurred_dice'))} | "
            f"{f(s['flip_follows_mirrored'])} / "
            f"{f(s['flip_stays_on_side'])} | {f(s['atlas_jaccard'])} vs {f(s['model_jaccard'])} | "
            f"{f(s['nearer_atlas_than_truth'], '.0%')} | {f(s['occlusion_enrichment'], '.1f')} |")
    lines += ["", "## Evidence", ""]
    for region, s in summary.items():
        lines.append(f"**{REGIONS[region].display_name}: {s['verdict']}.** " + "; ".join(s["evidence"]) + ".")
        lines.append("")
    lines += ["Caveat: laterality is partly positional by nature (a mirrored left lung looks like a "
              "right lung), so the flip test describes, it does not judge.", ""]
    for region, described in (views or {}).items():
        lines += [f"Field of view: the {REGIONS[region].display_name.lower()} model sees {described}. "
                  "The tests move, zoom and remove content inside that window; a structure moved out "
                  "of it is invisible to the model by design. That part of the position prior is "
                  "built in, not learned.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import json
    from pathlib import Path

    from .cli import model_set_or_exit, open_dataset, progress_bar, region_argument

    p = argparse.ArgumentParser(prog="python -m cxr_dash.position", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    p.add_argument("--out", default="results/position")
    p.add_argument("--models", default=None, help="model-set folder (default: weights/)")
    p.add_argument("--cases", type=int, default=20, help="number of held-out cases")
    p.add_argument("--regions", nargs="*", default=None, type=region_argument)
    p.add_argument("--occlusion-cases", type=int, default=3)
    p.add_argument("--include-training-cases", action="store_true",
                   help="also test cases the models trained on (a set trained on every case has "
                        "no others; the report then says so)")
    args = p.parse_args(argv)
    dataset = open_dataset(args.data)
    seg = model_set_or_exit(p, args.models, args.regions)
    trained = set().union(*(seg.training_cases(r) for r in seg.regions))
    if args.include_training_cases:
        trained = set()
    cases = [c for c in dataset.cases_with_masks() if c not in trained][: args.cases]
    if not cases:
        p.error("no case with masks in the data folder is held out from every model's training; "
                "pass --include-training-cases to test training cases (the atlas test then "
                "flatters the models), or fewer --regions")

    result = dataset_report(seg, dataset, cases, seg.regions, args.occlusion_cases, progress_bar)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "position.json").write_text(json.dumps(
        {"model_set": str(seg.model_dir), "cases": cases,
         "includes_training_cases": args.include_training_cases, "summary": result["summary"],
         "per_case": {r: [x.as_dict() for x in reps] for r, reps in result["per_region"].items()}},
        indent=1, default=float) + "\n")
    import matplotlib.pyplot as plt

    first = {r: reps[0] for r, reps in result["per_region"].items()}
    for name, fig in (("dataset.png", figure_dataset(result["per_region"])),
                      ("transform_curves.png", figure_transform_curves(first)),
                      ("content_removal.png", figure_content_removal(first))):
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
    views = {r: seg.view(r).describe() for r in seg.regions if not seg.view(r).is_full}
    md = markdown_summary(result["summary"], str(seg.model_dir), cases, views,
                          includes_training_cases=args.include_training_cases)
    md += (f"\nFigures: `dataset.png` (every case); `transform_curves.png` and "
           f"`content_removal.png` (first case, {cases[0]}).\n")
    (out / "summary.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
