"""Pack the data for training where the data folder is not: ``python -m cxr_dash.pack``.

A lent GPU machine cannot read ``CXR_DATA_DIR`` and takes a few tens of MB of
files: this writes every case's model input and masks at one input size and
field of view into one compressed file, which ``train --data`` and ``tune
--data`` accept in place of the data folder (``TrainingPack``). One file per
(input size, field of view): a region's default window, or ``--field-of-view``.

    python -m cxr_dash.pack --region left_clavicle right_clavicle --input-size 384 --out .gpu/data

Packs are derived from the data: write them to an ignored folder, never commit them.
"""
from __future__ import annotations

import argparse
import sys

from . import data as scr
from .cli import input_size_argument, open_dataset, region_argument
from .preprocess import FieldOfView
from .regions import get_region


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cxr_dash.pack", description=__doc__.split("\n\n")[0])
    p.add_argument("--region", nargs="+", type=region_argument, default=None,
                   help="pack each region's default field of view (default: the whole image)")
    p.add_argument("--field-of-view", nargs=4, type=float, default=None, metavar="F",
                   help="instead: TOP BOTTOM LEFT RIGHT as fractions of the image")
    p.add_argument("--input-size", type=input_size_argument, required=True, nargs="+")
    p.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    p.add_argument("--out", required=True, help="folder for the packs (keep it out of git)")
    args = p.parse_args(argv)
    if args.field_of_view is not None:
        views = [FieldOfView.parse(args.field_of_view)]
    elif args.region:
        views = [FieldOfView.parse(get_region(r).field_of_view) for r in args.region]
    else:
        views = [FieldOfView.parse("full")]
    unique = {tuple(v.as_list()): v for v in views}
    dataset = open_dataset(args.data)
    for size in args.input_size:
        for view in unique.values():
            path = scr.write_training_pack(dataset, args.out, size, view)
            print(f"{path}: {len(dataset.cases_with_masks())} cases at {size} px over "
                  f"{view.describe()}, {path.stat().st_size / 1e6:.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
