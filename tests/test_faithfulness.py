"""The deletion test on a predictor whose answer is known."""
import numpy as np
import pytest

from cxr_dash.faithfulness import removal_mask, saliency_drop


def bright_object(batch: np.ndarray) -> np.ndarray:
    """Probability 1 where the input is bright: the 'model' relies on the bright square."""
    return (batch[..., 0] > 0.6).astype(np.float32)


def test_a_heatmap_on_what_the_model_uses_costs_the_score_and_one_elsewhere_does_not():
    x = np.full((64, 64, 3), 0.2, np.float32)
    x[20:40, 20:40] = 0.9                                   # 400 px, 10% of the input
    on = np.zeros((64, 64), np.float32)
    on[20:40, 20:40] = 1.0
    off = np.zeros((64, 64), np.float32)
    off[:20, :20] = 1.0
    faithful = saliency_drop(bright_object, x, on)
    unfaithful = saliency_drop(bright_object, x, off)
    assert faithful.base_score == unfaithful.base_score == 1.0
    assert faithful.drop > 0.2 and unfaithful.drop == 0.0     # blurred, the square fades at its rim
    assert faithful.relative_drop == pytest.approx(faithful.drop)
    assert set(faithful.as_dict()) == {"fraction_removed", "base_score", "score_after_removal", "drop"}


def test_exactly_the_fraction_is_removed_even_from_a_flat_map():
    assert removal_mask(np.zeros((10, 10)), 0.1).sum() == 10
    heat = np.arange(100.0).reshape(10, 10)
    assert removal_mask(heat, 0.05).sum() == 5 and removal_mask(heat, 0.05)[9, 5:].all()
    with pytest.raises(ValueError):
        removal_mask(heat, 1.5)
