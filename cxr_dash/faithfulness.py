"""How faithful a heatmap is to the model it explains: the deletion test.

    saliency_drop(predict, x, heatmap, region_mask, fraction=0.1) -> Faithfulness

The ``fraction`` of the model input a heatmap ranks most salient is removed
(replaced by a heavily blurred copy of the input, which keeps its brightness and
drops its structure, as occlusion's "blur" baseline does), and the region score
is computed again: the model's mean probability over the region it predicted on
the intact input, the score occlusion sensitivity uses. A heatmap that points at
what the model relies on costs the score much when its top pixels go; one that
points elsewhere costs it little. The drop compares explanation methods on the
same image, region and fraction (the deletion metric of Petsiuk et al., 2018, at
one point of its curve); across images its scale varies with how sure the model
was to begin with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

DEFAULT_FRACTION = 0.1


@dataclass(frozen=True)
class Faithfulness:
    base_score: float      # mean probability over the region, intact input
    score: float           # the same with the most salient ``fraction`` removed
    fraction: float

    @property
    def drop(self) -> float:
        """How much the region score fell (positive: the heatmap found what matters)."""
        return self.base_score - self.score

    @property
    def relative_drop(self) -> float:
        """``drop`` as a share of the intact score (NaN when that is 0)."""
        return self.drop / self.base_score if self.base_score > 0 else float("nan")

    def as_dict(self) -> dict:
        return {"fraction_removed": self.fraction, "base_score": round(self.base_score, 4),
                "score_after_removal": round(self.score, 4), "drop": round(self.drop, 4)}


def removal_mask(heatmap: np.ndarray, fraction: float = DEFAULT_FRACTION) -> np.ndarray:
    """The ``fraction`` of pixels with the highest heat (ties broken by position, so
    exactly that many, even where a map is flat)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must lie between 0 and 1")
    flat = np.asarray(heatmap, np.float64).ravel()
    k = max(1, int(round(fraction * flat.size)))
    top = np.argsort(-flat, kind="stable")[:k]
    mask = np.zeros(flat.size, bool)
    mask[top] = True
    return mask.reshape(np.shape(heatmap))


def blurred(x: np.ndarray) -> np.ndarray:
    """The removal baseline: ``x`` blurred over 1/16 of its side."""
    return cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigmaX=x.shape[0] / 16)


def saliency_drop(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, heatmap: np.ndarray,
                  region_mask: np.ndarray | None = None,
                  fraction: float = DEFAULT_FRACTION) -> Faithfulness:
    """``predict``: (N, S, S, 3) -> (N, S, S) probabilities (``occlusion.model_predictor``);
    ``x``: the (S, S, 3) model input; ``heatmap``: (S, S), the explanation at the model's
    input size; ``region_mask``: where the score is averaged (default: the prediction
    on ``x`` at 0.5; everywhere if that is empty). Two forward passes."""
    if heatmap.shape != x.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} and input {x.shape[:2]} differ in size")
    removed = x.copy()
    where = removal_mask(heatmap, fraction)
    removed[where] = blurred(x)[where]
    base_prob, prob = predict(np.stack([x, removed]).astype(np.float32))
    weight = (base_prob >= 0.5) if region_mask is None else np.asarray(region_mask, bool)
    if not weight.any():
        weight = np.ones_like(weight)
    return Faithfulness(float(base_prob[weight].mean()), float(prob[weight].mean()), fraction)
