"""The one preprocessing path shared by training and inference.

A mismatch between how training images and uploaded images are prepared
silently ruins results, so both call :func:`prepare_input` and nothing else.
"""
from __future__ import annotations

import cv2
import numpy as np

# Percentile window: robust to burned-in labels and collimator edges, and it
# maps the low-contrast SCR PNGs (mean grey ~200) and 12/16-bit DICOM or raw
# JSRT data onto the same range.
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Per-image percentile stretch to float32 in [0, 1] (display orientation kept)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2)
    # Percentiles of a 256x256 thumbnail are as good and ~16x cheaper at 1024.
    step = max(1, min(img.shape) // 256)
    lo, hi = np.percentile(img[::step, ::step], (LOW_PERCENTILE, HIGH_PERCENTILE))
    if hi - lo < 1e-6:
        lo, hi = float(img.min()), float(img.max())
    if hi - lo < 1e-6:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D float image to size x size (area averaging when shrinking)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def prepare_input(image: np.ndarray, size: int) -> np.ndarray:
    """Radiograph (any size, any dtype) -> model input of shape (size, size, 3), float32 [0, 1]."""
    small = resize_image(normalise_intensity(image), size)
    return np.repeat(small[..., None], 3, axis=2).astype(np.float32)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary mask -> size x size binary uint8 (area fraction >= 0.5)."""
    m = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return (m >= 0.5).astype(np.uint8)


def upsample_probability(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Model-resolution probability map -> original image size (bilinear), float32."""
    h, w = shape
    if prob.shape == (h, w):
        return prob.astype(np.float32)
    return np.clip(cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR),
                   0.0, 1.0)
