"""Throughput of batch segmentation (``cxr-dash segment``) in 1 and 2 local worker
processes and on a Dask LocalCluster, on this machine.

    CXR_DATA_DIR=../shared/data/scr python scripts/batch_benchmark.py [--cases 10]

Each configuration segments the same SCR images into a fresh temporary folder
(deleted afterwards: no output derived from the data is kept). Reported per
configuration: images/s end to end (worker start and model loading included) and
in the steady state (from the first finished image to the last; with N workers the
first N finish about together, so it slightly overstates N > 1).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def timed_run(tasks, config, **where) -> dict:
    from cxr_dash.batch import run_batch

    stamps = []
    started = time.perf_counter()
    summary = run_batch(tasks, config, progress=False,
                        on_result=lambda r: stamps.append(time.perf_counter()), **where)
    wall = time.perf_counter() - started
    steady = ((len(stamps) - 1) / (stamps[-1] - stamps[0])
              if len(stamps) > 1 and stamps[-1] > stamps[0] else float("nan"))
    return {"images": summary.done, "failed": len(summary.failed), "wall_s": wall,
            "end_to_end": summary.done / wall, "steady": steady}


def configurations(cluster_workers: int):
    yield "1 worker", {"workers": 1}
    yield "2 workers", {"workers": 2}
    yield f"LocalCluster ({cluster_workers} x 1 thread)", {"cluster": cluster_workers}


def run_one(tasks, config, where: dict) -> dict:
    if "cluster" not in where:
        return timed_run(tasks, config, **where)
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=where["cluster"], threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        return timed_run(tasks, config, dask_address=client)


def main(argv=None) -> None:
    from cxr_dash.batch import BatchConfig, collect_inputs
    from cxr_dash.cli import open_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="model set folder (default: weights/)")
    parser.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    parser.add_argument("--cases", type=int, default=10, help="images per configuration (10)")
    parser.add_argument("--cluster-workers", type=int, default=2)
    parser.add_argument("--no-quality", action="store_true", help="skip the quality estimate")
    args = parser.parse_args(argv)
    dataset = open_dataset(args.data)
    cases = dataset.case_ids[:args.cases]
    tasks = collect_inputs([str(dataset.image_paths[c]) for c in cases])
    print(f"{len(tasks)} SCR images (1024 px) per configuration; model set "
          f"{args.models or 'weights/'}")
    for label, where in configurations(args.cluster_workers):
        with tempfile.TemporaryDirectory() as out:
            config = BatchConfig(out=Path(out), model_dir=args.models,
                                 quality=not args.no_quality)
            r = run_one(tasks, config, where)
        print(f"{label:<28} {r['images']} images in {r['wall_s']:.1f} s: "
              f"{r['end_to_end']:.3f} images/s end to end, {r['steady']:.3f} steady"
              + (f" ({r['failed']} failed)" if r["failed"] else ""), flush=True)


if __name__ == "__main__":
    main()
