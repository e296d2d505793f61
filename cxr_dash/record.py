"""What training left behind for a region: history and per-epoch snapshots."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import load_json


@dataclass
class TrainingRecord:
    region: str
    history: list[dict]
    snapshot_epochs: np.ndarray      # (E,)
    snapshots: np.ndarray            # (E, P, S, S) uint8 probabilities
    case_ids: list[str]              # the panel's cases (names only)
    hyperparameters: dict
    study_hyperparameters: dict
    training: dict
    field_of_view: list[float] | None = None   # None: the whole image

    def snapshot(self, epoch_index: int, case_index: int = 0) -> np.ndarray:
        return self.snapshots[epoch_index, case_index].astype(np.float32) / 255.0


def load_record(model_dir: str | Path, manifest: dict, region: str) -> TrainingRecord | None:
    entry = manifest["regions"].get(region)
    if not entry:
        return None
    history = load_json(model_dir, entry.get("history")) or []
    epochs, probs, cases = np.zeros(0, int), np.zeros((0, 0, 0, 0), np.uint8), []
    snap = Path(model_dir) / entry.get("snapshots", "")
    if entry.get("snapshots") and snap.is_file():
        with np.load(snap) as z:
            epochs, probs = z["epochs"], z["probs"]
            cases = [str(c) for c in z["case_ids"]] if "case_ids" in z.files else []
    return TrainingRecord(region, history, epochs, probs, cases, entry.get("hyperparameters", {}),
                          entry.get("study_hyperparameters", {}), entry.get("training", {}),
                          entry.get("field_of_view"))
