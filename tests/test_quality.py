"""The frontal-radiograph plausibility checks on real ground truth and its distortions."""
import numpy as np

from cxr_dash.quality import plausibility_warnings


def test_real_case_with_true_masks_raises_no_warning(dataset):
    case = dataset.load_case("JPCLN002")
    assert plausibility_warnings(case.image, case.masks) == []


def test_mirrored_image_is_flagged(dataset):
    case = dataset.load_case("JPCLN002")
    mirrored = {r: m[:, ::-1] for r, m in case.masks.items()}
    warnings = plausibility_warnings(case.image[:, ::-1], mirrored)
    assert any("expected sides" in w for w in warnings)


def test_inverted_image_is_flagged(dataset):
    case = dataset.load_case("JPCLN002")
    warnings = plausibility_warnings(255 - case.image, case.masks)
    assert any("inverted" in w for w in warnings)


def test_implausible_areas_are_flagged(dataset):
    case = dataset.load_case("JPCLN002")
    masks = dict(case.masks)
    masks["left_lung"] = np.ones_like(masks["left_lung"])
    assert any("left lung covers 100%" in w for w in plausibility_warnings(case.image, masks))
