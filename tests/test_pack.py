"""Training packs: the data carried to a machine that cannot read the data folder
(a lent GPU), and the training run's safeguards for a short lease."""
import json

import numpy as np
import pytest

from cxr_dash.data import TrainingPack, pack, write_training_pack
from cxr_dash.preprocess import FieldOfView
from cxr_dash.regions import REGION_KEYS, get_region

CLAVICLE_VIEW = FieldOfView.parse(get_region("left_clavicle").field_of_view)


@pytest.fixture(scope="module")
def small_data(dataset, tmp_path_factory):
    """Six real cases (three of each fold) in a data folder of their own, as links."""
    root = tmp_path_factory.mktemp("scr_subset")
    cases = dataset.folds()["odd"][:3] + dataset.folds()["even"][:3]
    (root / "images").mkdir()
    for case in cases:
        (root / "images" / f"{case}.png").symlink_to(dataset.image_paths[case].resolve())
        for region in REGION_KEYS:
            source = dataset.mask_path(case, region)
            folder = root / "masks" / source.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / source.name).symlink_to(source.resolve())
    return root, cases


def test_a_pack_gives_what_the_data_folder_gives(dataset, small_data, tmp_path):
    _, cases = small_data
    path = write_training_pack(dataset, tmp_path, 64, CLAVICLE_VIEW, case_ids=cases)
    packed = TrainingPack(path)
    assert packed.case_ids == sorted(cases) == packed.cases_with_masks()
    subset = cases[1:4]
    direct = pack(dataset, subset, 64, view=CLAVICLE_VIEW, cache=False)
    carried = pack(packed, subset, 64, view=CLAVICLE_VIEW)
    assert carried["images"].dtype == direct["images"].dtype == np.float16
    # 8 bits stored: within half a step (1/510) plus float16's rounding near 1.
    assert np.abs(carried["images"].astype(np.float32) - direct["images"].astype(np.float32)).max() < 1 / 400
    assert np.array_equal(carried["masks"], direct["masks"]) and carried["masks"].shape == (3, 5, 64, 64)
    assert carried["masks"][:, REGION_KEYS.index("left_clavicle")].any()
    assert list(carried["case_ids"]) == [c.upper() for c in subset]


def test_a_pack_says_what_it_lacks(dataset, small_data, tmp_path):
    _, cases = small_data
    packed = TrainingPack(write_training_pack(dataset, tmp_path, 64, CLAVICLE_VIEW, case_ids=cases[:2]))
    with pytest.raises(ValueError, match="no pack at 96 px.*it has: 64 px rows 0%–50%"):
        pack(packed, cases[:2], 96, view=CLAVICLE_VIEW)
    with pytest.raises(ValueError, match="whole image"):
        pack(packed, cases[:2], 64)
    with pytest.raises(ValueError, match="not in the pack"):
        pack(packed, cases[2:4], 64, view=CLAVICLE_VIEW)
    with pytest.raises(FileNotFoundError, match="no training packs"):
        TrainingPack(tmp_path / "empty")


def test_pack_tool_then_training_from_the_pack_alone(small_data, tmp_path, monkeypatch, capsys):
    """The GPU recipe end to end on CPU: pack here, train from the pack (no data folder)."""
    from cxr_dash.manifest import read_manifest
    from cxr_dash.pack import main as pack_main
    from cxr_dash.train import main as train_main

    root, cases = small_data
    monkeypatch.delenv("CXR_DATA_DIR", raising=False)
    assert pack_main(["--region", "left_clavicle", "--input-size", "64", "--data", str(root),
                      "--out", str(tmp_path / "packs")]) == 0
    (written,) = (tmp_path / "packs").iterdir()
    assert written.name == "scr_64_fov-0-0.5-0.4-1.cxrpack.npz" and "6 cases at 64 px" in capsys.readouterr().out
    out = tmp_path / "set"
    assert train_main(["--region", "left_clavicle", "--data", str(tmp_path / "packs"), "--out", str(out),
                       "--input-size", "64", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
                       "--data-workers", "2", "--quiet"]) == 0
    training = read_manifest(out)["regions"]["left_clavicle"]["training"]
    assert training["cases"] == sorted(c for c in cases if int(c[-3:]) % 2 == 1)
    assert training["validation_cases"] == sorted(c for c in cases if int(c[-3:]) % 2 == 0)
    # A size the pack does not hold is refused with the sizes it does.
    with pytest.raises(ValueError, match="no pack at 96 px"):
        train_main(["--region", "left_clavicle", "--data", str(tmp_path / "packs"), "--out", str(out),
                    "--input-size", "96", "--epochs", "1", "--steps-per-epoch", "1", "--quiet"])


def test_time_limit_stops_after_the_epoch_that_reaches_it(dataset, tmp_path, monkeypatch):
    import cxr_dash.train as train
    from cxr_dash.data import model_inputs

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    arrays = pack(dataset, dataset.folds()["odd"][:4], 32)
    images, masks = arrays["images"], arrays["masks"][:, 0]
    common = dict(region="heart", input_size=32, epochs=3, optimizer="adam", learning_rate=1e-3,
                  batch_size=2, augment_copies=1, steps_per_epoch=1, data_workers=2)
    cfg = train.TrainConfig(**common, time_limit_s=1e-3).resolved()
    _, history = train.fit_with_validation(cfg, images, masks, model_inputs(images), masks.astype(bool))
    assert len(history) == 1 and history[0]["stopped_by_time_limit"]
    cfg = train.TrainConfig(**common, time_limit_s=3600).resolved()
    _, history = train.fit_with_validation(cfg, images, masks, model_inputs(images), masks.astype(bool))
    assert len(history) == 3 and not any("stopped_by_time_limit" in row for row in history)
    json.dumps(history)     # the history is written as JSON: the flag must serialise
