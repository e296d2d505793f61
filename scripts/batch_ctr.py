"""Cardiothoracic ratio in a ``cxr-dash segment`` table against the ratio of the SCR
ground truth, on the cases the heart model did not train on.

    CXR_DATA_DIR=../shared/data/scr python scripts/batch_ctr.py OUT/segmentation.csv

Reads the table's ``ctr`` column (the batch run's masks, measured by
``cxr_dash.measure.cardiothoracic_ratio``), measures the SCR masks the same way, and
prints the mean absolute difference (target <= 0.02) with ``ctr_check.py``'s summary.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path


def load_ctr_check():
    spec = importlib.util.spec_from_file_location("ctr_check", Path(__file__).with_name("ctr_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_ctr(path: Path) -> dict[str, float | None]:
    """{image key: ctr} from the table's first row of each image (a JSRT PNG's key is its case)."""
    out = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["image"] not in out:
                out[row["image"].upper()] = float(row["ctr"]) if row["ctr"] else None
    return out


def main(argv=None) -> None:
    from cxr_dash.cli import open_dataset
    from cxr_dash.manifest import DEFAULT_MODEL_DIR, read_manifest, training_cases
    from cxr_dash.measure import cardiothoracic_ratio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="segmentation.csv of a cxr-dash segment run")
    parser.add_argument("--models", default=None, help="model set of that run (default: weights/)")
    parser.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    args = parser.parse_args(argv)
    check = load_ctr_check()
    dataset = open_dataset(args.data)
    manifest = read_manifest(Path(args.models or DEFAULT_MODEL_DIR))
    trained = training_cases(manifest["regions"]["heart"])
    predicted = table_ctr(args.table)
    regions = ("heart",) + check.LUNGS
    cases = [c for c in dataset.cases_with_masks(regions) if c not in trained and c in predicted]
    pairs = []
    for case_id in cases:
        truth = cardiothoracic_ratio(dataset.load_case(case_id, regions=regions).masks)
        pairs.append((case_id, predicted[case_id], None if truth is None else truth.ratio))
    s = check.summary(pairs)
    print(f"{len(cases)} cases of {args.table} the heart model did not train on")
    print(f"|CTR table - CTR ground truth|: mean {s['mean_abs']:.4f} (sd {s['sd_abs']:.4f}, "
          f"median {s['median_abs']:.4f}, max {s['max_abs']:.4f}); bias {s['bias']:+.4f}; "
          f"{s['within_target']} of {s['n']} within {check.TARGET}"
          + (f"; {s['unmeasured']} not measurable" if s["unmeasured"] else ""))
    print(f"target mean <= {check.TARGET}: {'met' if s['mean_abs'] <= check.TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
