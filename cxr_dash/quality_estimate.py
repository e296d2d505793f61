"""How far to trust a region's mask: an estimate of the Jaccard it would score
against a careful manual outline, from what is known without one.

The mean probability inside a thresholded mask is high by construction,
whatever the mask is worth (a 785-pixel fragment of a clavicle scored 0.96),
so it is not the estimate. Per region, from the raw probability map:

- *agreement*: Jaccard between the mask and that of one perturbed pass (the
  input at about 70% of its model size, mid-tones darkened by gamma 1.25):
  a model that has understood the anatomy draws the same outline;
- *shape*: the share of uncertain pixels relative to the mask, the share of
  the thresholded area outside its largest piece, holes, solidity, how jagged
  the outline is;
- *plausibility*: area and centroid against the region's SCR statistics, the
  area against its counterpart's (the other lung, the other clavicle).

A ridge regression per region maps these features onto the logit of the
Jaccard, fitted by ``python -m cxr_dash.quality_fit`` on held-out SCR cases
and synthetic degradations of them, never on an external validation set; its
coefficients live in the model set (``quality.json``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from .preprocess import finish_intensity, model_space_image, upsample_probability

QUALITY_FILE = "quality.json"
FEATURE_SIDE = 256           # features are computed on maps at this side: cheap, and enough
PERTURBED_SCALE = 0.7        # the perturbed pass's input size, as a share of the model's
PERTURBED_GAMMA = 1.25
# A warning when the estimate falls below this; validated by quality_fit (see docs/results.md).
DEFAULT_WARNING_THRESHOLD = 0.85
COUNTERPART = {"left_lung": "right_lung", "right_lung": "left_lung",
               "left_clavicle": "right_clavicle", "right_clavicle": "left_clavicle"}
FEATURES = ("agreement", "agreement_sq", "uncertain_share", "outside_largest", "hole_share",
            "solidity", "roughness", "log_area_ratio", "abs_log_area_ratio", "centroid_z",
            "log_pair_ratio", "mean_probability", "empty")
# Heavy-tailed features enter the regression as logs: a near-empty mask's uncertain
# share runs to hundreds, which a linear model would let outweigh every other
# feature (on held-out SCR rows the logs raised the cross-validated Spearman from
# 0.57-0.86 to 0.78-0.90 per region).
LOG_FEATURES = ("uncertain_share", "outside_largest", "hole_share")
REGRESSION_VERSION = 2
EXPLANATION = ("Estimated Jaccard: how much this mask would overlap a careful manual outline "
               "(1 = identical), predicted from how stable, solid and anatomically plausible "
               "it is; no ground truth is used.")


def perturbed_size(size: int) -> int:
    """The perturbed pass's input side: about 70% of the model's, a multiple of 32."""
    return max(64, int(round(size * PERTURBED_SCALE / 32)) * 32)


def perturbed_probabilities(seg, image: np.ndarray, regions) -> dict[str, np.ndarray]:
    """{region: map at the image's size} from one perturbed pass of each model."""
    out, inputs = {}, {}
    for region in regions:
        size, view, intensity = seg.model_space(region)
        key = (perturbed_size(size), view, intensity)
        if key not in inputs:
            small = model_space_image(image, key[0], view) ** PERTURBED_GAMMA
            x = finish_intensity(small, intensity)
            inputs[key] = np.repeat(x[None, ..., None], 3, axis=3)
        y = seg.forward(region, inputs[key])[0]
        out[region] = upsample_probability(y, image.shape, view)
    return out


def _small(prob: np.ndarray) -> np.ndarray:
    return cv2.resize(prob.astype(np.float32), (FEATURE_SIDE, FEATURE_SIDE), interpolation=cv2.INTER_AREA)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def shape_features(prob: np.ndarray) -> dict[str, float]:
    """Features of one raw probability map (at FEATURE_SIDE)."""
    raw = prob >= 0.5
    area = raw.sum()
    if area == 0:
        return {"uncertain_share": 1.0, "outside_largest": 1.0, "hole_share": 0.0, "solidity": 0.0,
                "roughness": 3.0, "mean_probability": 0.0, "empty": 1.0, "area": 0.0,
                "centroid": (0.5, 0.5)}
    labels, n = ndimage.label(raw, structure=np.ones((3, 3), bool))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    filled = ndimage.binary_fill_holes(largest)
    contours, _ = cv2.findContours(filled.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    hull_area = max(cv2.contourArea(cv2.convexHull(contour)), 1.0)
    hull_perimeter = max(cv2.arcLength(cv2.convexHull(contour), True), 1.0)
    uncertain = ((prob > 0.1) & (prob < 0.9)).sum()
    ys, xs = np.nonzero(filled)
    return {"uncertain_share": float(uncertain / area),
            "outside_largest": float(1.0 - largest.sum() / area),
            "hole_share": float((filled & ~largest).sum() / max(1, filled.sum())),
            "solidity": float(filled.sum() / hull_area),
            # Outline length against its convex hull's: 1 for a smooth convex shape.
            "roughness": float(cv2.arcLength(contour, True) / hull_perimeter),
            "mean_probability": float(prob[raw].mean()), "empty": 0.0,
            "area": float(filled.sum() / prob.size),
            "centroid": (float(ys.mean() / prob.shape[0]), float(xs.mean() / prob.shape[1]))}


def region_features(region: str, small: dict[str, np.ndarray], perturbed: dict[str, np.ndarray],
                    stats: dict) -> list[float]:
    """The feature vector of one region (in FEATURES' order)."""
    f = shape_features(small[region])
    s = stats[region]
    ratio = math.log(max(f["area"], 1e-4) / s["area"])
    cy, cx = f["centroid"]
    centroid_z = math.hypot((cy - s["centroid"][0]) / s["centroid_sd"][0],
                            (cx - s["centroid"][1]) / s["centroid_sd"][1])
    pair = COUNTERPART.get(region)
    log_pair = 0.0
    if pair in small:
        other = max(float((small[pair] >= 0.5).mean()), 1e-4)
        log_pair = abs(math.log(max(f["area"], 1e-4) / other) - s.get("log_pair_ratio", 0.0))
    agreement = _jaccard(small[region] >= 0.5, perturbed[region] >= 0.5) if perturbed else 1.0
    values = {**f, "agreement": agreement, "agreement_sq": agreement ** 2,
              "log_area_ratio": ratio, "abs_log_area_ratio": abs(ratio),
              "centroid_z": min(centroid_z, 10.0), "log_pair_ratio": min(log_pair, 5.0)}
    return [float(values[k]) for k in FEATURES]


def feature_table(probabilities: dict[str, np.ndarray], perturbed: dict[str, np.ndarray],
                  stats: dict) -> dict[str, list[float]]:
    small = {r: _small(p) for r, p in probabilities.items()}
    small_perturbed = {r: _small(p) for r, p in perturbed.items()}
    return {r: region_features(r, small, small_perturbed, stats) for r in probabilities}


@dataclass
class QualityModel:
    """Per region: feature means and scales, ridge coefficients on logit(Jaccard), and
    the SCR statistics the plausibility features compare against."""
    regions: dict            # region -> {"mean": [...], "scale": [...], "coef": [...], "bias": b}
    stats: dict              # region -> {"area", "centroid", "centroid_sd", "log_pair_ratio"}
    warning_threshold: float = DEFAULT_WARNING_THRESHOLD
    fitted_on: str = ""

    @classmethod
    def load(cls, model_dir: str | Path) -> "QualityModel | None":
        path = Path(model_dir) / QUALITY_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data.get("features") != list(FEATURES) or data.get("version") != REGRESSION_VERSION:
            return None          # fitted on other features: refit with quality_fit
        return cls(data["regions"], data["stats"], data.get("warning_threshold",
                                                            DEFAULT_WARNING_THRESHOLD),
                   data.get("fitted_on", ""))

    def save(self, model_dir: str | Path, extra: dict | None = None) -> Path:
        path = Path(model_dir) / QUALITY_FILE
        path.write_text(json.dumps({"version": REGRESSION_VERSION, "features": list(FEATURES),
                                    "regions": self.regions,
                                    "stats": self.stats, "warning_threshold": self.warning_threshold,
                                    "fitted_on": self.fitted_on, **(extra or {})}, indent=1) + "\n")
        return path

    def estimate(self, region: str, features: list[float]) -> float:
        m = self.regions[region]
        z = (regression_inputs(features)[0] - np.asarray(m["mean"])) / np.asarray(m["scale"])
        logit = float(z @ np.asarray(m["coef"]) + m["bias"])
        return float(1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, logit)))))


