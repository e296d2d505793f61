"""A chest radiograph drawn by code, with its own "ground truth": no real pixels.

Two dark lung fields beside a bright mediastinum, a heart below them to the
image's right (the patient's left), clavicles, faint ribs, soft tissue and air,
blurred and noisy. The shipped models find a heart and both lungs on it, which
is all the browser test's screenshots need (an overlay, CTR lines, a difference
view); it is not anatomy.
"""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def chest_phantom(side: int = 512, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(uint8 image, {"heart", "left_lung", "right_lung": bool mask as drawn})."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] / side
    img = np.full((side, side), 30.0)                                # air outside the body
    body = ((xx - 0.5) / 0.47) ** 2 + ((yy - 0.62) / 0.62) ** 2 < 1
    img[body] = 175 + 25 * yy[body]                                  # soft tissue
    heart = ((xx - 0.56) / 0.17) ** 2 + ((yy - 0.66) / 0.13) ** 2 < 1
    mediastinum = (abs(xx - 0.5) < 0.07) & (yy > 0.1)
    truth = {"heart": heart}
    for region, cx in (("right_lung", 0.30), ("left_lung", 0.70)):   # patient's right on the left
        top = 0.14 + 1.2 * (xx - cx) ** 2
        bottom = 0.80 - 0.6 * (xx - cx) ** 2 - 0.05 * (cx > 0.5)
        lung = (((xx - cx) / 0.17) ** 2 < 1) & (yy > top) & (yy < bottom) & ~heart & ~mediastinum
        truth[region] = lung
        img[lung] = 80 + 40 * (yy[lung] - 0.2)
    img[heart] = 190
    img[mediastinum] = np.maximum(img[mediastinum], 195)
    for cx in (0.32, 0.68):                                          # clavicles
        img[(abs(yy - (0.17 + 0.5 * (xx - cx) ** 2)) < 0.012) & (abs(xx - cx) < 0.16)] += 45
    for k in range(9):                                               # ribs, faint
        rib = abs(yy - 0.22 - k * 0.065 - 0.06 * np.cos((xx - 0.5) * 5)) < 0.01
        img[rib & body & ~heart & ~mediastinum] += 18
    img = cv2.GaussianBlur(img, (0, 0), side / 150)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img, truth


def png(array: np.ndarray) -> bytes:
    """PNG bytes of a grey image, or of a mask (as 0 / 255)."""
    a = array.astype(np.uint8) * 255 if array.dtype == bool else array
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":      # python tests/phantom.py OUT_DIR: the files the browser test uploads
    import sys
    from pathlib import Path

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    image, masks = chest_phantom()
    (out / "phantom.png").write_bytes(png(image))
    (out / "heart.png").write_bytes(png(masks["heart"]))
