"""Small helpers shared by the command-line tools (train, evaluate, position, tune)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import data as scr
from .regions import get_region


def open_dataset(data_arg: str | None, packs_allowed: bool = False) -> "scr.SCRDataset | scr.TrainingPack":
    """The SCR data of ``--data`` or ``$CXR_DATA_DIR``; exits with a message when neither is given.

    With ``packs_allowed`` (training, tuning) ``--data`` may also name a training
    pack or a folder of them (``python -m cxr_dash.pack``): what a machine without
    the data folder trains from.
    """
    root = Path(data_arg) if data_arg else scr.data_dir_from_env()
    if root is None:
        print("error: no data folder: pass --data or set CXR_DATA_DIR", file=sys.stderr)
        raise SystemExit(2)
    try:
        if packs_allowed and (root.name.endswith(scr.PACK_SUFFIX)
                              or (root.is_dir() and any(root.glob(f"*{scr.PACK_SUFFIX}")))):
            return scr.TrainingPack(root)
        return scr.SCRDataset(root)
    except FileNotFoundError as exc:     # no such folder, or no JSRT images in it
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# argparse ``type=`` converters: a bad value becomes a usage error naming the
# flag, not a traceback from deep inside training after the data is packed.

def region_argument(value: str) -> str:
    """A region key from any accepted spelling ('left lung', 'left-lung')."""
    try:
        return get_region(value).key
    except KeyError as exc:
        raise argparse.ArgumentTypeError(exc.args[0]) from None


def data_folder_argument(value: str) -> str:
    if not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"data folder {value} does not exist")
    return value


DATA_OR_PACK_HELP = ("SCR data folder (default: $CXR_DATA_DIR), or training packs made by "
                     "python -m cxr_dash.pack (a pack file or a folder of them)")
DATA_WORKERS_HELP = "threads augmenting batches while the model trains (GPU runs: 4-8)"


def data_or_pack_argument(value: str) -> str:
    """A data folder, a folder of training packs, or one pack file."""
    if Path(value).is_file() and value.endswith(scr.PACK_SUFFIX):
        return value
    return data_folder_argument(value)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {number}")
    return number


def probability_argument(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value}")
    return p


def input_size_argument(value: str) -> int:
    """The U-Net's encoder halves its input five times: sides must be multiples of 32."""
    size = positive_int(value)
    if size % 32:
        raise argparse.ArgumentTypeError(f"input size must be a multiple of 32, got {size}")
    return size


def model_set_or_exit(parser: argparse.ArgumentParser, model_dir, regions=None):
    """The model set of ``--models`` (default: weights/), or a usage error saying
    what is wrong with it (no manifest, missing or damaged weights)."""
    from .errors import ModelSetError
    from .inference import load_segmenter

    try:
        return load_segmenter(model_dir, regions)
    except ModelSetError as exc:
        parser.error(str(exc))


def progress_bar(done: int, total: int, label: str = "", width: int = 30) -> None:
    """A one-line text progress bar on stderr."""
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}      ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def measurement_setup(description: str, argv=None, cases_help: str = "held-out cases to use",
                      default_cases: int | None = 24, regions=None):
    """What the measurement scripts (``scripts/``) share: ``--models``, ``--data`` and
    ``--cases``; returns (arguments, model set, dataset), or exits with a usage error."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", default=None, help="model set folder (default: weights/)")
    parser.add_argument("--data", default=None, help="SCR data folder (default: $CXR_DATA_DIR)")
    parser.add_argument("--cases", type=positive_int, default=default_cases, help=cases_help)
    args = parser.parse_args(argv)
    dataset = open_dataset(args.data)
    return args, model_set_or_exit(parser, args.models, regions), dataset


def cases_held_out(seg, available: list[str]) -> list[str]:
    """The available cases that no model of ``seg`` trained on, leaving aside models
    trained on every available case (the shipped lungs: nothing is held out from them,
    so their figures on these cases are fit, not generalisation)."""
    partial = [r for r in seg.regions if not set(available) <= seg.training_cases(r)]
    trained = set().union(*(seg.training_cases(r) for r in partial)) if partial else set()
    return [c for c in available if c not in trained]


def held_out_sample(seg, dataset: scr.SCRDataset, n: int) -> list[str]:
    """``n`` cases spread evenly over :func:`cases_held_out`."""
    held_out = cases_held_out(seg, dataset.cases_with_masks())
    return held_out[::max(1, len(held_out) // n)][:n]
