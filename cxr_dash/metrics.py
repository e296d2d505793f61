"""Overlap and contour-distance metrics for binary masks.

Jaccard = TP / (TP + FP + FN), Dice = 2TP / (2TP + FP + FN). Contour
distances follow the SCR paper: for every boundary pixel of one mask the
distance to the nearest boundary pixel of the other, both directions pooled;
mean contour distance is their mean, HD95 their 95th percentile. Distances
are in mm when a pixel spacing is given.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    union = np.logical_or(pred, truth).sum()
    if union == 0:
        return 1.0  # both empty: perfect agreement
    return float(np.logical_and(pred, truth).sum() / union)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    total = pred.sum() + truth.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(pred, truth).sum() / total)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with at least one 4-neighbour outside it (image edge counts as outside)."""
    mask = mask.astype(bool)
    padded = np.pad(mask, 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(2, 1))
    return (padded & ~eroded)[1:-1, 1:-1]


def _surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: float) -> np.ndarray | None:
    bp, bt = boundary(pred), boundary(truth)
    if not bp.any() or not bt.any():
        return None
    dt_to_truth = ndimage.distance_transform_edt(~bt, sampling=spacing)
    dt_to_pred = ndimage.distance_transform_edt(~bp, sampling=spacing)
    return np.concatenate([dt_to_truth[bp], dt_to_pred[bt]])


def contour_distances(pred: np.ndarray, truth: np.ndarray, spacing: float = 1.0) -> tuple[float, float]:
    """(mean contour distance, 95% Hausdorff distance); NaN when a mask is empty."""
    if not pred.any() and not truth.any():
        return 0.0, 0.0
    d = _surface_distances(pred, truth, spacing)
    if d is None:
        return math.nan, math.nan
    return float(d.mean()), float(np.percentile(d, 95))


def error_fractions(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(missed, extra): the ground truth outside the prediction (false negatives) and the
    prediction outside the ground truth (false positives), both as fractions of the
    ground truth's area, so they compare and Jaccard = (1 - missed) / (1 + extra).
    An overlap score alone does not say whether a model falls short of an outline or
    spills over it. NaN when the ground truth is empty."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    area = truth.sum()
    if area == 0:
        return math.nan, math.nan
    return float((truth & ~pred).sum() / area), float((pred & ~truth).sum() / area)


def all_metrics(pred: np.ndarray, truth: np.ndarray, spacing: float = 1.0) -> dict[str, float]:
    mcd, hd95 = contour_distances(pred, truth, spacing)
    missed, extra = error_fractions(pred, truth)
    return {"jaccard": jaccard(pred, truth), "dice": dice(pred, truth),
            "mean_contour_distance_mm": mcd, "hd95_mm": hd95,
            "missed_fraction": missed, "extra_fraction": extra}


def summarise(values) -> dict[str, float]:
    """mean, sd, median, min, max over finite values (NaN ignored, counted)."""
    arr = np.asarray([v for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return {"mean": math.nan, "sd": math.nan, "median": math.nan, "min": math.nan,
                "max": math.nan, "n": 0, "n_undefined": int(arr.size)}
    return {"mean": float(finite.mean()), "sd": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            "median": float(np.median(finite)), "min": float(finite.min()),
            "max": float(finite.max()), "n": int(finite.size),
            "n_undefined": int(arr.size - finite.size)}


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected component (each SCR structure is one piece)."""
    labels, n = ndimage.label(mask.astype(bool), structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_fill_holes(mask.astype(bool))
