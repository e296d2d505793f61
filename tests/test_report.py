"""What the Downloads view hands out: masks, probabilities and region metrics."""
import csv
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from cxr_dash.report import masks_npz, masks_zip, region_measurements, rows_csv, rows_json


def _example():
    heart = np.zeros((64, 64), bool)
    heart[20:40, 20:40] = True
    masks = {"heart": heart, "left_lung": np.zeros((64, 64), bool)}     # nothing predicted
    probs = {"heart": heart * 0.9 + 0.05, "left_lung": np.full((64, 64), 0.1)}
    truth = {"heart": heart, "left_lung": heart}
    return masks, probs, region_measurements(probs, masks, 0.35, truth,
                                             {"heart": 0.93, "left_lung": 0.41}, 0.85)


def test_metrics_json_is_strict_json_with_null_where_a_metric_is_undefined():
    masks, probs, rows = _example()
    assert rows[0]["area_px"] == 400 and rows[0]["area_cm2"] == round(400 * 0.35 ** 2 / 100, 2)
    assert rows[0]["jaccard"] == 1.0 and rows[0]["estimated_jaccard"] == 0.93
    assert rows[0]["quality_warning"] is False and rows[1]["quality_warning"] is True
    assert "mean_confidence" not in rows[0]          # not a trust signal
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    parsed = json.loads(rows_json(rows, image="x.png", threshold=0.5), parse_constant=refuse)
    lung = parsed["regions"][1]
    assert lung["jaccard"] == 0.0 and lung["mean_contour_distance_mm"] is None
    assert lung["estimated_jaccard"] == 0.41 and parsed["image"] == "x.png"


def test_csv_has_one_row_per_region_and_every_column():
    _, _, rows = _example()
    table = list(csv.DictReader(io.StringIO(rows_csv(rows).decode())))
    assert [r["region"] for r in table] == ["heart", "left_lung"]
    assert {"area_px", "jaccard", "hd95_mm"} <= set(table[0])


def test_mask_archives_round_trip():
    masks, probs, _ = _example()
    with np.load(io.BytesIO(masks_npz(masks, probs))) as z:
        assert np.array_equal(z["mask_heart"], masks["heart"])
        assert z["prob_heart"].dtype == np.uint8 and z["prob_heart"][30, 30] == round(0.95 * 255)
    with zipfile.ZipFile(io.BytesIO(masks_zip(masks, "case"))) as z:
        assert sorted(z.namelist()) == ["case_heart_mask.png", "case_left_lung_mask.png"]
        png = np.asarray(Image.open(io.BytesIO(z.read("case_heart_mask.png"))))
        assert np.array_equal(png > 0, masks["heart"])



def test_missed_and_extra_area_are_told_apart():
    from cxr_dash.metrics import error_fractions, jaccard

    truth = np.zeros((64, 64), bool)
    truth[10:30, 10:30] = True                       # 400 px
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:45] = True                        # 200 px shared, 200 missed, 300 extra
    short = truth.copy()
    short[:, 25:] = False                            # inside the truth: 100 px missed, none extra
    masks = {"heart": mask, "left_lung": short, "right_lung": np.zeros((64, 64), bool)}
    rows = {r["region"]: r for r in region_measurements(
        {k: m * 0.9 for k, m in masks.items()}, masks, 0.35, {k: truth for k in masks})}
    assert (rows["heart"]["missed_fraction"], rows["heart"]["extra_fraction"]) == (0.5, 0.75)
    assert (rows["left_lung"]["missed_fraction"], rows["left_lung"]["extra_fraction"]) == (0.25, 0.0)
    assert (rows["right_lung"]["missed_fraction"], rows["right_lung"]["extra_fraction"]) == (1.0, 0.0)
    missed, extra = error_fractions(mask, truth)
    assert jaccard(mask, truth) == pytest.approx((1 - missed) / (1 + extra))
    # No ground truth to be a fraction of: undefined, and null in the JSON download.
    assert all(np.isnan(error_fractions(mask, np.zeros_like(truth))))
    parsed = json.loads(rows_json(region_measurements({"heart": mask * 0.9}, {"heart": mask}, None,
                                                      {"heart": np.zeros_like(truth)})))
    assert parsed["regions"][0]["missed_fraction"] is None
    # Without a pixel spacing contour distances are in pixels, and their names say so.
    assert "mean_contour_distance_px" in parsed["regions"][0] and not any(
        k.endswith("_mm") for k in parsed["regions"][0])
