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
    default = Explanation("heart", "gradcam", "decoder_stage1b_relu", heat, 1.0)
    assert default.download_name == "heart_gradcam"           # <image>_heart_gradcam.png
    assert default.title == "Grad-CAM, decoder stage 2 (1/8)"
    assert Explanation("left_lung", "gradcam++", "conv1_relu", heat, 1.0).download_name == \
        "left_lung_gradcamplusplus_encoder1"
    assert Explanation("heart", "smoothgrad", None, heat, 1.0).download_name == "heart_smoothgrad"


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
@pytest.mark.parametrize("layer", ["decoder_stage1b_relu", "conv1_relu", "conv5_block3_out"])
def test_compiled_class_activation_maps_are_tf_keras_vis_maps(tiny_model_set, method, layer):
    """The compiled gradients (one traced function per model and layer) give the maps
    tf-keras-vis gives, to float rounding."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam

    from cxr_dash import load_segmenter
    from cxr_dash.explain import normalise, target_mask

    seg = load_segmenter(tiny_model_set, regions=("heart",))
    image = np.zeros((128, 128), np.uint8)
    image[32:96, 40:88] = 200
    x = seg.prepare(image, "heart")
    mask = target_mask(seg.forward("heart", x[None])[0], 0.0)
    cls = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam}[method]
    reference = cls(seg.model("heart"), clone=False)(
        segmentation_score(mask, mean=method == "gradcam++"), x[None], penultimate_layer=layer,
        seek_penultimate_conv_layer=False, normalize_cam=False)[0]
    heat = explain(seg, image, "heart", method, layer, threshold=0.0).heatmap
    assert normalise(reference).max() == 1.0 and np.abs(normalise(reference) - heat).max() < 1e-5


def test_smoothgrad_is_tf_keras_vis_saliency_with_the_same_noise(tiny_model_set):
    from tf_keras_vis.saliency import Saliency

    from cxr_dash import load_segmenter
    from cxr_dash.explain import normalise, target_mask

    seg = load_segmenter(tiny_model_set, regions=("heart",))
    image = np.zeros((128, 128), np.uint8)
    image[32:96, 40:88] = 200
    x = seg.prepare(image, "heart")
    mask = target_mask(seg.forward("heart", x[None])[0], 0.0)
    np.random.seed(3)
    reference = Saliency(seg.model("heart"), clone=False)(segmentation_score(mask), x[None],
                                                          smooth_samples=4, smooth_noise=0.15)[0]
    reference = normalise(cv2.GaussianBlur(np.asarray(reference, np.float32), (0, 0), sigmaX=1.0))
    heat = explain(seg, image, "heart", "smoothgrad", threshold=0.0, smooth_samples=4,
                   rng=np.random.RandomState(3)).heatmap
    assert np.abs(reference - heat).max() < 2e-3     # noise added in float64 here, float32 there


@pytest.mark.parametrize("method,params,total", [("smoothgrad", {"smooth_samples": 6}, 6),
                                                 ("scorecam", {"max_channels": 16}, 16)])
def test_a_stopped_explanation_keeps_what_it_computed(tiny_model_set, method, params, total):
    from cxr_dash import load_segmenter

    seg = load_segmenter(tiny_model_set, regions=("heart",))
    image = np.zeros((128, 128), np.uint8)
    image[32:96, 40:88] = 200
    seen = []
    result = explain(seg, image, "heart", method, threshold=0.0, progress=lambda d, t: seen.append((d, t)),
                     should_stop=lambda: len(seen) >= 1, **params)
    assert not result.complete and result.total == total and 0 < result.done < total
    assert seen[-1] == (result.done, total) and "stopped after" in result.title
    assert np.isfinite(result.heatmap).all() and result.heatmap.max() == 1.0
    full = explain(seg, image, "heart", method, threshold=0.0, **params)
    assert full.complete and full.done == total and "stopped" not in full.title
