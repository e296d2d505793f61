"""Shared fixtures: the real data folder, synthetic files, tiny model sets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cxr_dash.regions import REGION_KEYS   # importing cxr_dash chooses the Keras backend


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("CXR_DATA_DIR")
    if not value:
        pytest.skip("CXR_DATA_DIR is not set to the SCR data folder")
    if not Path(value).is_dir():
        # Set but wrong (CI's relative path from another folder, a typo): fail, so
        # that a run without its real-data tests cannot pass unnoticed.
        pytest.fail(f"CXR_DATA_DIR={value} is not a folder (from {Path.cwd()})")
    return Path(value)


@pytest.fixture(scope="session")
def dataset(data_dir):
    from cxr_dash.data import SCRDataset

    return SCRDataset(data_dir)


def make_random_model_set(folder: Path, input_size: int = 64, regions=REGION_KEYS,
                          training_cases=()) -> Path:
    """A complete model set with random weights: fast to build, real file format."""
    from cxr_dash.manifest import update_region
    from cxr_dash.model import build_unet, save_compact
    from cxr_dash.preprocess import FieldOfView
    from cxr_dash.regions import get_region

    import json

    import keras

    folder.mkdir(parents=True, exist_ok=True)
    for i, region in enumerate(regions):
        keras.utils.set_random_seed(i)
        model = build_unet(input_size)
        save_compact(model, folder / f"{region}.npz")
        # Two stages, as shipped: epochs 1-2 at half the size, then fine-tuning.
        history = [{"epoch": e, "loss": 1.0 / e, "val_iou": 0.5 + 0.05 * e, "val_dice": 0.6 + 0.05 * e,
                    "input_size": input_size if e == 3 else input_size // 2} for e in range(1, 4)]
        (folder / f"{region}_history.json").write_text(json.dumps(history))
        rng = np.random.default_rng(i)
        np.savez_compressed(folder / f"{region}_snapshots.npz",
                            probs=(rng.random((3, 2, input_size, input_size)) * 255).astype(np.uint8),
                            epochs=np.array([1, 2, 3]),
                            case_ids=np.array(["JPCLN104", "JPCLN002"]))
        # As the training tool writes it: every region names its field of view,
        # [0, 1, 0, 1] for the whole image; the clavicles see part of the image.
        view = FieldOfView.parse(get_region(region).field_of_view).as_list()
        update_region(folder, region, {
            "weights": f"{region}.npz", "input_size": input_size, "field_of_view": view,
            "hyperparameters": {**get_region(region).study.as_dict(), "input_size": input_size},
            "study_hyperparameters": get_region(region).study.as_dict(),
            "training": {"fold": "odd", "cases": list(training_cases), "note": "random weights (test)",
                         "earlier_stages": [{"input_size": input_size // 2, "epochs": 2,
                                             "hyperparameters": {"optimizer": "adam",
                                                                 "learning_rate": 0.001}}]},
            "metrics": {}, "history": f"{region}_history.json",
            "snapshots": f"{region}_snapshots.npz"})
    return folder


@pytest.fixture(scope="session")
def tiny_model_set(tmp_path_factory) -> Path:
    return make_random_model_set(tmp_path_factory.mktemp("tiny_set"), input_size=64)