def regression_inputs(x) -> np.ndarray:
    """Feature vectors (rows in FEATURES' order) as the regression takes them."""
    x = np.array(x, dtype=np.float64, ndmin=2)
    for name in LOG_FEATURES:
        i = FEATURES.index(name)
        x[:, i] = np.log(x[:, i] + 0.01)
    i = FEATURES.index("roughness")
    x[:, i] = np.log(np.maximum(x[:, i] - 0.9, 0.01))   # 1 for a smooth convex outline
    return x


def fit_ridge(x: np.ndarray, jaccard: np.ndarray, alpha: float = 1.0) -> dict:
    """Ridge regression of logit(Jaccard) on standardised features."""
    x = regression_inputs(x)
    target = np.log(np.clip(jaccard, 0.02, 0.995) / (1 - np.clip(jaccard, 0.02, 0.995)))
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    bias = float(target.mean())
    coef = np.linalg.solve(z.T @ z + alpha * len(z) * 0.01 * np.eye(z.shape[1]), z.T @ (target - bias))
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(), "bias": bias}


def region_statistics(masks_by_case: list[dict[str, np.ndarray]]) -> dict:
    """Area, centroid and counterpart ratio per region from reference masks."""
    stats = {}
    regions = masks_by_case[0].keys()
    for region in regions:
        areas, cents, pairs = [], [], []
        for masks in masks_by_case:
            f = shape_features(_small(masks[region].astype(np.float32)))
            areas.append(f["area"])
            cents.append(f["centroid"])
            pair = COUNTERPART.get(region)
            if pair in masks:
                pairs.append(math.log(max(f["area"], 1e-4) / max(float(masks[pair].mean()), 1e-4)))
        cents = np.asarray(cents)
        stats[region] = {"area": float(np.median(areas)), "centroid": cents.mean(axis=0).tolist(),
                         "centroid_sd": np.maximum(cents.std(axis=0), 0.01).tolist(),
                         "log_pair_ratio": float(np.mean(pairs)) if pairs else 0.0}
    return stats
