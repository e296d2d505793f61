"""The app shows each mask's estimated Jaccard and warns where it is low."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cxr_dash.quality_estimate import FEATURES, QualityModel

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _constant_estimate(value: float) -> dict:
    """A fitted-looking regression that estimates ``value`` whatever the features."""
    logit = math.log(value / (1 - value))
    return {"mean": [0.0] * len(FEATURES), "scale": [1.0] * len(FEATURES),
            "coef": [0.0] * len(FEATURES), "bias": logit}


@pytest.fixture
def app_with_estimates(tiny_model_set, tmp_path, monkeypatch):
    """The tiny set with a quality estimate: the lungs 0.55 (under the 0.85 threshold),
    the heart and clavicles 0.93."""
    folder = tmp_path / "set"
    shutil.copytree(tiny_model_set, folder)
    stats = {r: {"area": 0.1, "centroid": [0.5, 0.5], "centroid_sd": [0.1, 0.1], "log_pair_ratio": 0.0}
             for r in ("heart", "left_clavicle", "left_lung", "right_clavicle", "right_lung")}
    regions = {r: _constant_estimate(0.55 if "lung" in r else 0.93) for r in stats}
    QualityModel(regions, stats, 0.85, "test").save(folder)
    monkeypatch.setenv("CXR_MODEL_DIR", str(folder))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    return at


def test_overview_and_compare_show_the_estimate_and_warn_below_the_threshold(app_with_estimates,
                                                                              data_dir):
    at = app_with_estimates
    at.sidebar.file_uploader(key="upload").set_value(
        ("JPCLN034.png", (data_dir / "images" / "JPCLN034.png").read_bytes(), "image/png"))
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert "estimated_jaccard" in table.columns and "mean_confidence" not in table.columns
    by_name = dict(zip(table["name"], table["estimated_jaccard"]))
    assert by_name["Left lung"] == pytest.approx(0.55) and by_name["Heart"] == pytest.approx(0.93)
    (warning,) = [w.value for w in at.warning if "Likely poor masks" in w.value]
    assert "left lung (0.55)" in warning and "right lung (0.55)" in warning and "heart" not in warning
    assert any("Estimated Jaccard" in c.value for c in at.caption)      # what the number means
    at.sidebar.radio(key="view").set_value("Compare regions").run()
    assert not at.exception
    estimates = {m.value for m in at.metric if m.label == "Estimated Jaccard"}
    assert estimates == {"0.55", "0.93"}
    assert any("Likely poor masks" in w.value for w in at.warning)
