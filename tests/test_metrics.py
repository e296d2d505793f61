import math

import numpy as np
import pytest

from cxr_dash.metrics import (all_metrics, boundary, contour_distances, dice, jaccard,
                              largest_component, summarise)


def square(size=40, top=10, left=10, side=10):
    m = np.zeros((size, size), bool)
    m[top:top + side, left:left + side] = True
    return m


def test_overlap_of_half_shifted_squares_is_exact():
    a, b = square(left=10), square(left=15)      # 10x10 squares overlapping in 10x5
    assert jaccard(a, b) == pytest.approx(50 / 150)
    assert dice(a, b) == pytest.approx(100 / 200)


def test_identical_and_empty_masks():
    a = square()
    assert jaccard(a, a) == dice(a, a) == 1.0
    empty = np.zeros_like(a)
    assert jaccard(empty, empty) == 1.0 and dice(a, empty) == 0.0
    assert all(math.isnan(v) for v in contour_distances(a, empty))


def test_contour_distance_of_a_one_pixel_shift_in_mm():
    a, b = square(left=10), square(left=11)
    mcd, hd95 = contour_distances(a, b, spacing=0.35)
    # Each outline has 36 pixels: top and bottom rows (10 each) lie on the
    # other's rows except one end pixel (1 px away); the 8 + 8 inner pixels of
    # the left and right columns are 1 px from the other's columns. So 18 of
    # 36 distances are 1 px and 18 are 0, both ways: mean 0.5 px.
    assert mcd == pytest.approx(0.5 * 0.35)
    assert hd95 == pytest.approx(0.35)


def test_boundary_of_a_square_is_its_outline():
    b = boundary(square(side=5))
    assert b.sum() == 16  # 5x5 square: 25 - 9 interior


def test_all_metrics_keys_and_summary():
    m = all_metrics(square(), square(left=12), spacing=0.35)
    assert set(m) == {"jaccard", "dice", "mean_contour_distance_mm", "hd95_mm", "missed_fraction", "extra_fraction"}
    assert m["missed_fraction"] == m["extra_fraction"] == pytest.approx(0.2)     # 2 of 10 columns each way
    s = summarise([0.5, 0.7, math.nan])
    assert s["mean"] == pytest.approx(0.6) and s["n"] == 2 and s["n_undefined"] == 1


def test_largest_component_drops_islands():
    m = square(side=10)
    m[30:32, 30:32] = True
    kept = largest_component(m)
    assert kept.sum() == 100 and not kept[30, 30]
