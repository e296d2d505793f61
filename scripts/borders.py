"""Uniform borders: what cropping them before the models (``predict``'s default) buys.

    CXR_DATA_DIR=... python scripts/borders.py [--models weights] [--cases 24]

The models saw SCR radiographs with the chest filling the frame. A padded
export, a letterboxed non-square image or a film scan's margin adds uniform
bands that shrink the anatomy. This pads held-out SCR cases (none of the
set's models trained on them) with such bands and scores every region,
Jaccard at the masks' 1024 px against the ground truth padded the same way,
with ``predict(trim_borders=False)`` (the models see the bands) and the
default ``trim_borders=True`` (:func:`cxr_dash.preprocess.content_box`
finds the bands; the models see the rest). It also counts the unpadded
cases the trimming changes (it should change none). Prints a table.
"""
from __future__ import annotations

import sys

import numpy as np


def pad_case(image, masks, border: str, fraction: float, sides: str):
    """The case with uniform bands of ``fraction`` of its side on ``sides`` ("all", "left-right",
    "top-bottom"), at the image's darkest, brightest or mean level; a letterbox first crops the
    other axis so that the padded result is square, as a square export of a 35 x 43 cm image is."""
    h, w = image.shape
    level = {"black": image.min(), "white": image.max(), "grey": image.mean()}[border]
    if sides == "left-right":      # portrait letterbox: columns cropped, bands padded in their place
        cut = round(w * fraction)
        rows, cols = slice(0, h), slice(cut, w - cut)
        pads = ((0, 0), (cut, cut))
    elif sides == "top-bottom":
        cut = round(h * fraction)
        rows, cols = slice(cut, h - cut), slice(0, w)
        pads = ((cut, cut), (0, 0))
    else:
        rows, cols = slice(0, h), slice(0, w)
        pads = ((round(h * fraction),) * 2, (round(w * fraction),) * 2)
    padded = np.pad(image[rows, cols].astype(np.float32), pads, constant_values=level)
    truth = {r: np.pad(m[rows, cols], pads) for r, m in masks.items()}
    return padded, truth


VARIANTS = (("10% black, every side", "black", 0.10, "all"),
            ("10% white, every side", "white", 0.10, "all"),
            ("20% black, every side", "black", 0.20, "all"),
            ("20% white, every side", "white", 0.20, "all"),
            ("20% mean grey, every side", "grey", 0.20, "all"),
            ("letterbox 4:5 (black columns)", "black", 0.10, "left-right"),
            ("letterbox 5:4 (black rows)", "black", 0.10, "top-bottom"))


def main(argv=None):
    from cxr_dash.cli import held_out_sample, measurement_setup
    from cxr_dash.metrics import jaccard
    from cxr_dash.preprocess import content_box

    args, seg, dataset = measurement_setup(__doc__.splitlines()[0], argv, "held-out cases to pad")
    all_cases = dataset.cases_with_masks()
    changed = []
    for case_id in all_cases:
        pixels = dataset.load_image(case_id).pixels
        if content_box(pixels) != (0, pixels.shape[0], 0, pixels.shape[1]):
            changed.append(case_id)
    cases = held_out_sample(seg, dataset, args.cases)
    scores: dict[tuple, list[float]] = {}
    missed = {}
    for i, case_id in enumerate(cases, 1):
        case = dataset.load_case(case_id)
        variants = (("none (as stored)", case.image, case.masks),) + tuple(
            (name, *pad_case(case.image, case.masks, border, fraction, sides))
            for name, border, fraction, sides in VARIANTS)
        for name, image, truth in variants:
            if name != "none (as stored)" and content_box(image) == (0, *image.shape[:1], 0, image.shape[1]):
                missed[name] = missed.get(name, 0) + 1
            for trim in (False, True):
                masks = seg.masks(seg.predict(image, trim_borders=trim))
                for region, mask in masks.items():
                    scores.setdefault((name, trim, region), []).append(jaccard(mask, truth[region]))
        print(f"{i}/{len(cases)} {case_id}", file=sys.stderr, flush=True)
    regions = seg.regions
    print(f"content_box changes {len(changed)} of the {len(all_cases)} development cases as stored"
          + (f": {', '.join(changed)}" if changed else ""))
    print(f"{len(cases)} held-out cases; mean Jaccard at 1024 px, bands seen by the models / "
          "trimmed (predict's default)" + (f"; bands not found: {missed}" if missed else "") + "\n")
    print("| border | " + " | ".join(regions) + " |")
    print("| --- | " + " | ".join("---" for _ in regions) + " |")
    for name in ["none (as stored)"] + [v[0] for v in VARIANTS]:
        print(f"| {name} | " + " | ".join(
            f"{np.mean(scores[name, False, r]):.3f} / {np.mean(scores[name, True, r]):.3f}"
            for r in regions) + " |")


if __name__ == "__main__":
    main()
