"""Training augmentation: framing bands, and recipes without them unchanged."""
import numpy as np

from cxr_dash.augment import AugmentConfig, augment_pair, frame_in_bands


def _case(size=64):
    image = np.random.default_rng(1).uniform(0.2, 0.8, (size, size)).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    mask[16:48, 8:56] = 1
    return image, mask


def test_without_bands_the_augmentation_draws_what_it_drew_before():
    image, mask = _case()
    for seed in range(5):
        default = augment_pair(image, mask, np.random.default_rng(seed))
        no_bands = augment_pair(image, mask, np.random.default_rng(seed), AugmentConfig(band_probability=0.0))
        assert np.array_equal(default[0], no_bands[0]) and np.array_equal(default[1], no_bands[1])


def test_frame_in_bands_shrinks_the_radiograph_inside_flat_bands():
    image, mask = _case()
    framed, framed_mask = frame_in_bands(image, mask, (0.25, 0.0, 0.0, 0.125), level=1.0)
    assert np.all(framed[:16] == 1.0) and np.all(framed[:, 56:] == 1.0)     # top 25%, right 12.5%
    assert np.all(framed_mask[:16] == 0) and np.all(framed_mask[:, 56:] == 0)
    assert framed[16:, :56].std() > 0.1                                      # the image, shrunk
    # The anatomy shrinks with the frame: 48 x 56 of 64 x 64 keeps ~66% of its area.
    assert 0.6 < framed_mask.sum() / mask.sum() < 0.72


def test_every_copy_is_framed_when_asked_with_the_mask_cleared_under_its_bands():
    image, mask = _case()
    cfg = AugmentConfig(band_probability=1.0, rotation_deg=0.0, shift_fraction=0.0, scale_range=(1.0, 1.0))
    levels = set()
    for seed in range(20):
        x, y = augment_pair(image, mask, np.random.default_rng(seed), cfg)
        edges = {"top": (x[0], y[0]), "bottom": (x[-1], y[-1]), "left": (x[:, 0], y[:, 0]),
                 "right": (x[:, -1], y[:, -1])}
        flat = [name for name, (row, _) in edges.items() if np.ptp(row) < 1e-6]
        assert flat, seed                                     # at least one band
        for name in flat:
            assert not edges[name][1].any()                   # no anatomy under a band
            levels.add(round(float(edges[name][0][0]), 2))
        assert 0 < y.sum() < mask.sum()                       # the region stays, smaller
    assert {0.0, 1.0} <= levels and len(levels) > 2           # black, white and greys
