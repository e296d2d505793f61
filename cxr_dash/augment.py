"""On-the-fly augmentation for training (numpy + OpenCV, backend-agnostic).

Geometric: rotation, shift, scale, applied identically to image and mask.
Photometric: brightness, contrast, gamma. No horizontal flip: "left" and
"right" are the patient's sides, and a flip would swap them. Optionally,
framing bands: the radiograph shrunk inside uniform bands on some sides, as
padding, a letterbox or collimation frames it (off by default).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    shift_fraction: float = 0.08
    scale_range: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1        # additive, in [0, 1] intensity units
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.7, 1.5)
    # Share of copies framed by bands (0: never; the recipes before it drew no
    # random numbers for it, so they reproduce unchanged) and a band's width
    # as a fraction of the side. A band's level is black, white or a grey.
    band_probability: float = 0.0
    band_fraction: tuple[float, float] = (0.02, 0.15)

    def as_dict(self) -> dict:
        return asdict(self)


# Padding for every geometric transform, in training and in the position tests:
# outside the radiograph is black, like the air around a patient.
BORDER_VALUE = 0.0


def affine_matrix(size: int, angle_deg: float = 0.0, scale: float = 1.0,
                  shift_x: float = 0.0, shift_y: float = 0.0) -> np.ndarray:
    """2x3 matrix: rotate/scale about the centre, then shift (fractions of size)."""
    centre = (size / 2.0, size / 2.0)
    m = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    m[0, 2] += shift_x * size
    m[1, 2] += shift_y * size
    return m


def warp(image: np.ndarray, matrix: np.ndarray, nearest: bool = False,
         border_value: float = BORDER_VALUE) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h),
                          flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def frame_in_bands(image: np.ndarray, mask: np.ndarray, widths, level: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Shrink image and mask into the rectangle that bands of ``widths`` (top,
    bottom, left, right; fractions of the side) leave, and fill the bands with
    ``level``: what padding an exported radiograph does to the model's input."""
    size = image.shape[0]
    top, bottom, left, right = (int(round(w * size)) for w in widths)
    inner_h, inner_w = size - top - bottom, size - left - right
    img = np.full_like(image, level)
    msk = np.zeros_like(mask)
    img[top:top + inner_h, left:left + inner_w] = cv2.resize(image, (inner_w, inner_h),
                                                             interpolation=cv2.INTER_AREA)
    msk[top:top + inner_h, left:left + inner_w] = cv2.resize(mask, (inner_w, inner_h),
                                                             interpolation=cv2.INTER_NEAREST)
    return img, msk


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """image: (S, S) float32 in [0, 1]; mask: (S, S) uint8. Returns augmented copies."""
    size = image.shape[0]
    m = affine_matrix(size,
                      rng.uniform(-cfg.rotation_deg, cfg.rotation_deg),
                      rng.uniform(*cfg.scale_range),
                      rng.uniform(-cfg.shift_fraction, cfg.shift_fraction),
                      rng.uniform(-cfg.shift_fraction, cfg.shift_fraction))
    img = warp(image.astype(np.float32), m)
    msk = warp(mask.astype(np.float32), m, nearest=True)
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(*cfg.gamma)
    img = (img - 0.5) * rng.uniform(*cfg.contrast) + 0.5 + rng.uniform(-cfg.brightness, cfg.brightness)
    img, msk = np.clip(img, 0.0, 1.0).astype(np.float32), (msk > 0.5).astype(np.uint8)
    if cfg.band_probability > 0 and rng.uniform() < cfg.band_probability:
        # After the photometric jitter: a padded export's bands are flat, at
        # the level the export chose, whatever the tone curve inside.
        sides = rng.uniform(size=4) < 0.5
        sides[rng.integers(4)] = True                      # at least one side
        widths = np.where(sides, rng.uniform(*cfg.band_fraction, size=4), 0.0)
        level = (0.0, 1.0, rng.uniform(0.2, 0.8))[rng.integers(3)]
        img, msk = frame_in_bands(img, msk, widths, level)
    return img, msk


def augmented_copies(images: np.ndarray, copies: int, seed: int = 0,
                     cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """(N, S, S) images in [0, 1] -> (N * copies, S, S, 3) float32 freshly augmented
    model inputs, as one training epoch sees them (used to re-estimate batch-norm
    statistics on the distribution the weights were trained on)."""
    rng = np.random.default_rng(seed)
    empty = np.zeros(images.shape[1:3], np.uint8)
    out = np.empty((len(images) * copies,) + images.shape[1:3] + (3,), np.float32)
    for k in range(copies):
        for i, image in enumerate(images):
            out[k * len(images) + i] = augment_pair(image.astype(np.float32), empty, rng, cfg)[0][..., None]
    return out
