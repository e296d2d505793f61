"""Explanations: every method gives a usable map, and on a real case the map
lies on the region the model predicts."""
import cv2
import numpy as np
import pytest

from cxr_dash.explain import METHODS, explain, segmentation_score
from cxr_dash.manifest import DEFAULT_MODEL_DIR


def test_mean_score_is_the_sum_over_the_region_divided_by_its_area():
    import keras

    mask = np.zeros((8, 8), np.float32)
    mask[2:4, 2:6] = 1
    output = np.full((1, 8, 8, 1), 0.25, np.float32)
    output[0, 2, 2, 0] = 1.0
    total = float(keras.ops.convert_to_numpy(segmentation_score(mask)(output))[0])
    mean = float(keras.ops.convert_to_numpy(segmentation_score(mask, mean=True)(output))[0])
    assert total == pytest.approx(7 * 0.25 + 1.0)
    assert mean == pytest.approx(total / 8)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_a_finite_non_constant_map(tiny_model_set, method):
    from cxr_dash import load_segmenter

    seg = load_segmenter(tiny_model_set, regions=("heart",))
    image = np.zeros((128, 128), np.uint8)
    image[32:96, 40:88] = 200
    result = explain(seg, image, "heart", method, threshold=0.0, smooth_samples=2, max_channels=8)
    heat = result.heatmap
    assert heat.shape == (64, 64) and np.isfinite(heat).all()
    assert heat.min() == 0.0 and heat.max() == 1.0          # normalised, not a blank map


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "manifest.json").is_file(), reason="no shipped weights")
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_heart_map_lies_on_the_predicted_heart(dataset, method):
    """A score summed over thousands of pixels once overflowed Grad-CAM++'s
    exp(score) into an all-zero map; the maps must concentrate on the region
    the model predicts (heat per pixel there well above the average)."""
    from cxr_dash import load_segmenter

    seg = load_segmenter(regions=("heart",))
    image = dataset.load_image("JPCLN002").pixels
    x = seg.prepare(image, "heart")
    predicted = np.asarray(seg.model("heart").predict_on_batch(x[None]))[0, ..., 0] > 0.5
    near = cv2.dilate(predicted.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    heat = explain(seg, image, "heart", method).heatmap
    enrichment = (heat[near].sum() / heat.sum()) / near.mean()
    assert enrichment > 2.5, enrichment


def test_an_explanation_names_its_own_download():
    from cxr_dash.explain import Explanation

    heat = np.zeros((8, 8), np.float32)
    assert Explanation("heart", "gradcam", "decoder_stage1b_relu", heat, 1.0).download_name == \
        "gradcam_decoder_stage1b_relu_heart"
    assert Explanation("left_lung", "gradcam++", "conv1_relu", heat, 1.0).download_name == \
        "gradcamplusplus_conv1_relu_left_lung"
    assert Explanation("heart", "smoothgrad", None, heat, 1.0).download_name == "smoothgrad_input_heart"
