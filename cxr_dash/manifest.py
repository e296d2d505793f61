"""``manifest.json``: what a model set is.

One file per model-set folder, read by the app, evaluation and training
alike::

    {"format": "cxr-dash-modelset/1", "architecture": ..., "regions": {
        "heart": {"weights": "heart.npz", "input_size": 128,
                  "hyperparameters": {...}, "study_hyperparameters": {...},
                  "training": {"fold": "odd", "cases": [...], "validation_cases": [...], ...},
                  "metrics": {...}, "history": "heart_history.json",
                  "snapshots": "heart_snapshots.npz"}}}
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ModelSetError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "cxr-dash-modelset/1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = PROJECT_ROOT / "weights"

HOW_TO_TRAIN = ("Train one with `python -m cxr_dash.train --region all --out weights` "
                "(CXR_DATA_DIR must point at the SCR data), or pass the folder of another "
                "model set to load_segmenter(path).")


def read_manifest(model_dir: str | os.PathLike = DEFAULT_MODEL_DIR) -> dict:
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ModelSetError(f"No trained model set in {Path(model_dir)} (no {MANIFEST_NAME}). "
                            + HOW_TO_TRAIN)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelSetError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT or not manifest.get("regions"):
        raise ModelSetError(f"{path} is not a {MANIFEST_FORMAT} manifest with regions. "
                            + HOW_TO_TRAIN)
    return manifest


def write_manifest(model_dir: str | os.PathLike, manifest: dict) -> Path:
    path = Path(model_dir) / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def update_region(model_dir: str | os.PathLike, region: str, entry: dict,
                  top_level: dict | None = None) -> dict:
    """Merge one region's entry into the folder's manifest (creating it if needed)."""
    path = Path(model_dir) / MANIFEST_NAME
    if path.is_file():
        manifest = json.loads(path.read_text())
    else:
        from .model import ARCHITECTURE, COMPACT_FORMAT
        manifest = {"format": MANIFEST_FORMAT, "architecture": ARCHITECTURE,
                    "weights_format": COMPACT_FORMAT, "regions": {}}
    if top_level:
        manifest.update(top_level)
    from .regions import REGION_KEYS
    regions = dict(manifest.get("regions", {}))
    regions[region] = {**regions.get(region, {}), **entry}
    manifest["regions"] = {k: regions[k] for k in REGION_KEYS if k in regions}
    write_manifest(model_dir, manifest)
    return manifest


def training_cases(entry: dict) -> set[str]:
    """The cases a region's model (its manifest entry) was trained on."""
    return set(entry.get("training", {}).get("cases", []))


def load_json(model_dir, name: str | None):
    if not name:
        return None
    p = Path(model_dir) / name
    return json.loads(p.read_text()) if p.is_file() else None
