"""Region statistics and the cardiothoracic ratio on masks whose answer is known."""
import numpy as np
import pytest

from cxr_dash.measure import (Extent, cardiothoracic_ratio, mask_statistics, region_at,
                              region_statistics, widest_extent)


def box(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_statistics_of_a_rectangle_in_pixels_and_millimetres():
    stats = region_statistics({"heart": box((100, 200), 10, 30, 40, 90)}, spacing_mm=0.5)["heart"]
    assert stats["area_px"] == 20 * 50 and stats["area_cm2"] == pytest.approx(1000 * 0.25 / 100)
    assert (stats["centroid_x"], stats["centroid_y"]) == (64.5, 19.5)
    assert (stats["bbox_x0"], stats["bbox_y0"], stats["bbox_x1"], stats["bbox_y1"]) == (40, 10, 89, 29)
    assert (stats["bbox_width_px"], stats["bbox_height_px"]) == (50, 20)
    assert (stats["widest_row"], stats["widest_x0"], stats["widest_x1"]) == (10, 40, 89)   # topmost tie
    assert stats["widest_px"] == 50 and stats["widest_mm"] == 25.0


def test_without_a_spacing_lengths_stay_in_pixels_and_an_empty_mask_has_none():
    stats = mask_statistics(box((50, 50), 5, 10, 5, 10))
    assert stats["area_cm2"] is None and stats["widest_mm"] is None and stats["widest_px"] == 5
    empty = mask_statistics(np.zeros((50, 50), bool), 0.35)
    assert empty["area_px"] == 0 and empty["centroid_x"] is None and empty["widest_px"] is None


def test_the_widest_extent_is_measured_along_one_row():
    m = box((60, 60), 10, 20, 5, 15) | box((60, 60), 30, 40, 35, 55)   # two pieces, no row shared
    assert widest_extent(m) == Extent(30, 35, 54)                      # not 5..54 across rows
    wedge = np.tril(np.ones((40, 40), bool))
    assert widest_extent(wedge) == Extent(39, 0, 39) and widest_extent(~wedge[:0]) is None


def test_cardiothoracic_ratio_is_heart_width_over_both_lungs_together():
    shape = (200, 200)
    masks = {"right_lung": box(shape, 30, 150, 20, 90), "left_lung": box(shape, 40, 140, 110, 180),
             "heart": box(shape, 100, 160, 70, 130)}
    ctr = cardiothoracic_ratio(masks)
    assert ctr.heart == Extent(100, 70, 129) and ctr.thorax == Extent(40, 20, 179)
    assert ctr.ratio == pytest.approx(60 / 160)
    d = ctr.as_dict(spacing_mm=0.5)
    assert d["ratio"] == 0.375 and d["heart"]["width_mm"] == 30.0 and d["thorax"]["width_px"] == 160
    # The lungs' rows differ: the thorax is the widest row where both, together, reach.
    masks["left_lung"] = box(shape, 160, 190, 110, 180)
    assert cardiothoracic_ratio(masks).thorax.width_px == 70            # no row holds both lungs
    assert cardiothoracic_ratio({**masks, "left_lung": np.zeros(shape, bool)}) is None
    assert cardiothoracic_ratio({"heart": masks["heart"], "right_lung": masks["right_lung"]}) is None


def test_the_region_under_a_point_is_the_surest_of_those_that_hold_it():
    shape = (50, 50)
    masks = {"left_lung": box(shape, 10, 40, 10, 40), "left_clavicle": box(shape, 5, 15, 5, 45)}
    probs = {"left_lung": np.full(shape, 0.6, np.float32), "left_clavicle": np.full(shape, 0.9, np.float32)}
    assert region_at(masks, probs, 20.7, 30.2) == "left_lung"
    assert region_at(masks, probs, 20, 12) == "left_clavicle"                 # both: the surer one
    assert region_at(masks, probs, 2, 2) is None and region_at(masks, probs, 80, 2) is None
