"""Cardiothoracic ratio from the models' masks against the ratio from the ground truth.

    CXR_DATA_DIR=../shared/data/scr python scripts/ctr_check.py [--models weights] [--cases N]

On the SCR cases the heart model did not train on (``seg.training_cases('heart')``),
the CTR (``cxr_dash.measure.cardiothoracic_ratio``: the heart's widest horizontal
extent over the widest extent of both lungs together) is computed from the masks the
heart and lung models predict at 1024 px (``Segmenter.predict``, threshold 0.5, one
piece per region, as the app shows them) and from the SCR masks; prints the mean
absolute difference (target <= 0.02), its spread, the bias and the worst cases.

The lung models may have trained on some or all of these cases (a set whose lungs
were fine-tuned on all 200): the output says how many, since their masks there are
fit, not generalisation, and the thoracic width comes from them.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

LUNGS = ("left_lung", "right_lung")
TARGET = 0.02


def ctr_pairs(seg, dataset, cases, progress=True) -> list[tuple[str, float | None, float | None]]:
    """(case, CTR from the predicted masks, CTR from the ground truth) per case; None
    where a ratio cannot be measured (a region missing)."""
    from cxr_dash.measure import cardiothoracic_ratio

    out = []
    for i, case_id in enumerate(cases, 1):
        case = dataset.load_case(case_id, regions=("heart",) + LUNGS)
        predicted = seg.masks(seg.predict(case.image, regions=("heart",) + LUNGS))
        pred, truth = cardiothoracic_ratio(predicted), cardiothoracic_ratio(case.masks)
        out.append((case_id, None if pred is None else pred.ratio, None if truth is None else truth.ratio))
        if progress:
            print(f"\r{i}/{len(cases)} {case_id}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return out


def summary(pairs) -> dict:
    """Mean absolute difference and its company over the cases where both ratios exist."""
    both = [(c, p, t) for c, p, t in pairs if p is not None and t is not None]
    diff = np.array([p - t for _, p, t in both])
    absolute = np.abs(diff)
    return {"n": len(both), "unmeasured": len(pairs) - len(both),
            "mean_abs": float(absolute.mean()) if both else float("nan"),
            "sd_abs": float(absolute.std(ddof=1)) if len(both) > 1 else 0.0,
            "median_abs": float(np.median(absolute)) if both else float("nan"),
            "max_abs": float(absolute.max()) if both else float("nan"),
            "bias": float(diff.mean()) if both else float("nan"),
            "within_target": int((absolute <= TARGET).sum()),
            "truth_mean": float(np.mean([t for _, _, t in both])) if both else float("nan"),
            "worst": sorted(both, key=lambda b: -abs(b[1] - b[2]))[:5]}


def main(argv=None) -> None:
    from cxr_dash import load_segmenter
    from cxr_dash.cli import open_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="model set folder (default: weights/)")
    parser.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    parser.add_argument("--cases", type=int, default=None,
                        help="at most this many cases, spread evenly (default: every one)")
    args = parser.parse_args(argv)
    dataset = open_dataset(args.data)
    seg = load_segmenter(args.models, regions=("heart",) + LUNGS)
    heart_trained = seg.training_cases("heart")
    held_out = [c for c in dataset.cases_with_masks(("heart",) + LUNGS) if c not in heart_trained]
    if args.cases:
        held_out = held_out[::max(1, len(held_out) // args.cases)][:args.cases]
    if not held_out:
        parser.error("the heart model trained on every case with masks: none is held out")
    s = summary(ctr_pairs(seg, dataset, held_out))
    print(f"Model set {seg.model_dir.name}: {len(held_out)} SCR cases the heart model did not "
          "train on; CTR at 1024 px, threshold 0.5.")
    for region in LUNGS:
        seen = len(set(held_out) & seg.training_cases(region))
        print(f"  {region}: its model trained on {seen} of these {len(held_out)} cases"
              + (" (on these its masks are fit, not generalisation)" if seen
               else " (held out from it too)"))
    print(f"CTR from the ground truth: mean {s['truth_mean']:.3f}")
    print(f"|CTR predicted - CTR ground truth| over {s['n']} cases: mean {s['mean_abs']:.4f} "
          f"(sd {s['sd_abs']:.4f}, median {s['median_abs']:.4f}, max {s['max_abs']:.4f}); "
          f"bias {s['bias']:+.4f}; {s['within_target']} of {s['n']} within {TARGET}"
          + (f"; {s['unmeasured']} not measurable" if s["unmeasured"] else ""))
    print(f"target mean <= {TARGET}: {'met' if s['mean_abs'] <= TARGET else 'NOT met'}")
    print("largest differences: " + ", ".join(f"{c} {p:.3f} vs {t:.3f}" for c, p, t in s["worst"]))


if __name__ == "__main__":
    main()
