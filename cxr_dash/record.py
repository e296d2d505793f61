"""What training left behind for a region: history and per-epoch snapshots."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import SPLIT_DESCRIPTIONS
from .manifest import MANIFEST_NAME, load_json, update_region

SNAPSHOT_BUDGET_BYTES = 5 * 1024 * 1024


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

    @property
    def stages(self) -> list[dict]:
        """Earlier training stages (e.g. 128 px before 256 px fine-tuning), oldest first."""
        return list(self.training.get("earlier_stages", []))

    def stage_starts(self) -> list[tuple[int, int]]:
        """(first epoch, input size) of every stage after the first, for the curves."""
        starts, previous = [], None
        for row in self.history:
            stage = (row.get("stage"), row.get("input_size"))   # either changing starts a stage
            if previous is not None and stage != previous:
                starts.append((row["epoch"], row.get("input_size")))
            previous = stage
        return starts

    def stage_splits(self) -> list[tuple[str | None, int | None]]:
        """(training split, number of training cases) of every stage, oldest first;
        None where a record written before stages kept them does not say."""
        earlier = [(s.get("fold"), s.get("cases")) for s in self.stages]
        return earlier + [(self.training.get("fold"), len(self.training.get("cases", [])) or None)]

    def stage_markers(self) -> list[tuple[int, str]]:
        """(first epoch, label) of every stage after the first, for the curves: its
        input size, and its number of training cases where the split changed, since
        the validation curve is then measured on other cases too."""
        starts, splits = self.stage_starts(), self.stage_splits()
        markers = []
        for k, (first, size) in enumerate(starts):
            label = f"{size} px"
            if len(splits) == len(starts) + 1:      # history and manifest tell the same stages
                (before, _), (split, n_cases) = splits[k], splits[k + 1]
                if before and split and split != before and n_cases:
                    label += f" · {n_cases} cases"
            markers.append((first, label))
        return markers

    def describe_stages(self) -> str:
        """One sentence per earlier stage, for captions ('' for a single-stage run)."""
        described = [
            f"epochs before {first}: {stage['input_size']} px, "
            f"{stage['hyperparameters'].get('optimizer', '?')} lr "
            f"{stage['hyperparameters'].get('learning_rate', '?')}"
            + (f", {SPLIT_DESCRIPTIONS.get(stage['fold'], stage['fold'])}" if stage.get("fold") else "")
            for stage, (first, _) in zip(self.stages, self.stage_starts())]
        if not described:
            return ""
        return "Earlier stages: " + "; ".join(described) + " (the table shows the last stage)."

    def snapshot_times(self) -> np.ndarray | None:
        """Seconds of training, as recorded epoch by epoch (``seconds`` in the history),
        from the end of the first snapshot's epoch to the end of each snapshot's: the clock
        that plays the snapshots back at the speed training went. None where the history
        does not record every epoch's time."""
        seconds = {int(row["epoch"]): row.get("seconds") for row in self.history}
        epochs = [int(e) for e in self.snapshot_epochs]
        if not epochs or any(not isinstance(seconds.get(e), (int, float)) for e in epochs) or any(
                not isinstance(v, (int, float)) for v in seconds.values()):
            return None
        ordered = sorted(seconds)
        elapsed = dict(zip(ordered, np.cumsum([seconds[e] for e in ordered])))
        return np.array([elapsed[e] - elapsed[epochs[0]] for e in epochs], np.float64)

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


def thin_snapshots(snapshots: np.ndarray, epochs: list[int], budget: int = SNAPSHOT_BUDGET_BYTES):
    """Drop evenly spaced epochs (always keeping the first and last) until the compressed file fits."""
    keep = list(range(len(epochs)))
    while True:
        buf = io.BytesIO()
        np.savez_compressed(buf, probs=snapshots[keep], epochs=np.array([epochs[k] for k in keep]))
        if buf.tell() <= budget or len(keep) <= 2:
            return keep, buf.getvalue()
        keep = sorted(set(keep[::2]) | {keep[-1]})


def write_snapshots(path: str | Path, snapshots: np.ndarray, epochs: list[int],
                    case_ids: list[str]) -> None:
    """Write a region's snapshot file within the budget (names of the panel's cases, no pixels)."""
    keep, blob = thin_snapshots(snapshots, epochs)
    with np.load(io.BytesIO(blob)) as z:
        np.savez_compressed(path, probs=z["probs"], epochs=z["epochs"], case_ids=np.array(case_ids))


