"""The frontal-radiograph plausibility checks on real ground truth and its distortions."""
import numpy as np
import pytest

from cxr_dash.quality import (clipped_dark_share, exposure_warnings, plausibility_warnings,
                              window_clips_dark_end)


# JPCLN128: a slim patient on a dark background, darker on average than her lungs.
@pytest.mark.parametrize("case_id", ["JPCLN002", "JPCLN128"])
def test_real_case_with_true_masks_raises_no_warning(dataset, case_id):
    case = dataset.load_case(case_id)
    assert plausibility_warnings(case.image, case.masks) == []


def test_mirrored_image_is_flagged(dataset):
    case = dataset.load_case("JPCLN002")
    mirrored = {r: m[:, ::-1] for r, m in case.masks.items()}
    warnings = plausibility_warnings(case.image[:, ::-1], mirrored)
    assert any("expected sides" in w for w in warnings)


def test_mirrored_image_is_flagged_when_the_models_follow_the_anatomy(dataset):
    # What the shipped models really do on a mirrored radiograph: each lung model draws its
    # lung on its usual side, around the mirrored other lung, so the side check passes.
    case = dataset.load_case("JPCLN002")
    mirrored = {r: m[:, ::-1] for r, m in case.masks.items()}
    anatomical = dict(mirrored, right_lung=mirrored["left_lung"], left_lung=mirrored["right_lung"])
    warnings = plausibility_warnings(case.image[:, ::-1], anatomical)
    assert not any("expected sides" in w for w in warnings)
    assert any("mirrored" in w for w in warnings)
    assert not any("mirrored" in w for w in plausibility_warnings(case.image, case.masks))


def test_mirror_check_on_the_true_masks_of_many_cases(dataset):
    # Every 8th development case (25): its true masks pass, and mirrored the way
    # the models draw them (each lung on its usual side) they are flagged.
    flagged = 0
    cases = dataset.cases_with_masks()[::8]
    for case_id in cases:
        case = dataset.load_case(case_id, regions=("heart", "left_lung", "right_lung"))
        assert not any("mirrored" in w for w in plausibility_warnings(case.image, case.masks)), case_id
        mirrored = {r: m[:, ::-1] for r, m in case.masks.items()}
        anatomical = dict(mirrored, right_lung=mirrored["left_lung"], left_lung=mirrored["right_lung"])
        flagged += any("mirrored" in w for w in plausibility_warnings(case.image[:, ::-1], anatomical))
    assert flagged == len(cases), f"{flagged} of {len(cases)} mirrored cases flagged"


def test_inverted_image_is_flagged(dataset):
    case = dataset.load_case("JPCLN002")
    warnings = plausibility_warnings(255 - case.image, case.masks)
    assert any("inverted" in w for w in warnings)


def test_implausible_areas_are_flagged(dataset):
    case = dataset.load_case("JPCLN002")
    masks = dict(case.masks)
    masks["left_lung"] = np.ones_like(masks["left_lung"])
    assert any("left lung covers 100%" in w for w in plausibility_warnings(case.image, masks))


def test_overlapping_lungs_are_flagged_as_a_possible_lateral_view(dataset):
    case = dataset.load_case("JPCLN002")
    masks = dict(case.masks)
    masks["left_lung"] = masks["left_lung"] | masks["right_lung"]   # both claim the same field
    assert any("lateral view" in w and "overlap" in w for w in plausibility_warnings(case.image, masks))
    assert not any("overlap" in w for w in plausibility_warnings(case.image, case.masks))


def clip_tails(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """An export with a narrow window: the band between two percentiles stretched to 0-255."""
    lo, hi = np.percentile(image, [low, high])
    return np.clip(np.round((image.astype(np.float32) - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def test_a_clipped_dark_tail_is_flagged_and_the_cases_as_stored_are_not(dataset):
    # As stored, black lies only outside the body: all 200 development cases pass.
    for case_id in dataset.cases_with_masks():
        assert exposure_warnings(dataset.load_image(case_id).pixels) == [], case_id
    # JPCLN074 with its darkest 5% clipped to black: 6.9% of the central box turns flat
    # black, and the shipped right lung scores 0.25 on it instead of 0.92.
    image = dataset.load_image("JPCLN074").pixels
    clipped = clip_tails(image, 5, 100)
    assert clipped_dark_share(clipped) > 0.05
    (warning,) = exposure_warnings(clipped)
    assert "clipped" in warning and "darkest" in warning
    # The bright tail clipped instead costs the models nothing measurable: no warning.
    assert exposure_warnings(clip_tails(image, 0, 95)) == []
    # The same pixels at 16 bits are judged alike.
    assert len(exposure_warnings(clipped.astype(np.uint16) * 257)) == 1


def test_a_window_clips_the_dark_end_only_where_the_full_range_does_not(dataset):
    image = dataset.load_image("JPCLN074").pixels
    clipped = clip_tails(image, 5, 100)
    assert window_clips_dark_end(clipped, image)
    assert not window_clips_dark_end(image, image)
    assert not window_clips_dark_end(clipped, clipped)     # the full range is clipped too
