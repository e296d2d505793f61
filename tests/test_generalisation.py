"""The recipe for other hospitals: one intensity step in training and inference,
augmentations that keep image and mask aligned and never swap the sides, and
the external evaluation that measures them."""
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_dash.augment import STRONG, AugmentConfig, affine_matrix, augment_pair, geometric
from cxr_dash.data import model_inputs
from cxr_dash.preprocess import (INTENSITY_METHODS, finish_intensity, model_space_image,
                                 prepare_input)

EXTERNAL_DIR = Path(os.environ.get("CXR_EXTERNAL_DIR", "../shared/data/shenzhen"))


def _radiograph(seed=0, shape=(300, 260)):
    rng = np.random.default_rng(seed)
    image = (rng.random(shape) * 1200 + 1500).astype(np.uint16)
    image[60:240, 30:110] -= 900           # two dark "lungs"
    image[60:240, 150:230] -= 700
    return image


@pytest.mark.parametrize("method", INTENSITY_METHODS)
def test_training_inputs_are_the_inference_inputs(method):
    """A packed case finished as training finishes it (model_inputs, or a batch with an
    identity augmentation) equals prepare_input's model input, for every method."""
    from cxr_dash.train import TrainConfig, augmented_batches

    image = _radiograph()
    packed = model_space_image(image, 64)[None]
    expected = prepare_input(image, 64, None, method)
    assert np.array_equal(model_inputs(packed, method)[0], expected)
    identity = AugmentConfig(rotation_deg=0, shift_fraction=0, scale_range=(1, 1), brightness=0,
                             contrast=(1, 1), gamma=(1, 1))
    cfg = TrainConfig("right_lung", batch_size=1, augment_copies=1, augment=identity,
                      intensity=method)
    x, _ = augmented_batches(packed, np.zeros((1, 64, 64), np.uint8), cfg)[0]
    assert np.allclose(x[0], expected, atol=1e-6)


def test_clahe_changes_the_input_and_the_default_does_not():
    image = _radiograph(1)
    plain = prepare_input(image, 64)
    assert np.array_equal(plain, prepare_input(image, 64, None, "percentile"))
    clahe = prepare_input(image, 64, None, "percentile+clahe")
    assert clahe.dtype == np.float32 and 0 <= clahe.min() and clahe.max() <= 1
    assert np.abs(clahe - plain).mean() > 0.02
    with pytest.raises(ValueError, match="unknown intensity"):
        finish_intensity(plain[..., 0], "histogram-magic")


def test_the_segmenter_prepares_what_its_manifest_records(tmp_path, tiny_model_set):
    from cxr_dash.inference import Segmenter

    folder = tmp_path / "set"
    shutil.copytree(tiny_model_set, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["regions"]["right_lung"]["preprocessing"] = {"intensity": "percentile+clahe"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    seg = Segmenter(folder, regions=("left_lung", "right_lung"))
    image = _radiograph(2)
    assert np.array_equal(seg.prepare(image, "right_lung"), prepare_input(image, 64, None, "percentile+clahe"))
    assert np.array_equal(seg.prepare(image, "left_lung"), prepare_input(image, 64))
    manifest["regions"]["right_lung"]["preprocessing"] = {"intensity": "magic"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    from cxr_dash.errors import ModelSetError
    with pytest.raises(ModelSetError, match="preprocessing"):
        Segmenter(folder, regions=("right_lung",))


def _shapes(size=96):
    """An image whose bright shapes are exactly the mask, lopsided to the image's left."""
    mask = np.zeros((size, size), np.uint8)
    mask[20:80, 12:40] = 1                               # a "right lung": image left
    cv2.circle(mask, (30, 70), 6, 0, -1)                 # a notch to catch a rotation
    return mask.astype(np.float32) * 0.8 + 0.1, mask


def test_every_geometric_draw_keeps_image_and_mask_aligned():
    image, mask = _shapes()
    black_margins = replace(STRONG, margin_grey_probability=0.0)   # so "outside" is dark
    for seed in range(40):
        img, msk = geometric(image, mask, np.random.default_rng(seed), black_margins)
        bright = img > 0.5
        inside = bright[msk.astype(bool)].mean() if msk.any() else 1.0
        outside = bright[~msk.astype(bool) & (img > 0)].mean()
        # Nearest-neighbour mask against a bilinear image: only the edge pixels may differ.
        assert inside > 0.9 and outside < 0.1, seed


def test_strong_augmentation_never_swaps_the_sides():
    image, mask = _shapes()
    rng = np.random.default_rng(0)
    for _ in range(60):
        m = affine_matrix(96, rng.uniform(-15, 15), rng.uniform(0.7, 1.3), rng.uniform(-0.15, 0.15),
                          rng.uniform(-0.15, 0.15), float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))))
        assert np.linalg.det(m[:, :2]) > 0                   # never a reflection
    for seed in range(60):
        img, msk = augment_pair(image, mask, np.random.default_rng(seed), STRONG)
        assert msk.any()
        cols = np.nonzero(msk)[1]
        assert cols.mean() < 96 / 2, seed                    # still on the image's left
        assert img.dtype == np.float32 and img.shape == (96, 96) and 0 <= img.min() <= img.max() <= 1