def prepend_earlier_stage(out_dir: str | Path, region: str, init_weights: str | Path) -> bool:
    """Make a fine-tuned region's record tell its whole story.

    A model fine-tuned from an earlier run (``--init-weights``, e.g. 128 px then
    256 px) would otherwise show only the fine-tuning epochs in training playback.
    When the earlier run's model set (its manifest beside the weights file) has a
    record for the region, its history is put in front, epochs renumbered, every
    row tagged with its input size; its snapshots are resized to the new size and
    put in front when the field of view matches (for the panel cases both
    runs share); the earlier
    stage's hyperparameters go to ``training.earlier_stages``. Rows carry their
    stage number, so a run of three stages keeps all three. Returns whether
    anything was prepended.
    """
    import cv2

    out_dir, earlier_dir = Path(out_dir), Path(init_weights).parent
    if not (earlier_dir / MANIFEST_NAME).is_file() or earlier_dir.resolve() == out_dir.resolve():
        return False
    earlier_manifest = json.loads((earlier_dir / MANIFEST_NAME).read_text())
    earlier = load_record(earlier_dir, earlier_manifest, region)
    current_manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    entry = current_manifest["regions"][region]
    if earlier is None or not earlier.history or entry["training"].get("earlier_stages"):
        return False
    old_entry = earlier_manifest["regions"][region]
    old_size = int(old_entry.get("input_size", 0))
    history = load_json(out_dir, entry["history"]) or []
    offset = len(earlier.history)
    merged = [{**row, "input_size": row.get("input_size", old_size),
               "stage": row.get("stage", len(earlier.stages) + 1)} for row in earlier.history]
    stage_number = merged[-1]["stage"] + 1
    merged += [{**row, "epoch": row["epoch"] + offset, "input_size": entry["input_size"],
                "stage": stage_number} for row in history]
    (out_dir / entry["history"]).write_text(json.dumps(merged, indent=1) + "\n")

    with np.load(out_dir / entry["snapshots"]) as z:
        probs, epochs, cases = z["probs"], list(z["epochs"] + offset), [str(c) for c in z["case_ids"]]
    # A stage that validates on other cases (another training split) keeps the panel
    # cases both stages share, so playback still runs from the first epoch.
    shared = [c for c in cases if c in earlier.case_ids]
    same_view = old_entry.get("field_of_view") == entry.get("field_of_view")
    if same_view and shared and len(earlier.snapshot_epochs):
        size = probs.shape[-1]
        old_frames = earlier.snapshots[:, [earlier.case_ids.index(c) for c in shared]]
        old = np.array([[cv2.resize(p, (size, size), interpolation=cv2.INTER_LINEAR) for p in frame]
                        for frame in old_frames], dtype=np.uint8)
        probs = np.concatenate([old, probs[:, [cases.index(c) for c in shared]]])
        epochs = [int(e) for e in earlier.snapshot_epochs] + epochs
        cases = shared
    write_snapshots(out_dir / entry["snapshots"], probs, epochs, cases)

    earlier_epochs = offset - sum(s["epochs"] for s in earlier.stages)
    old_training = old_entry.get("training", {})
    stage = {"input_size": old_size, "epochs": earlier_epochs,
             "fold": old_training.get("fold"), "cases": len(old_training.get("cases", [])) or None,
             "hyperparameters": old_entry.get("hyperparameters", {}),
             "seconds": old_training.get("seconds"),
             "weights_from": str(earlier_dir)}
    training = dict(entry["training"])
    training["earlier_stages"] = earlier.stages + [stage]
    training["epochs_run"] = offset + int(training.get("epochs_run", len(history)))
    training["epoch_kept"] = offset + int(training.get("epoch_kept", len(history)))
    update_region(out_dir, region, {"training": training})
    return True


def frame_at(times: np.ndarray, position: float) -> int:
    """The snapshot shown ``position`` seconds into a playback clocked by ``times``
    (:meth:`TrainingRecord.snapshot_times`): the last one taken by then."""
    return max(0, int(np.searchsorted(times, position, side="right")) - 1)
