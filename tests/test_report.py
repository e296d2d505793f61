"""What the Downloads view hands out: masks, probabilities and region metrics."""
import csv
import io
import json
import zipfile

import numpy as np
from PIL import Image

from cxr_dash.report import masks_npz, masks_zip, region_measurements, rows_csv, rows_json


def _example():
    heart = np.zeros((64, 64), bool)
    heart[20:40, 20:40] = True
    masks = {"heart": heart, "left_lung": np.zeros((64, 64), bool)}     # nothing predicted
    probs = {"heart": heart * 0.9 + 0.05, "left_lung": np.full((64, 64), 0.1)}
    truth = {"heart": heart, "left_lung": heart}
    return masks, probs, region_measurements(probs, masks, 0.35, truth)


def test_metrics_json_is_strict_json_with_null_where_a_metric_is_undefined():
    masks, probs, rows = _example()
    assert rows[0]["area_px"] == 400 and rows[0]["area_cm2"] == round(400 * 0.35 ** 2 / 100, 2)
    assert rows[0]["jaccard"] == 1.0 and rows[0]["mean_confidence"] == 0.95
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    parsed = json.loads(rows_json(rows, image="x.png", threshold=0.5), parse_constant=refuse)
    lung = parsed["regions"][1]
    assert lung["jaccard"] == 0.0 and lung["mean_contour_distance_mm"] is None
    assert lung["mean_confidence"] is None and parsed["image"] == "x.png"


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
        assert sorted(z.namelist()) == ["case_heart.png", "case_left_lung.png"]
        png = np.asarray(Image.open(io.BytesIO(z.read("case_heart.png"))))
        assert np.array_equal(png > 0, masks["heart"])

