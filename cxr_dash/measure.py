"""Per-region statistics of binary masks, and the cardiothoracic ratio.

    region_statistics(masks, spacing_mm) -> {region: {area, centroid, bounding box, widest extent}}
    cardiothoracic_ratio(masks) -> CardiothoracicRatio | None

Positions are in pixels of the masks given (x from the image's left edge, y from
its top, the first pixel 0), so they line up with the picture the masks came
with; lengths and areas are also given in mm and cm² when the pixel spacing is
known. The widest horizontal extent of a mask is measured along one row: the
longest span, on any row, from the mask's leftmost to its rightmost pixel.

The cardiothoracic ratio (CTR) is the heart's widest extent over the widest
extent of the two lungs together (per row, from the leftmost pixel of either
lung to the rightmost of either), the lung masks standing in for the inner
margin of the ribs. On a PA radiograph a CTR above 0.5 is the usual mark of an
enlarged heart; it is a measurement, not a diagnosis.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LUNGS = ("right_lung", "left_lung")


@dataclass(frozen=True)
class Extent:
    """A horizontal span along one row: pixels ``x0`` to ``x1`` (both inside) of ``row``."""
    row: int
    x0: int
    x1: int

    @property
    def width_px(self) -> int:
        return self.x1 - self.x0 + 1


def widest_extent(mask: np.ndarray) -> Extent | None:
    """The longest horizontal span of ``mask`` along one row (the topmost where rows
    tie); None for an empty mask."""
    m = np.asarray(mask, bool)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    sub = m[rows]
    first = sub.argmax(axis=1)
    last = m.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    k = int(np.argmax(last - first))
    return Extent(int(rows[k]), int(first[k]), int(last[k]))


def _mm(px: float, spacing_mm: float | None) -> float | None:
    return round(px * spacing_mm, 2) if spacing_mm else None


def mask_statistics(mask: np.ndarray, spacing_mm: float | None = None) -> dict:
    """One mask's area, centroid, bounding box and widest horizontal extent, as flat
    JSON-ready values (None where a mask is empty, or a length's spacing unknown).

    Keys: ``area_px``, ``area_cm2``, ``centroid_x``, ``centroid_y``, ``bbox_x0``,
    ``bbox_y0``, ``bbox_x1``, ``bbox_y1`` (inclusive), ``bbox_width_px``,
    ``bbox_height_px``, ``widest_row``, ``widest_x0``, ``widest_x1``, ``widest_px``,
    ``widest_mm``."""
    m = np.asarray(mask, bool)
    n = int(m.sum())
    out = {"area_px": n, "area_cm2": round(n * spacing_mm ** 2 / 100, 2) if spacing_mm else None}
    keys = ("centroid_x", "centroid_y", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
            "bbox_width_px", "bbox_height_px", "widest_row", "widest_x0", "widest_x1",
            "widest_px", "widest_mm")
    if n == 0:
        return {**out, **{k: None for k in keys}}
    ys, xs = np.nonzero(m)
    extent = widest_extent(m)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return {**out, "centroid_x": round(float(xs.mean()), 1), "centroid_y": round(float(ys.mean()), 1),
            "bbox_x0": x0, "bbox_y0": y0, "bbox_x1": x1, "bbox_y1": y1,
            "bbox_width_px": x1 - x0 + 1, "bbox_height_px": y1 - y0 + 1,
            "widest_row": extent.row, "widest_x0": extent.x0, "widest_x1": extent.x1,
            "widest_px": extent.width_px, "widest_mm": _mm(extent.width_px, spacing_mm)}


def region_statistics(masks: dict[str, np.ndarray], spacing_mm: float | None = None) -> dict[str, dict]:
    """{region: :func:`mask_statistics`} for every mask, in the order given."""
    return {region: mask_statistics(mask, spacing_mm) for region, mask in masks.items()}


@dataclass(frozen=True)
class CardiothoracicRatio:
    ratio: float
    heart: Extent        # the heart's widest horizontal extent
    thorax: Extent       # the widest extent of the two lungs together

    def as_dict(self, spacing_mm: float | None = None) -> dict:
        """JSON-ready: the ratio, both extents, and their widths (in mm when known)."""
        return {"ratio": round(self.ratio, 4),
                "heart": {**asdict(self.heart), "width_px": self.heart.width_px,
                          "width_mm": _mm(self.heart.width_px, spacing_mm)},
                "thorax": {**asdict(self.thorax), "width_px": self.thorax.width_px,
                           "width_mm": _mm(self.thorax.width_px, spacing_mm)}}


def cardiothoracic_ratio(masks: dict[str, np.ndarray]) -> CardiothoracicRatio | None:
    """Heart width over thoracic width (see the module's text); None unless the heart
    and both lungs are there and not empty. Independent of the pixel spacing."""
    if "heart" not in masks or any(r not in masks for r in LUNGS):
        return None
    heart = widest_extent(masks["heart"])
    lungs = [np.asarray(masks[r], bool) for r in LUNGS]
    if heart is None or not all(m.any() for m in lungs):
        return None
    thorax = widest_extent(lungs[0] | lungs[1])
    return CardiothoracicRatio(heart.width_px / thorax.width_px, heart, thorax)


def region_at(masks: dict[str, np.ndarray], probs: dict[str, np.ndarray] | None,
              x: float, y: float) -> str | None:
    """The region at pixel (x, y): of the masks that hold it, the one the models are
    surest of there (regions overlap: a clavicle lies over a lung); None outside
    every mask or outside the image."""
    col, row = int(np.floor(x)), int(np.floor(y))
    holding = [r for r, m in masks.items()
               if 0 <= row < m.shape[0] and 0 <= col < m.shape[1] and m[row, col]]
    if not holding:
        return None
    if probs is None:
        return holding[0]
    return max(holding, key=lambda r: float(probs[r][row, col]))
