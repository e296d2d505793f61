"""Occlusion sensitivity for a region model (cf. MONAI's OcclusionSensitivity).

A square patch of ``baseline`` value slides over the model input with
``stride``; for each position the region score (mean probability over the
region predicted on the unoccluded image) is recomputed. The map is the
score drop, averaged over every patch covering a pixel: positive where
hiding the pixel makes the model less sure of its region.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .preprocess import FULL_VIEW, FieldOfView, upsample_probability

DEFAULT_PATCH_FRACTION = 1 / 8     # of the input side: 16 px at 128, 32 px at 256
DEFAULT_STRIDE_FRACTION = 1 / 16


@dataclass
class OcclusionResult:
    sensitivity: np.ndarray     # (S, S) float32, score drop (signed)
    base_score: float
    patch: int
    stride: int
    baseline: float | str
    evaluations: int
    seconds: float
    region: str | None = None        # the region model occluded, when the caller named it
    view: FieldOfView = FULL_VIEW    # the part of the image the model saw
    total: int | None = None         # passes of the whole run; more than ``evaluations`` if stopped

    @property
    def complete(self) -> bool:
        """False for a run stopped early: its map has the patches computed until then."""
        return self.total is None or self.evaluations >= self.total

    @property
    def heatmap(self) -> np.ndarray:
        """The score drops that matter (positive), scaled to [0, 1], at the model's input size."""
        pos = np.clip(self.sensitivity, 0, None)
        return pos / pos.max() if pos.max() > 0 else pos

    def at_size(self, shape: tuple[int, int]) -> np.ndarray:
        """``heatmap`` over an image of ``shape`` (zero outside the model's field of view)."""
        return upsample_probability(self.heatmap, shape, self.view)

    @property
    def download_name(self) -> str:
        """What its heatmap is called as a file, region first, as the masks are:
        ``heart_occlusion`` (its settings are in :attr:`title`)."""
        return f"{self.region or 'region'}_occlusion"

    @property
    def title(self) -> str:
        """What it is, in words: 'Occlusion, patch 16, stride 16, black patches'."""
        named = {"mean": "mean-grey", "blur": "blurred", 0.0: "black", 1.0: "white"}
        fill = named.get(self.baseline, f"grey {self.baseline}")
        partial = "" if self.complete else f", stopped after {self.evaluations - 1} of {self.total - 1}"
        return f"Occlusion, patch {self.patch}, stride {self.stride}, {fill} patches{partial}"

    def inside_outside(self, region_mask: np.ndarray) -> dict[str, float]:
        """How much of the positive sensitivity lies inside the predicted region."""
        pos = np.clip(self.sensitivity, 0, None)
        total = float(pos.sum())
        inside = float(pos[region_mask.astype(bool)].sum())
        return {"inside": inside, "outside": total - inside,
                "inside_fraction": inside / total if total > 0 else float("nan"),
                "region_area_fraction": float(region_mask.mean())}


# Work of the default at 256 px (225 occluded passes + 1), with 10% slack: a
# pass at 384 px costs 2.25 times as much, and the default must stay within
# the dashboard's 30 s on two CPU cores, so larger inputs get a wider stride.
DEFAULT_WORK_PIXELS = int(1.1 * 226 * 256 * 256)


def default_patch_and_stride(size: int) -> tuple[int, int]:
    """Patch ⅛ and stride 1/16 of the input side; the stride widens on inputs
    larger than 256 px until the passes fit ``DEFAULT_WORK_PIXELS``."""
    patch = max(2, int(round(size * DEFAULT_PATCH_FRACTION)))
    stride = max(1, int(round(size * DEFAULT_STRIDE_FRACTION)))
    while stride < patch and occlusion_passes(size, patch, stride) * size * size > DEFAULT_WORK_PIXELS:
        stride += 1
    return patch, stride


def occlusion_passes(size: int, patch: int, stride: int) -> int:
    """Model passes of one run: every patch position, plus the unoccluded image."""
    return len(_positions(size, patch, stride)) ** 2 + 1


