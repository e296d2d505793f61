"""The one preprocessing path shared by training and inference.

A mismatch between how training images and uploaded images are prepared
silently ruins results, so both call :func:`prepare_input` and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Percentile window: robust to burned-in labels and collimator edges, and it
# maps the low-contrast SCR PNGs (mean grey ~200) and 12/16-bit DICOM or raw
# JSRT data onto the same range.
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5


@dataclass(frozen=True)
class FieldOfView:
    """The part of a radiograph a region's model sees: fractions of its height and width.

    A thin structure gains resolution when its model sees only where it can
    lie (a clavicle: the upper half, its own side) at the same input size and
    cost. The window is normalised with the whole image first, so a region's
    crop has the same intensities whatever its field of view. The default is
    the whole image; a manifest that names none means the whole image.

    Fractions are of the image's **square frame**: the square of side
    max(height, width) centred on it. The models were trained on square
    radiographs; a non-square one is completed to a square by repeating its
    border rows or columns rather than squashed, which would distort the
    anatomy's proportions (on SCR cases cropped to 4:5 and 5:4, squashing
    lost up to 0.06 Jaccard on a clavicle and 0.02 on the heart; see README).
    On a square image the frame is the image itself.
    """
    top: float = 0.0
    bottom: float = 1.0
    left: float = 0.0
    right: float = 1.0

    def __post_init__(self):
        if not (0.0 <= self.top < self.bottom <= 1.0 and 0.0 <= self.left < self.right <= 1.0):
            raise ValueError(f"field of view needs 0 <= top < bottom <= 1 and 0 <= left < right <= 1, "
                             f"got {self.as_list()}")

    @classmethod
    def parse(cls, value) -> "FieldOfView":
        """None or "full" -> whole image; [top, bottom, left, right]; or a FieldOfView."""
        if value is None or value == "full":
            return FULL_VIEW
        if isinstance(value, FieldOfView):
            return value
        values = [float(v) for v in value]
        if len(values) != 4:
            raise ValueError(f"field of view is [top, bottom, left, right], got {value!r}")
        return cls(*values)

    def as_list(self) -> list[float]:
        return [self.top, self.bottom, self.left, self.right]

    @property
    def is_full(self) -> bool:
        return self == FULL_VIEW

    def box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) in pixels of an image of ``shape``, never empty; on a
        non-square image it may reach past the image's edges into its square frame."""
        n, fy, fx = square_frame(shape)
        y0, x0 = int(round(self.top * n)), int(round(self.left * n))
        y1 = max(y0 + 1, int(round(self.bottom * n)))
        x1 = max(x0 + 1, int(round(self.right * n)))
        return (min(y0, n - 1) + fy, min(y1, n) + fy, min(x0, n - 1) + fx, min(x1, n) + fx)

    def crop(self, image: np.ndarray, fill: str = "edge") -> np.ndarray:
        """The field of view of ``image`` (2-D or H x W x C); where it reaches past the
        image, ``fill`` "edge" repeats the border pixels (images) and "zero" pads with
        0 (masks)."""
        h, w = image.shape[:2]
        y0, y1, x0, x1 = self.box((h, w))
        pads = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)))
        if any(any(p) for p in pads):
            pads += ((0, 0),) * (image.ndim - 2)
            image = np.pad(image, pads, mode="edge") if fill == "edge" else np.pad(image, pads)
            y0, y1, x0, x1 = y0 + pads[0][0], y1 + pads[0][0], x0 + pads[1][0], x1 + pads[1][0]
        return image[y0:y1, x0:x1]

    def describe(self) -> str:
        if self.is_full:
            return "whole image"
        return (f"rows {self.top:.0%}–{self.bottom:.0%}, columns {self.left:.0%}–{self.right:.0%} "
                "of the image")


FULL_VIEW = FieldOfView()


