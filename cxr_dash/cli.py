"""Small helpers shared by the command-line tools (train, evaluate, position, tune)."""
from __future__ import annotations

import sys
from pathlib import Path

from . import data as scr


def open_dataset(data_arg: str | None) -> scr.SCRDataset:
    """The SCR data of ``--data`` or ``$CXR_DATA_DIR``; exits with a message when neither is given."""
    root = Path(data_arg) if data_arg else scr.data_dir_from_env()
    if root is None:
        print("error: no data folder: pass --data or set CXR_DATA_DIR", file=sys.stderr)
        raise SystemExit(2)
    return scr.SCRDataset(root)


def progress_bar(done: int, total: int, label: str = "", width: int = 30) -> None:
    """A one-line text progress bar on stderr."""
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}      ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