def coarse_first(rows: int, cols: int) -> list[tuple[int, int]]:
    """Every (row, column) index of a grid, coarse grids first: indices that are multiples
    of 8 in both, then of 4, of 2, then the rest (row by row within each)."""
    def level(i: int) -> int:
        return 99 if i == 0 else (i & -i).bit_length()
    return sorted(((i, j) for i in range(rows) for j in range(cols)),
                  key=lambda ij: (-min(level(ij[0]), level(ij[1])), ij))


def _positions(size: int, patch: int, stride: int) -> list[int]:
    pos = list(range(0, max(size - patch, 0) + 1, stride))
    if pos[-1] != size - patch:   # cover the last rows/columns too
        pos.append(size - patch)
    return pos


def occlusion_sensitivity(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                          region_mask: np.ndarray | None = None, patch: int | None = None,
                          stride: int | None = None, baseline: float | str = 0.0,
                          batch_size: int | None = None,
                          progress: Callable[[int, int], None] | None = None, *,
                          region: str | None = None, view: FieldOfView = FULL_VIEW,
                          should_stop: Callable[[], bool] | None = None) -> OcclusionResult:
    """``predict``: (N, S, S, 3) -> (N, S, S) probabilities; ``x``: (S, S, 3) model input.

    ``baseline``: a grey value in [0, 1], ``"mean"`` (the image mean) or
    ``"blur"`` (a heavily blurred copy: removes structure, keeps brightness).
    ``region`` and ``view`` say what ``x`` is (the region model and the part
    of the image it sees); the result keeps them for its heatmap over the
    whole image (``at_size``) and its ``download_name``.

    ``batch_size``: patches per model call (default: 4 at 256 px, fewer on larger
    inputs, whose activations take ~100 MB per image, at most 16). ``should_stop``:
    asked after every batch; once it says True the run ends with the patches done
    so far (``complete`` False). Patches run coarse to fine (:func:`coarse_first`), so
    a stopped run's map already spans the whole input.
    """
    started = time.time()
    size = x.shape[0]
    d_patch, d_stride = default_patch_and_stride(size)
    patch, stride = int(patch or d_patch), int(stride or d_stride)
    if not (1 <= patch <= size and 1 <= stride <= size):
        raise ValueError(f"patch and stride must lie in 1..{size}")
    base_prob = predict(x[None])[0]
    if region_mask is None:
        region_mask = base_prob >= 0.5
    weight = region_mask.astype(np.float32)
    if weight.sum() == 0:
        weight = np.ones_like(weight)
    weight /= weight.sum()
    base_score = float((base_prob * weight).sum())
    if baseline == "mean":
        fill = np.full_like(x, float(x.mean()))
    elif baseline == "blur":
        import cv2
        fill = cv2.GaussianBlur(x, (0, 0), sigmaX=size / 16)
    else:
        fill = np.full_like(x, float(baseline))
    ys, xs = _positions(size, patch, stride), _positions(size, patch, stride)
    boxes = [(ys[i], xs[j]) for i, j in coarse_first(len(ys), len(xs))]
    batch_size = int(batch_size or min(16, max(1, 4 * 256 * 256 // (size * size))))
    done = 0
    drop_sum = np.zeros((size, size), np.float64)
    counts = np.zeros((size, size), np.float64)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start:start + batch_size]
        batch = np.repeat(x[None], len(chunk), axis=0)
        for k, (r, c) in enumerate(chunk):
            batch[k, r:r + patch, c:c + patch] = fill[r:r + patch, c:c + patch]
        scores = (predict(batch) * weight).sum(axis=(1, 2))
        for (r, c), s in zip(chunk, scores):
            drop_sum[r:r + patch, c:c + patch] += base_score - float(s)
            counts[r:r + patch, c:c + patch] += 1
        done += len(chunk)
        if progress:
            progress(done, len(boxes))
        if should_stop is not None and done < len(boxes) and should_stop():
            break
    sens = (drop_sum / np.maximum(counts, 1)).astype(np.float32)
    return OcclusionResult(sens, base_score, patch, stride, baseline, done + 1,
                           time.time() - started, region, view, len(boxes) + 1)


def model_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a Keras region model as (N, S, S, 3) -> (N, S, S)."""
    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch.astype(np.float32)))[..., 0]
    return predict
