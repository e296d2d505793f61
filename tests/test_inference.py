import json

import numpy as np
import pytest

from cxr_dash import ModelSetError, load_segmenter
from cxr_dash.regions import REGION_KEYS


def test_missing_model_set_says_how_to_train(tmp_path):
    with pytest.raises(ModelSetError, match="python -m cxr_dash.train"):
        load_segmenter(tmp_path)


def test_manifest_naming_a_missing_weights_file(tiny_model_set, tmp_path):
    manifest = json.loads((tiny_model_set / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelSetError, match="missing"):
        load_segmenter(tmp_path)


@pytest.mark.parametrize("dtype,shape", [(np.uint8, (300, 250)), (np.uint16, (128, 128)),
                                         (np.float64, (97, 131))])
def test_predict_returns_one_probability_map_per_region(tiny_model_set, dtype, shape):
    seg = load_segmenter(tiny_model_set)
    assert seg.regions == REGION_KEYS
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * (4000 if dtype == np.uint16 else 255)).astype(dtype)
    probs = seg.predict(image)
    assert tuple(probs) == REGION_KEYS
    for p in probs.values():
        assert p.shape == shape and p.dtype == np.float32
        assert 0.0 <= p.min() and p.max() <= 1.0


def test_predict_rejects_non_images(tiny_model_set):
    seg = load_segmenter(tiny_model_set)
    with pytest.raises(ValueError, match="2-D"):
        seg.predict(np.zeros((2, 3, 4, 5)))


def test_evaluate_tool_on_real_cases(tiny_model_set, dataset, tmp_path):
    from cxr_dash.evaluate import main

    out = tmp_path / "eval"
    assert main(["--models", str(tiny_model_set), "--data", str(dataset.root), "--cases", "even",
                 "--limit", "2", "--out", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert set(result["summary"]) == set(REGION_KEYS)
    rows = result["per_case"]["heart"]
    assert [r["case"] for r in rows] == ["JPCLN002", "JPCLN004"]
    assert all(0 <= r["jaccard"] <= 1 for r in rows)
    assert "| Heart |" in (out / "evaluation.md").read_text()
