"""Segment many radiographs into masks, overlays, DICOM SEG objects and one table: ``cxr-dash segment INPUT... --out DIR``

    cxr-dash segment scans/ more/*.dcm export.zip --out results/ [--workers 2]
    cxr-dash segment scans/ --out results/ --dask tcp://scheduler:8786

INPUT: files, folders (searched recursively), globs and zip / tar archives of PNG,
JPEG, TIFF, 16-bit, DICOM or JSRT ``.IMG`` radiographs. Per image, DIR/KEY/ gets a
mask PNG per region, ``overlay.png``, for DICOM inputs ``seg.dcm`` (a DICOM SEG that
references the source, for OHIF or 3D Slicer) and ``record.json``; DIR gets
``segmentation.csv`` (``.parquet`` too with pyarrow): a row per image and region
(area in px and cm², centroid, bounding box, widest extent, estimated Jaccard and
its warning, the image's cardiothoracic ratio), a file that could not be read as
one row with its error. Images done by an earlier run into DIR are skipped; a
failed one is logged (DIR/errors.log) and the run goes on; the exit status is 1
if any failed. See :mod:`cxr_dash.batch`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .engine import ENGINES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-dash segment", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders, globs (quoted) or zip / tar archives")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--models", default=None, help="model set folder (default: weights/)")
    parser.add_argument("--engine", default=None, choices=ENGINES,
                        help="inference engine (default: OpenVINO when installed)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1,
                       help="local worker processes, each with its own models (default 1)")
    where.add_argument("--dask", metavar="ADDRESS", default=None,
                       help="run on this Dask distributed scheduler (e.g. tcp://host:8786); "
                            "its workers must see the inputs, results come back here")
    parser.add_argument("--threshold", type=float, default=0.5, help="mask threshold (0.5)")
    parser.add_argument("--pixel-spacing", type=float, default=None, metavar="MM",
                        help="mm per pixel for files that carry none (areas in cm², widths in mm)")
    parser.add_argument("--no-quality", action="store_true",
                        help="skip the estimated Jaccard (one extra pass per region)")
    parser.add_argument("--no-seg", action="store_true", help="no DICOM SEG for DICOM inputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    from .batch import BatchConfig, collect_inputs, run_batch

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        build_parser().error("--workers must be at least 1")
    tasks = collect_inputs(args.inputs)
    if not tasks:
        print("no images found in " + ", ".join(args.inputs), file=sys.stderr)
        return 2
    config = BatchConfig(out=args.out, model_dir=args.models, engine=args.engine,
                         threshold=args.threshold, pixel_spacing_mm=args.pixel_spacing,
                         quality=not args.no_quality, seg=not args.no_seg)
    s = run_batch(tasks, config, workers=args.workers, dask_address=args.dask,
                  progress=not args.quiet)
    rate = f", {s.images_per_second:.2f} images/s" if s.done else ""
    print(f"{len(tasks)} images: {s.done} segmented in {s.seconds:.1f} s{rate}, "
          f"{s.skipped} done before, {len(s.failed)} failed"
          + (f" (see {args.out / 'errors.log'})" if s.failed else "")
          + f"; table: {', '.join(str(p) for p in s.table)}")
    return 1 if s.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
