import numpy as np
import pytest
from PIL import Image

from cxr_dash.data import (SCRDataset, case_fold, describe_validation, pack, split_folds,
                           training_split)
from cxr_dash.regions import REGION_KEYS


def test_parity_rule():
    assert case_fold("JPCLN001") == "odd" and case_fold("JPCNN002") == "even"
    folds = split_folds(["JPCLN003", "JPCLN004", "JPCNN001", "JPCNN010"])
    assert folds == {"odd": ["JPCLN003", "JPCNN001"], "even": ["JPCLN004", "JPCNN010"]}
    with pytest.raises(ValueError):
        case_fold("IMG_0001")


def test_real_split_follows_parity_and_covers_every_case(dataset):
    folds = dataset.folds()
    cases = dataset.cases_with_masks()
    assert len(cases) == 200 and sorted(folds["odd"] + folds["even"]) == cases
    assert all(int(c[-3:]) % 2 == 1 for c in folds["odd"])
    assert all(int(c[-3:]) % 2 == 0 for c in folds["even"])


def test_training_splits_never_validate_on_a_training_case(dataset):
    cases = dataset.cases_with_masks()
    for split in ("odd", "even", "odd+half-even"):
        train, held_out = training_split(cases, split)
        assert not set(train) & set(held_out) and sorted(train + held_out) == cases
    train, held_out = training_split(cases, "odd+half-even")
    assert (len(train), len(held_out)) == (152, 48)
    assert set(split_folds(cases)["odd"]) < set(train)
    assert all(case_fold(c) == "even" for c in held_out)
    # The study's showcase and monitor cases stay held out.
    assert {"JPCLN034", "JPCLN104"} <= set(held_out)
    every, validated = training_split(cases, "all")
    assert every == validated == cases
    with pytest.raises(ValueError, match="unknown training split"):
        training_split(cases, "odd+even")
    # The playback caption must not count a run's own training cases as held out.
    assert describe_validation(every, validated) == \
        "validated on 200 of its own training cases: nothing held out"
    assert describe_validation(train, held_out) == "48 held-out validation cases"
    assert describe_validation(train, held_out + train[:2]) == \
        "48 held-out validation cases and 2 of its training cases"
    assert describe_validation(train, []) == "no validation cases"


def test_real_case_orientation_and_masks(dataset):
    case = dataset.load_case("JPCLN002")
    assert case.image.shape == (1024, 1024)
    assert set(case.masks) == set(REGION_KEYS)
    # Patient's left lung is on the image's right-hand side.
    cols = np.nonzero(case.masks["left_lung"])[1]
    assert cols.mean() > 512 > np.nonzero(case.masks["right_lung"])[1].mean()
    # Display orientation: lung fields darker than the mediastinum/heart.
    assert case.image[case.masks["right_lung"]].mean() < case.image[case.masks["heart"]].mean()


def test_pack_shapes(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    arrays = pack(dataset, ["JPCLN001", "JPCLN002"], 64)
    assert arrays["images"].shape == (2, 64, 64) and arrays["masks"].shape == (2, 5, 64, 64)
    assert 0 <= arrays["images"].min() and arrays["images"].max() <= 1
    assert list(tmp_path.glob("pack_64_*.npz"))  # cached outside the project


def test_original_distribution_layout(tmp_path):
    """JSRT raw .IMG files and SCR mask folders named with spaces."""
    side = 64
    rng = np.random.default_rng(0)
    (tmp_path / "All247images").mkdir()
    for case in ("JPCLN001", "JPCLN002"):
        raw = (rng.random((side, side)) * 4095).astype(">u2")
        (tmp_path / "All247images" / f"{case}.IMG").write_bytes(raw.tobytes())
        for region in REGION_KEYS:
            folder = tmp_path / "scratch" / "masks" / region.replace("_", " ")
            folder.mkdir(parents=True, exist_ok=True)
            m = np.zeros((32, 32), np.uint8)
            m[4:12, 4:12] = 255
            Image.fromarray(m).save(folder / f"{case}.gif")
    ds = SCRDataset(tmp_path)
    assert ds.cases_with_masks() == ["JPCLN001", "JPCLN002"]
    case = ds.load_case("JPCLN001")
    assert case.image.shape == (side, side) and case.masks["left_lung"].sum() == 64


def test_original_layout_with_masks_split_over_fold_folders(tmp_path):
    """SCR's fold1/fold2 mask folders, one spelt with spaces and one with underscores:
    every case keeps its masks, and a case in two folders keeps the first (sorted)."""
    side = 64
    rng = np.random.default_rng(0)
    (tmp_path / "All247images").mkdir()
    cases = ("JPCLN001", "JPCLN002", "JPCLN003", "JPCNN004")
    for i, case in enumerate(cases):
        raw = (rng.random((side, side)) * 4095).astype(">u2")
        (tmp_path / "All247images" / f"{case}.IMG").write_bytes(raw.tobytes())
        fold, spell = ("fold1", " ") if i % 2 == 0 else ("fold2", "_")
        for region in REGION_KEYS:
            folder = tmp_path / "scratch" / fold / "masks" / region.replace("_", spell)
            folder.mkdir(parents=True, exist_ok=True)
            m = np.zeros((32, 32), np.uint8)
            m[4:12, 4:4 + 4 * (i + 1)] = 255          # a different area per case
            Image.fromarray(m).save(folder / f"{case}.gif")
    # JPCLN002's heart once more, different, in fold1: the first folder wins.
    duplicate = np.zeros((32, 32), np.uint8)
    duplicate[0:2, 0:2] = 255
    Image.fromarray(duplicate).save(tmp_path / "scratch/fold1/masks/heart/JPCLN002.gif")
    ds = SCRDataset(tmp_path)
    assert [d.parent.parent.name for d in ds.mask_dirs["left_clavicle"]] == ["fold1", "fold2"]
    assert ds.cases_with_masks() == sorted(cases)
    for i, case in enumerate(cases):
        assert ds.load_mask(case, "left_clavicle").sum() == 8 * 4 * (i + 1)
    assert ds.mask_path("jpcln002", "heart").parts[-4] == "fold1"
    assert ds.load_mask("JPCLN002", "heart").sum() == 4
    assert ds.load_mask("JPCLN002", "right_lung").sum() == 8 * 8
