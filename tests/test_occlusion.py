"""Occlusion sensitivity on a predictor whose answer is known, and its defaults."""
import numpy as np

from cxr_dash.occlusion import (DEFAULT_WORK_PIXELS, default_patch_and_stride, occlusion_passes,
                                occlusion_sensitivity)


def bright_object(batch: np.ndarray) -> np.ndarray:
    return (batch[..., 0] > 0.6).astype(np.float32)


def test_sensitivity_lies_on_the_object_the_model_segments():
    x = np.full((64, 64, 3), 0.2, np.float32)
    x[20:36, 24:40] = 0.9
    result = occlusion_sensitivity(bright_object, x, baseline=0.0)
    assert result.patch == 8 and result.stride == 4 and result.evaluations == 226
    assert result.evaluations == occlusion_passes(64, 8, 4)
    assert result.base_score == 1.0
    assert result.sensitivity[28, 32] > 0.1          # hiding the object's centre costs score
    assert np.all(result.sensitivity[:10] == 0)       # patches that never touch it cost nothing
    split = result.inside_outside(bright_object(x[None])[0] > 0.5)
    assert split["inside_fraction"] > 0.5 > split["region_area_fraction"]


def test_default_work_stays_that_of_256_px_on_larger_inputs():
    assert default_patch_and_stride(256) == (32, 16)
    for size in (320, 384):
        patch, stride = default_patch_and_stride(size)
        passes = occlusion_passes(size, patch, stride)
        assert patch == size // 8 and stride < patch                 # patches still overlap
        assert DEFAULT_WORK_PIXELS / 2 < passes * size * size <= DEFAULT_WORK_PIXELS
    assert default_patch_and_stride(512) == (64, 64)                   # never gaps between patches


def test_a_result_names_its_download_and_maps_its_drops_over_the_image():
    from cxr_dash.preprocess import FieldOfView

    x = np.full((64, 64, 3), 0.2, np.float32)
    x[20:36, 24:40] = 0.9
    view = FieldOfView.parse([0.0, 0.5, 0.0, 0.5])            # the image's top-left quarter
    result = occlusion_sensitivity(bright_object, x, patch=16, stride=16, baseline="mean",
                                   region="left_clavicle", view=view)
    assert result.download_name == "occlusion_left_clavicle_patch16_stride16_mean"
    heat = result.heatmap
    assert heat.max() == 1.0 and heat.min() == 0.0            # positive drops only, scaled
    assert np.array_equal(heat > 0, result.sensitivity > 0)
    big = result.at_size((256, 256))
    assert big.shape == (256, 256) and not big[128:].any() and not big[:, 128:].any()
    assert big[:128, :128].max() > 0.9                         # the model's part of the image
