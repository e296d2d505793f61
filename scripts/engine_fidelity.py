"""Does a fast engine give the Keras models' probabilities and masks?

    CXR_DATA_DIR=../shared/data/scr python scripts/engine_fidelity.py --engine openvino-bf16
        [--models weights] [--every 10] [--external ../shared/data/shenzhen/images --every-external 23]

Runs ``Segmenter.predict`` (masks post-processed to one piece, as the app shows
them) on every ``--every``-th SCR case and, with ``--external``, on every
``--every-external``-th image of another folder, once on ``--engine`` and once on
the Keras models, and prints per region the mean absolute probability difference
(mean and worst image) and the mask Jaccard (mean and worst image), against the
speed issue's bar: difference <= 1e-3 and Jaccard >= 0.999.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cxr_dash.engine import ENGINES
from cxr_dash.metrics import jaccard

MAX_DIFFERENCE, MIN_JACCARD = 1e-3, 0.999


def test_images(args) -> list[np.ndarray]:
    from cxr_dash.data import SCRDataset, data_dir_from_env
    from cxr_dash.imaging import read_image

    root = args.data or data_dir_from_env()
    if not root:
        raise SystemExit("set CXR_DATA_DIR or --data")
    dataset = SCRDataset(root)
    images = [dataset.load_image(c).pixels for c in sorted(dataset.case_ids)[::args.every]]
    if args.external:
        files = sorted(p for p in Path(args.external).iterdir() if p.is_file())
        images += [read_image(p).pixels for p in files[::args.every_external]]
    return images


def compare(fast, reference, images) -> dict[str, tuple[list[float], list[float]]]:
    """{region: (differences, Jaccards)}, one of each per image."""
    out = {r: ([], []) for r in fast.regions}
    for i, image in enumerate(images, 1):
        a, b = fast.predict(image), reference.predict(image)
        for region, (differences, jaccards) in out.items():
            differences.append(float(np.abs(a[region] - b[region]).mean()))
            jaccards.append(jaccard(a[region] >= 0.5, b[region] >= 0.5))
        print(f"\r{i}/{len(images)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", default="openvino", choices=[e for e in ENGINES if e != "keras"])
    p.add_argument("--models", default=None)
    p.add_argument("--data", default=None, help="SCR folder (default: CXR_DATA_DIR)")
    p.add_argument("--every", type=int, default=10, help="every N-th SCR case (default 10: 20)")
    p.add_argument("--external", default=None, help="a folder of radiographs from elsewhere")
    p.add_argument("--every-external", type=int, default=23)
    args = p.parse_args(argv)

    from cxr_dash import load_segmenter

    images = test_images(args)
    fast = load_segmenter(args.models, warm_up=False, engine=args.engine)
    precisions = sorted({fast.precision(region) for region in fast.regions})
    reference = load_segmenter(args.models, warm_up=False, engine="keras")
    print(f"{args.engine} (compiled as {', '.join(precisions)}) against Keras, {len(images)} images")
    worst_ok = True
    for region, (differences, jaccards) in compare(fast, reference, images).items():
        ok = max(differences) <= MAX_DIFFERENCE and min(jaccards) >= MIN_JACCARD
        worst_ok &= ok
        print(f"{region:15s} probability difference mean {np.mean(differences):.1e} (worst image "
              f"{max(differences):.1e}); mask Jaccard mean {np.mean(jaccards):.4f} (worst "
              f"{min(jaccards):.4f}) [{'met' if ok else 'NOT MET'}: <= {MAX_DIFFERENCE:g}, "
              f">= {MIN_JACCARD}]")
    return 0 if worst_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
