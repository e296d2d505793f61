"""Pictures for people: overlays, outlines and heatmaps as RGB uint8 arrays."""
from __future__ import annotations

import cv2
import numpy as np

from .preprocess import normalise_intensity
from .regions import REGIONS


def display_rgb(image: np.ndarray, window: tuple[float, float] = (0.0, 1.0),
                local_contrast: bool = False) -> np.ndarray:
    """Any radiograph -> RGB uint8 with the same percentile window the models see.

    ``window``: (low, high) of that [0, 1] scale stretched to full contrast, a
    display-only window/level (the models always see the whole range).
    ``local_contrast``: contrast-limited adaptive histogram equalisation
    (CLAHE) after the window, for washed-out films such as the JSRT scans,
    where one global window cannot show lung detail and mediastinum at once.
    Display only as well."""
    grey = normalise_intensity(image)
    low, high = window
    if (low, high) != (0.0, 1.0) and high > low:
        grey = np.clip((grey - low) / (high - low), 0, 1)
    grey = (grey * 255).astype(np.uint8)
    if local_contrast:
        # Tiles of ~1/8 of the image and a clip limit of 2: the usual radiograph
        # setting, strong enough to lift rib and vessel detail without turning
        # film noise into texture.
        grey = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(grey)
    return np.repeat(grey[..., None], 3, axis=2)