def test_photometric_degradations_do_not_move_the_mask():
    image, mask = _shapes()
    still = AugmentConfig(rotation_deg=0, shift_fraction=0, scale_range=(1, 1),
                          blur_probability=1, sharpen_probability=1, noise_probability=1,
                          jpeg_probability=1, text_probability=1, opacity_probability=1)
    for seed in range(10):
        img, msk = augment_pair(image, mask, np.random.default_rng(seed), still)
        assert np.array_equal(msk, mask)
        assert np.abs(img - image).mean() > 0.005            # something did change


def test_opacities_brighten_the_region_and_leave_the_mask():
    from cxr_dash.augment import STRONG_OPACITIES, add_opacities

    image, mask = _shapes()
    image = np.where(mask > 0, 0.3, 0.6).astype(np.float32)      # a dark lung, grey around
    brighter_inside = 0
    for seed in range(20):
        out = add_opacities(image, mask, np.random.default_rng(seed),
                            replace(STRONG_OPACITIES, opacity_probability=1.0))
        assert out.shape == image.shape and (out >= image - 1e-6).all() and out.max() <= 1
        gain = out - image
        brighter_inside += gain[mask > 0].mean() > gain[mask == 0].mean()
    assert brighter_inside >= 14          # centred on the region three times in four


def test_the_standard_recipe_draws_what_it_drew_before_the_new_options():
    image, mask = _shapes()
    a = augment_pair(image, mask, np.random.default_rng(3))
    b = augment_pair(image, mask, np.random.default_rng(3), AugmentConfig(aspect_range=(1.0, 1.0)))
    assert np.array_equal(a[0], b[0])
    # The record round-trips (a manifest's lists back to tuples).
    assert AugmentConfig.from_dict(json.loads(json.dumps(STRONG.as_dict()))) == STRONG


def test_reference_lungs_split_by_side_and_the_union_is_scored():
    from cxr_dash.external import score_case, split_lungs

    truth = np.zeros((100, 100), bool)
    truth[20:80, 10:40] = True                  # image left: the patient's right lung
    truth[20:80, 60:90] = True
    sides = split_lungs(truth)
    assert sides["right_lung"][50, 20] and sides["left_lung"][50, 70]
    assert split_lungs(truth[:, :50]) is None   # one lung only: no split
    probs = {"right_lung": sides["right_lung"].astype(np.float32),
             "left_lung": np.zeros((100, 100), np.float32)}
    row = score_case(probs, truth)
    assert row["jaccard"] == pytest.approx(0.5) and row["right_lung_jaccard"] == 1.0
    assert row["left_lung_jaccard"] == 0.0 and row["area_ratio"] == pytest.approx(0.5)


def test_external_folder_cases_and_groups(tmp_path):
    from cxr_dash.external import find_cases, group_label

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("A_0", "B_1", "C"):
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), np.zeros((8, 8), np.uint8))
    for name in ("A_0", "B_1"):
        cv2.imwrite(str(tmp_path / "masks" / f"{name}.png"), np.zeros((8, 8), np.uint8))
    cases = find_cases(tmp_path)
    assert [(c.name, c.group) for c in cases] == [("A_0", "0"), ("B_1", "1")]
    assert group_label("1") == "abnormal (_1)"
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        find_cases(tmp_path / "images")


@pytest.mark.skipif(not (EXTERNAL_DIR / "images").is_dir(), reason="no external lung set")
def test_evaluate_external_scores_real_cases_by_group(tmp_path):
    from cxr_dash.evaluate import main

    sample = tmp_path / "sample"
    for sub in ("images", "masks"):
        (sample / sub).mkdir(parents=True)
    names = sorted(p.name for p in (EXTERNAL_DIR / "images").glob("*.png"))
    for name in [n for n in names if n.endswith("_0.png")][:2] + [n for n in names if n.endswith("_1.png")][:2]:
        for sub in ("images", "masks"):
            shutil.copy(EXTERNAL_DIR / sub / name, sample / sub / name)
    assert main(["--external", str(sample), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "external.json").read_text())
    assert set(result["summary"]) == {"all", "0", "1"}
    assert result["summary"]["all"]["jaccard"]["n"] == 4
    # The shipped lungs do segment these radiographs: far better than nothing.
    assert result["summary"]["0"]["jaccard"]["mean"] > 0.6