def square_frame(shape: tuple[int, int]) -> tuple[int, int, int]:
    """(side, y, x): the square of side max(h, w) centred on an image of ``shape``, its
    top-left corner at (y, x) in the image's pixels (zero or negative)."""
    h, w = shape[:2]
    n = max(h, w)
    return n, -((n - h) // 2), -((n - w) // 2)


# Uniform bands along an edge (a padded export, a letterboxed non-square image,
# a film scan's margin) shrink the anatomy, which the models saw filling the
# frame. The SCR radiographs carry such bands themselves, up to 3.9% of a side
# (a margin at the bottom or right of 121 of the 200 development cases): bands
# narrower than BORDER_MIN_FRACTION are part of what the models learned and stay.
BORDER_MIN_FRACTION = 0.06
# A line belongs to a band when its 2nd-98th percentile spread, and its median's
# distance from the edge line's median, are within this fraction of the image's
# intensity range (0.5th-99.5th percentile): film grain and JPEG noise pass,
# anatomy and burned-in text do not.
BORDER_TOLERANCE = 0.03
_BORDER_THUMB_SIDE = 512     # measured on a thumbnail: fast, and area averaging calms noise


def content_box(image: np.ndarray, min_fraction: float = BORDER_MIN_FRACTION,
                tolerance: float = BORDER_TOLERANCE) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the image without the uniform bands along its edges that are at
    least ``min_fraction`` of its height (top, bottom) or width (left, right).

    The whole image when it has none, and when what would remain is under a quarter
    of a side (a blank or nearly blank image: nothing sensible to crop to).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2)
    h, w = img.shape
    full = (0, h, 0, w)
    scale = min(1.0, _BORDER_THUMB_SIDE / max(h, w))
    thumb = img if scale == 1.0 else cv2.resize(
        img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(thumb, (LOW_PERCENTILE, HIGH_PERCENTILE))
    if hi - lo < 1e-6:
        return full
    limit = tolerance * (hi - lo)

    def flat_lines(lines: np.ndarray, level: float) -> np.ndarray:
        p_low, p_high = np.percentile(lines, (2, 98), axis=1)
        return (p_high - p_low <= limit) & (np.abs(np.median(lines, axis=1) - level) <= limit)

    def band(lines: np.ndarray, full_lines: np.ndarray) -> int:
        """How many of ``full_lines``, from the edge, are flat and at the edge's level:
        counted on the thumbnail's ``lines``, then refined line by line at full size."""
        half = lines[: max(1, (len(lines) + 1) // 2)]     # a band never spans the middle
        level = float(np.median(half[0]))
        flat = flat_lines(half, level)
        n = len(flat) if flat.all() else int(np.argmin(flat))
        # The band's last thumbnail line is wholly inside it (the line that mixes band
        # and anatomy under area averaging is not flat): converted down, n never over-crops.
        n = int(n * len(full_lines) / len(lines))
        if n:
            step = int(np.ceil(len(full_lines) / len(lines))) + 1
            more = flat_lines(full_lines[n:n + step], level)
            n += len(more) if more.all() else int(np.argmin(more))
        return n

    top, bottom = band(thumb, img), band(thumb[::-1], img[::-1])
    left, right = band(thumb.T, img.T), band(thumb.T[::-1], img.T[::-1])
    top, bottom = (n if n >= min_fraction * h else 0 for n in (top, bottom))
    left, right = (n if n >= min_fraction * w else 0 for n in (left, right))
    if h - top - bottom < h / 4 or w - left - right < w / 4:
        return full
    return top, h - bottom, left, w - right


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


# How a region's model input gets its intensities, recorded per region in the
# manifest (``preprocessing``), so that a model set can move region by region.
# "percentile": the window above, nothing more (every model trained before the
# record existed). "percentile+clahe": then contrast-limited adaptive histogram
# equalisation in model space, which maps other scanners' exposure and
# post-processing (another tone curve, edge enhancement, a darker or flatter
# export) onto one local contrast. It runs last, after the resize in inference
# and after augmentation in training, so that training sees what a user's
# image becomes and the photometric jitter it learns under is what CLAHE undoes.
INTENSITY_METHODS = ("percentile", "percentile+clahe")
DEFAULT_INTENSITY = "percentile"
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = 8          # tiles per side, whatever the input size: same anatomy per tile
# 8 bits, CLAHE's usual form: OpenCV scales the clip limit by the histogram's size,
# and over 65536 bins a 32 x 32 tile's limit rounds to one count, which is no limit.
_CLAHE_LEVELS = 256


def check_intensity(method: str | None) -> str:
    """The method's name (None: the default), or ValueError for an unknown one."""
    method = method or DEFAULT_INTENSITY
    if method not in INTENSITY_METHODS:
        raise ValueError(f"unknown intensity method {method!r}; one of {', '.join(INTENSITY_METHODS)}")
    return method


def finish_intensity(small: np.ndarray, method: str | None = DEFAULT_INTENSITY) -> np.ndarray:
    """The model-space intensity step of ``method`` on (S, S) float images in [0, 1]
    (a batch (N, S, S) too); float32. The one function training and inference share."""
    method = check_intensity(method)
    small = np.asarray(small, np.float32)
    if method == "percentile":
        return small
    if small.ndim == 3:
        return np.stack([finish_intensity(x, method) for x in small])
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=(CLAHE_TILES, CLAHE_TILES))
    levels = np.round(np.clip(small, 0.0, 1.0) * (_CLAHE_LEVELS - 1)).astype(np.uint8)
    return clahe.apply(levels).astype(np.float32) / (_CLAHE_LEVELS - 1)


def model_space_image(image: np.ndarray, size: int, view: FieldOfView | None = None) -> np.ndarray:
    """Radiograph -> (size, size) float32 in [0, 1] before the model-space intensity step:
    the whole image's percentile window, then the field of view of its square frame (a
    non-square image's border repeated, not squashed), resized. Training packs store this."""
    view = view or FULL_VIEW
    return resize_image(view.crop(normalise_intensity(image)), size).astype(np.float32)


def prepare_input(image: np.ndarray, size: int, view: FieldOfView | None = None,
                  intensity: str | None = DEFAULT_INTENSITY) -> np.ndarray:
    """Radiograph (any size, any dtype) -> model input of shape (size, size, 3), float32 [0, 1]:
    :func:`model_space_image`, then :func:`finish_intensity` of the region's method."""
    small = finish_intensity(model_space_image(image, size, view), intensity)
    return np.repeat(small[..., None], 3, axis=2)


def resize_mask(mask: np.ndarray, size: int, view: FieldOfView | None = None) -> np.ndarray:
    """Binary mask -> its field of view at size x size, binary uint8 (area fraction >= 0.5)."""
    part = (view or FULL_VIEW).crop(np.asarray(mask), fill="zero")
    m = cv2.resize(part.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return (m >= 0.5).astype(np.uint8)


def upsample_probability(prob: np.ndarray, shape: tuple[int, int],
                         view: FieldOfView | None = None) -> np.ndarray:
    """Model-space map (probability, heatmap) -> the original image's size, float32 in [0, 1]:
    bilinear into the field of view's box, zero outside it (the model never looked there)."""
    view = view or FULL_VIEW
    h, w = shape[:2]
    y0, y1, x0, x1 = view.box((h, w))
    if (y0, y1, x0, x1) == (0, h, 0, w) and prob.shape == (h, w):
        return np.clip(prob.astype(np.float32), 0.0, 1.0)
    part = np.clip(cv2.resize(prob.astype(np.float32), (x1 - x0, y1 - y0),
                              interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    if (y0, y1, x0, x1) == (0, h, 0, w):
        return part
    # Paste the part of the box that lies on the image (a box may reach into the square frame).
    out = np.zeros((h, w), np.float32)
    oy0, oy1, ox0, ox1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    if oy1 > oy0 and ox1 > ox0:
        out[oy0:oy1, ox0:ox1] = part[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0]
    return out
