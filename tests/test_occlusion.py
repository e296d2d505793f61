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
    assert result.download_name == "left_clavicle_occlusion"
    assert result.title == "Occlusion, patch 16, stride 16, mean-grey patches"
    heat = result.heatmap
    assert heat.max() == 1.0 and heat.min() == 0.0            # positive drops only, scaled
    assert np.array_equal(heat > 0, result.sensitivity > 0)
    big = result.at_size((256, 256))
    assert big.shape == (256, 256) and not big[128:].any() and not big[:, 128:].any()
    assert big[:128, :128].max() > 0.9                         # the model's part of the image


def test_a_stopped_run_keeps_a_coarse_map_of_the_whole_input():
    x = np.full((64, 64, 3), 0.2, np.float32)
    x[20:36, 24:40] = 0.9
    full = occlusion_sensitivity(bright_object, x, patch=8, stride=4, batch_size=16)
    calls = []
    partial = occlusion_sensitivity(bright_object, x, patch=8, stride=4, batch_size=16,
                                    progress=lambda done, total: calls.append((done, total)),
                                    should_stop=lambda: len(calls) >= 4)
    assert full.complete and full.evaluations == full.total == 226
    assert not partial.complete and partial.evaluations == 65 and partial.total == 226
    assert calls[-1] == (64, 225) and "stopped after 64 of 225" in partial.title
    assert partial.sensitivity[28, 32] > 0.1 and np.all(partial.sensitivity[:10] == 0)
    # The first patches are every other row and column: a stopped map spans the input.
    hidden = []

    def recording(batch):
        hidden.extend(np.argwhere((batch != x).any(axis=-1)[i]).min(axis=0) for i in range(len(batch))
                      if (batch[i] != x).any())
        return bright_object(batch)
    occlusion_sensitivity(recording, x, patch=8, stride=4, batch_size=16, should_stop=lambda: True)
    corners = np.array(hidden)                    # (row, column) of the first 16 patches
    assert len(corners) == 16 and corners.min() == 0 and corners[:, 0].max() >= 48
    assert corners[:, 1].max() >= 48 and np.all(corners % 8 == 0)
    # Order never changes the finished map.
    again = occlusion_sensitivity(bright_object, x, patch=8, stride=4, batch_size=7)
    assert np.abs(again.sensitivity - full.sensitivity).max() < 1e-6
