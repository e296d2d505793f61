"""What geometric test-time augmentation buys each region on its held-out cases.

    CXR_DATA_DIR=... python scripts/geometric_tta.py [--models weights] [--cases N]

The set's own TTA (``predict(tta=True)``) shifts the sampling grid by a
quarter of a model pixel and bought at most +0.0001 on the shipped models
(README, *What each change bought*). This tries the other kind: the model
input zoomed (scale 0.9 / 0.95 / 1.05 / 1.1 about its centre) or rotated
(+-5 degrees), all inside the training augmentation's range, each output
warped back and averaged with the plain pass where it is defined. Scored as
``evaluate`` scores (1024 x 1024, largest component, holes filled) on the
cases each model did not train on (the first N with ``--cases``); prints, per
region and variant, the mean Jaccard, the paired difference from no TTA, its
standard error and the cases it improved. ~13 min for all five regions here.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

PLAIN = (0.0, 1.0)   # (rotation in degrees, scale)
VARIANTS = {
    "scale 0.9 / 1 / 1.1": [PLAIN, (0.0, 0.9), (0.0, 1.1)],
    "scale 0.95 / 1 / 1.05": [PLAIN, (0.0, 0.95), (0.0, 1.05)],
    "rotation -5 / 0 / +5": [PLAIN, (-5.0, 1.0), (5.0, 1.0)],
    "both (5 passes)": [PLAIN, (0.0, 0.9), (0.0, 1.1), (-5.0, 1.0), (5.0, 1.0)],
}


def model_space_passes(model, x: np.ndarray, transforms) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """{transform: (output warped back to the plain grid, where that output is defined)}
    for one (S, S, 3) model input; one batch for all transforms."""
    from cxr_dash.augment import affine_matrix, warp

    size = x.shape[0]
    matrices = {t: affine_matrix(size, *t) for t in transforms}
    batch = np.stack([warp(x, m) for m in matrices.values()])
    outputs = np.asarray(model.predict_on_batch(batch), np.float32)[..., 0]
    ones = np.ones((size, size), np.float32)
    back = {}
    for t, y in zip(matrices, outputs):
        inverse = cv2.invertAffineTransform(matrices[t])
        back[t] = (warp(y, inverse), warp(ones, inverse))
    return back


def main(argv=None):
    from cxr_dash.cli import measurement_setup
    from cxr_dash.evaluate import heldout_by_region
    from cxr_dash.inference import to_mask
    from cxr_dash.metrics import jaccard

    args, seg, dataset = measurement_setup(__doc__.splitlines()[0], argv,
                                           "only the first N held-out cases of each region",
                                           default_cases=None)
    transforms = sorted({t for ts in VARIANTS.values() for t in ts})
    for region, cases in heldout_by_region(seg, dataset.cases_with_masks(), limit=args.cases).items():
        scores = {name: [] for name in ("none", *VARIANTS)}
        for i, case_id in enumerate(cases, 1):
            truth = dataset.load_mask(case_id, region)
            back = model_space_passes(seg.model(region), seg.prepare(dataset.load_image(case_id).pixels, region),
                                      transforms)

            def score(model_map):
                return jaccard(to_mask(seg.to_image(model_map, region, truth.shape)), truth)

            scores["none"].append(score(back[PLAIN][0]))
            for name, ts in VARIANTS.items():
                total = sum(back[t][0] * back[t][1] for t in ts)
                scores[name].append(score(total / np.maximum(sum(back[t][1] for t in ts), 1e-6)))
            print(f"{region} {i}/{len(cases)} {case_id}", file=sys.stderr, flush=True)
        plain = np.array(scores["none"])
        print(f"{region} ({len(plain)} held-out cases): no TTA {plain.mean():.4f}")
        for name in VARIANTS:
            diff = np.array(scores[name]) - plain
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            print(f"  {name:22s} {plain.mean() + diff.mean():.4f}  {diff.mean():+.4f} "
                  f"(paired standard error {se:.4f}; better in {int((diff > 0).sum())} of {len(diff)})")


if __name__ == "__main__":
    main()
