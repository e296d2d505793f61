"""Non-square radiographs: the square frame (what `predict` does) against squashing.

    CXR_DATA_DIR=... python scripts/non_square.py [--models weights] [--cases 24]

The models were trained on square SCR radiographs; most clinical images are
not square. This crops held-out SCR cases to 4:5 (portrait), 9:10 and 5:4
(landscape) and scores every region, Jaccard at 1024 px against the cropped
ground truth, two ways: ``frame`` completes the image to a square by
repeating its border (``Segmenter.predict``), ``squash`` resizes it to a
square and the maps back (the anatomy's proportions change). Prints a table.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

# (name, rows kept, columns kept) as fractions of a square case.
CROPS = (("portrait 4:5", (0.0, 1.0), (0.1, 0.9)),
         ("portrait 9:10", (0.0, 1.0), (0.05, 0.95)),
         ("landscape 5:4", (0.1, 0.9), (0.0, 1.0)))


def squashed_predict(seg, image):
    h, w = image.shape
    n = max(h, w)
    square = cv2.resize(image.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
    return {r: cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for r, p in seg.predict(square).items()}


def main(argv=None):
    from cxr_dash.cli import held_out_sample, measurement_setup
    from cxr_dash.metrics import jaccard

    args, seg, dataset = measurement_setup(__doc__.splitlines()[0], argv)
    cases = held_out_sample(seg, dataset, args.cases)
    scores: dict[tuple, list[float]] = {}
    for i, case_id in enumerate(cases, 1):
        case = dataset.load_case(case_id)
        for name, (r0, r1), (c0, c1) in CROPS:
            h, w = case.image.shape
            rows, cols = slice(round(r0 * h), round(r1 * h)), slice(round(c0 * w), round(c1 * w))
            image = case.image[rows, cols]
            for how, probs in (("frame", seg.predict(image)), ("squash", squashed_predict(seg, image))):
                for region, mask in seg.masks(probs).items():
                    scores.setdefault((name, how, region), []).append(
                        jaccard(mask, case.masks[region][rows, cols]))
        print(f"{i}/{len(cases)} {case_id}", file=sys.stderr, flush=True)
    regions = seg.regions
    print(f"{len(cases)} cases no model trained on; mean Jaccard at the image's size\n")
    print("| crop | method | " + " | ".join(regions) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in regions) + " |")
    for name, _, _ in CROPS:
        for how in ("frame", "squash"):
            print(f"| {name} | {how} | " +
                  " | ".join(f"{np.mean(scores[name, how, r]):.3f}" for r in regions) + " |")


if __name__ == "__main__":
    main()
