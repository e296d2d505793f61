"""Speed figures on this machine: model-set load, segmentation, explanations.

    python scripts/benchmark.py [--models weights] [--repeats 5]

Prints: load time of the model set; ``predict`` for all regions on a
1024 x 1024 radiograph (target <= 1.5 s on 2 CPU cores); the app's first
full segmentation (predict + masks); Grad-CAM for one region (target <= 3 s);
occlusion for one region with default settings (target <= 30 s).
Uses a real case from CXR_DATA_DIR when set, else a synthetic image.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, times


def fmt(times):
    return f"median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--region", default="left_lung")
    args = p.parse_args(argv)

    from cxr_dash import load_segmenter
    from cxr_dash.data import SHOWCASE_CASE, SCRDataset, data_dir_from_env

    root = data_dir_from_env()
    if root:
        image = SCRDataset(root).load_image(SHOWCASE_CASE).pixels
        source = f"{SHOWCASE_CASE} from CXR_DATA_DIR"
    else:
        yy, xx = np.mgrid[0:1024, 0:1024]
        image = (128 + 60 * np.sin(xx / 90.0) * np.cos(yy / 70.0)).astype(np.uint8)
        source = "synthetic 1024 x 1024"
    print(f"input: {source}, shape {image.shape}, cores: {os.cpu_count()}")
    # oneDNN's bfloat16 math for convolutions (opt-in, README "Speed"): say which was timed.
    print(f"oneDNN float math: {os.environ.get('TF_SET_ONEDNN_FPMATH_MODE') or 'float32 (default)'}")

    t = time.perf_counter()
    seg = load_segmenter(args.models, warm_up=False)
    print(f"model set load ({len(seg.regions)} regions, {seg.model_dir}): {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    seg.warm_up()
    print(f"warm-up (graph tracing, part of the app's model loading): {time.perf_counter() - t:.2f} s")
    _, first = timed(lambda: seg.predict(image), 1)
    print(f"predict, first real image after loading: {first[0]:.3f} s")
    probs, times = timed(lambda: seg.predict(image, tta=False), args.repeats)
    print(f"predict, all regions, 1024 x 1024: {fmt(times)}   [target <= 1.5 s]")
    _, times = timed(lambda: seg.predict(image, tta=True), args.repeats)
    print(f"predict with test-time augmentation (4 grids), all regions: {fmt(times)}   "
          f"[set default: {'on' if seg.default_tta else 'off'}]")

    # The app's first full segmentation of a new upload: probabilities and masks
    # (with the model set's default test-time augmentation).
    def full():
        pr = seg.predict(image * 0.999 + 0.5)  # a "new" image: nothing cached
        return seg.masks(pr, 0.5, True)
    _, times = timed(full, args.repeats)
    print(f"app: first full segmentation (predict + masks): {fmt(times)}   [target <= 3 s]")

    from cxr_dash.explain import explain
    explain(seg, image, args.region, "gradcam")  # tracing
    _, times = timed(lambda: explain(seg, image, args.region, "gradcam"), args.repeats)
    print(f"Grad-CAM, {args.region}: {fmt(times)}   [target <= 3 s]")
    for method in ("gradcam++", "layercam", "scorecam", "smoothgrad"):
        _, times = timed(lambda: explain(seg, image, args.region, method), 1)
        print(f"{method}, {args.region}: {times[0]:.2f} s")

    from cxr_dash.occlusion import model_predictor, occlusion_sensitivity
    res, times = timed(lambda: occlusion_sensitivity(model_predictor(seg.model(args.region)),
                                                     seg.prepare(image, args.region)), 1)
    print(f"occlusion, {args.region}, defaults (patch {res.patch}, stride {res.stride}, "
          f"{res.evaluations} passes): {times[0]:.2f} s   [target <= 30 s]")


if __name__ == "__main__":
    main()
