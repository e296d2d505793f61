"""Re-estimate the batch-norm statistics of a trained model set:
``python -m cxr_dash.recalibrate --models runs/stage2 --region heart``.

For sets trained before the training tool did this itself (it now does, at
the end of every run). Weights stay as they are; only each batch-norm
layer's moving mean and variance are recomputed on the region's training
cases (from the manifest), augmented as in training, so nothing is learned
from the validation cases. The region's validation IoU at input size is
measured before and after and stored in the manifest with the
recalibration; held-out figures of an earlier evaluation are dropped
(re-run ``python -m cxr_dash.evaluate --update-manifest``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import data as scr
from .augment import AugmentConfig, augmented_copies
from .cli import open_dataset
from .manifest import read_manifest, update_region
from .model import (build_unet, load_compact, predict_probabilities, recalibrate_batch_norm,
                    store_batch_norm_statistics)
from .preprocess import FieldOfView
from .regions import REGION_KEYS, get_region
from .train import mask_scores


def recalibrate_region(model_dir: str | Path, region: str, dataset: scr.SCRDataset,
                       verbose: bool = True) -> dict:
    """Recalibrate one region's model in ``model_dir`` in place; returns the recalibration record."""
    model_dir = Path(model_dir)
    entry = read_manifest(model_dir)["regions"][region]
    size = int(entry["input_size"])
    view = FieldOfView.parse(entry.get("field_of_view") or "full")
    training = entry.get("training", {})
    train_ids, val_ids = training.get("cases") or [], training.get("validation_cases") or []
    if not train_ids:
        raise ValueError(f"{region}: the manifest lists no training cases to recalibrate on")
    region_index = REGION_KEYS.index(region)
    # An epoch's worth of augmented training cases, as the training tool uses.
    copies = int(entry.get("hyperparameters", {}).get("augment_copies") or 2)
    augment = AugmentConfig.from_dict(training.get("augment") or {})
    intensity = (entry.get("preprocessing") or {}).get("intensity")
    train_x = augmented_copies(scr.pack(dataset, train_ids, size, view=view)["images"], copies,
                               int(training.get("seed", 0)) + 1, augment, intensity)
    model = build_unet(size)
    load_compact(model, model_dir / entry["weights"])

    held_out = bool(val_ids) and not training.get("validation_is_training")
    if held_out:
        va = scr.pack(dataset, val_ids, size, view=view)
        val_x, val_masks = scr.model_inputs(va["images"], intensity), va["masks"][:, region_index].astype(bool)

    def validation_scores():
        """(IoU, Dice) at input size on the validation cases; None without held-out cases."""
        return mask_scores(predict_probabilities(model, val_x), val_masks) if held_out else None

    t0 = time.time()
    before = validation_scores()
    recalibrate_batch_norm(model, train_x)
    size_bytes = store_batch_norm_statistics(model, model_dir / entry["weights"])
    after = validation_scores()
    record = {"cases": len(train_ids), "augmented_copies": copies,
              "validation_iou_before": before and before[0],
              "validation_iou_after": after and after[0], "applied_after_training": True}
    metrics = {k: v for k, v in entry.get("metrics", {}).items() if k != "heldout_1024"}
    if after is not None:
        metrics["validation_at_input_size"] = {"jaccard": after[0], "dice": after[1],
                                               "cases": len(val_ids)}
    update_region(model_dir, region, {"training": {**training, "batch_norm_recalibration": record},
                                      "metrics": metrics, "weights_bytes": size_bytes})
    if verbose:
        def fmt(v):
            return "n/a" if v is None else f"{v:.4f}"

        print(f"[{region}] batch-norm statistics re-estimated on {len(train_ids)} training cases: "
              f"validation IoU {fmt(record['validation_iou_before'])} -> "
              f"{fmt(record['validation_iou_after'])} ({time.time() - t0:.0f} s)", flush=True)
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cxr_dash.recalibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="model-set folder (rewritten in place)")
    p.add_argument("--region", nargs="+", default=["all"], help=f"{', '.join(REGION_KEYS)} or all")
    p.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    args = p.parse_args(argv)
    dataset = open_dataset(args.data)
    present = read_manifest(args.models)["regions"]
    regions = [r for r in REGION_KEYS if r in present] if args.region == ["all"] \
        else [get_region(r).key for r in args.region]
    for region in regions:
        recalibrate_region(args.models, region, dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