def window_for_area(image: np.ndarray, box: tuple[int, int, int, int],
                    percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """The display window (:func:`display_rgb`'s ``window``) that stretches the area
    ``box`` = (y0, y1, x0, x1) of ``image`` to full contrast: its 1st and 99th
    percentiles on the models' [0, 1] scale, rounded outwards to 0.01, at least 0.02
    wide. Window/level from a region of interest, as radiograph viewers do it."""
    grey = normalise_intensity(image)
    y0, y1, x0, x1 = box
    h, w = grey.shape
    y0, y1 = sorted((min(max(int(y0), 0), h), min(max(int(y1), 0), h)))
    x0, x1 = sorted((min(max(int(x0), 0), w), min(max(int(x1), 0), w)))
    area = grey[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    if area.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(area, percentiles)
    lo, hi = float(np.floor(lo * 100) / 100), float(np.ceil(hi * 100) / 100)
    if hi - lo < 0.02:
        mid = min(max((lo + hi) / 2, 0.01), 0.99)
        lo, hi = mid - 0.01, mid + 0.01
    return round(max(lo, 0.0), 2), round(min(hi, 1.0), 2)


def outline(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    inner = cv2.erode(m, kernel, iterations=max(1, thickness))
    return (m - inner).astype(bool)


def overlay_masks(base_rgb: np.ndarray, masks: dict[str, np.ndarray], opacity: float = 0.4,
                  style: str = "fill", thickness: int | None = None,
                  colours: dict[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """Blend each region's mask in its registry colour; style "fill", "outline" or "both".

    Every fill is laid down before any outline: where regions overlap (a clavicle over
    a lung, the heart over a lung's edge) each outline stays on top in its own colour,
    where a later region's fill would otherwise tint an earlier one's outline."""
    out = base_rgb.astype(np.float32).copy()
    thickness = thickness or max(1, base_rgb.shape[0] // 300)
    colour_of = {r: np.array((colours or {}).get(r, REGIONS[r].colour), np.float32) for r in masks}
    if style in ("fill", "both"):
        for region, mask in masks.items():
            m = mask.astype(bool)
            out[m] = (1 - opacity) * out[m] + opacity * colour_of[region]
    if style in ("outline", "both"):
        for region, mask in masks.items():
            out[outline(mask, thickness)] = colour_of[region]
    return np.clip(out, 0, 255).astype(np.uint8)


# Against ground truth: where mask and truth agree, what the model missed, and what
# it added. Blue against orange stays apart for the common colour-vision
# deficiencies; these are the two Okabe-Ito hues no region uses (sky blue, orange),
# so an error map is never read as another region's mask; agreement is white, no
# hue at all.
AGREEMENT_COLOUR = (255, 255, 255)
MISSED_COLOUR = (86, 180, 233)
EXTRA_COLOUR = (230, 159, 0)


def overlay_errors(base_rgb: np.ndarray, predicted: np.ndarray, truth: np.ndarray,
                   opacity: float = 0.6) -> np.ndarray:
    """The difference view: agreement (mask and truth), truth the mask missed (false
    negatives) and area it added (false positives), each filled in its colour; the
    truth's area is agreement plus missed, its outline where those two end."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    out = base_rgb.astype(np.float32).copy()
    for where, colour in ((truth & predicted, AGREEMENT_COLOUR), (truth & ~predicted, MISSED_COLOUR),
                          (predicted & ~truth, EXTRA_COLOUR)):
        out[where] = (1 - opacity) * out[where] + opacity * np.array(colour, np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def draw_extent(rgb: np.ndarray, extent, colour=(255, 255, 255), thickness: int | None = None,
                tick: int | None = None) -> np.ndarray:
    """A horizontal measuring line over ``extent`` (:class:`cxr_dash.measure.Extent`: a
    row and its first and last pixel), ticked at both ends, edged in black so that it
    reads on bright bone and dark lung alike."""
    out = rgb.copy()
    h = out.shape[0]
    thickness = thickness or max(1, h // 300)
    tick = tick or max(4, h // 60)
    p0, p1 = (extent.x0, extent.row), (extent.x1, extent.row)
    for c, t in (((0, 0, 0), thickness + 2), (tuple(int(v) for v in colour), thickness)):
        cv2.line(out, p0, p1, c, t, cv2.LINE_AA)
        for x in (extent.x0, extent.x1):
            cv2.line(out, (x, extent.row - tick), (x, extent.row + tick), c, t, cv2.LINE_AA)
    return out


def zoom_box(shape: tuple[int, int], *masks: np.ndarray, margin: float = 0.15,
             min_side: int = 64) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square around everything in ``masks`` with ``margin`` of its
    side on each side, inside the image; the whole image when the masks are empty.
    Errors a few pixels wide along a clavicle are invisible at a fifth of the page."""
    h, w = shape[:2]
    union = np.zeros((h, w), bool)
    for m in masks:
        union |= m.astype(bool)
    if not union.any():
        return 0, h, 0, w
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    side = min(max(int(side * (1 + 2 * margin)), min_side), h, w)
    cy, cx = (rows[0] + rows[-1] + 1) // 2, (cols[0] + cols[-1] + 1) // 2
    y0, x0 = min(max(cy - side // 2, 0), h - side), min(max(cx - side // 2, 0), w - side)
    return int(y0), int(y0 + side), int(x0), int(x0 + side)


def colormap(values: np.ndarray, name: str = "inferno") -> np.ndarray:
    """[0, 1] float -> RGB uint8 through a matplotlib colour map."""
    from matplotlib import colormaps

    rgba = colormaps[name](np.clip(values, 0, 1))
    return (rgba[..., :3] * 255).astype(np.uint8)


def overlay_heatmap(base_rgb: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5,
                    name: str = "jet", floor: float = 0.05, full_at: float = 0.4) -> np.ndarray:
    """Heatmap (any size, [0, 1]) blended over the image. Opacity ramps from 0
    at ``floor`` to ``opacity`` at ``full_at``: weak values stay faint, so low-level
    noise does not paint the whole image the colour map's low end. An opacity
    above 1 (callers add to the display slider's) counts as 1: beyond it the
    blend would overshoot the colour map."""
    opacity = min(opacity, 1.0)
    h, w = base_rgb.shape[:2]
    heat = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = colormap(heat, name).astype(np.float32)
    ramp = np.clip((heat - floor) / max(full_at - floor, 1e-6), 0, 1)
    alpha = (opacity * ramp)[..., None]
    return np.clip((1 - alpha) * base_rgb + alpha * colour, 0, 255).astype(np.uint8)


def colour_bar(name: str = "jet", width: int = 256, height: int = 10) -> np.ndarray:
    """A horizontal strip of the colour map, low on the left: the legend of a heatmap."""
    return np.repeat(colormap(np.linspace(0, 1, width), name)[None], height, axis=0)


def downsample_for_display(image: np.ndarray, max_side: int = 1024) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)


def outline_box(rgb: np.ndarray, box: tuple[int, int, int, int], colour=(255, 255, 255),
                dash: int = 12) -> np.ndarray:
    """A dashed rectangle (y0, y1, x0, x1): where a model's field of view ends."""
    out = rgb.copy()
    y0, y1, x0, x1 = box
    h, w = out.shape[:2]
    y0, x0 = max(y0, 0), max(x0, 0)     # a box may reach past a non-square image's edges
    y1, x1 = min(y1, h) - 1, min(x1, w) - 1
    thick = max(1, min(h, w) // 300)
    for start in range(0, max(h, w), 2 * dash):
        seg_x = slice(x0 + start, min(x0 + start + dash, x1 + 1))
        seg_y = slice(y0 + start, min(y0 + start + dash, y1 + 1))
        out[y0:y0 + thick, seg_x] = colour
        out[max(y1 - thick + 1, 0):y1 + 1, seg_x] = colour
        out[seg_y, x0:x0 + thick] = colour
        out[seg_y, max(x1 - thick + 1, 0):x1 + 1] = colour
    return out
