"""Per-region measurements and the files a user downloads."""
from __future__ import annotations

import csv
import io
import json
import math
import zipfile

import numpy as np
from PIL import Image

from .metrics import all_metrics
from .regions import REGIONS


def region_measurements(probs: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                        spacing_mm: float | None = None,
                        truth: dict[str, np.ndarray] | None = None,
                        quality: dict[str, float | None] | None = None,
                        warning_threshold: float | None = None) -> list[dict]:
    """One row per region: area, the estimated Jaccard (``quality``, from
    :meth:`~cxr_dash.inference.Segmenter.estimate_quality`) and whether it falls under
    ``warning_threshold``, and, with ground truth, the overlap metrics
    (:func:`~cxr_dash.metrics.all_metrics`: Jaccard, Dice, contour distances, and the
    ground truth missed and the area added, as fractions of the ground truth). Contour
    distances are in mm when ``spacing_mm`` is known, else in pixels, their keys then
    ending ``_px`` instead of ``_mm``.

    No mean probability inside the mask: it is high by construction, whatever the
    mask is worth, and read as a confidence it misleads."""
    rows = []
    for region, mask in masks.items():
        n = int(mask.sum())
        estimate = (quality or {}).get(region)
        row = {"region": region, "name": REGIONS[region].display_name, "area_px": n,
               "area_cm2": round(n * spacing_mm ** 2 / 100, 2) if spacing_mm else None,
               "area_fraction": round(float(mask.mean()), 4),
               "estimated_jaccard": None if estimate is None else round(float(estimate), 3),
               "quality_warning": (None if estimate is None or warning_threshold is None
                                   else bool(estimate < warning_threshold))}
        if truth is not None and region in truth:
            t = truth[region]
            if t.shape != mask.shape:
                import cv2
                t = cv2.resize(t.astype(np.uint8), mask.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
            m = all_metrics(mask, t, spacing_mm or 1.0)
            if not spacing_mm:      # distances in pixels, and named so
                m = {k.replace("_mm", "_px"): v for k, v in m.items()}
            row.update({k: round(v, 4) for k, v in m.items()})
        rows.append(row)
    return rows


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    return png_bytes(mask.astype(np.uint8) * 255)


def masks_npz(masks: dict[str, np.ndarray], probs: dict[str, np.ndarray] | None = None) -> bytes:
    arrays = {f"mask_{r}": m.astype(bool) for r, m in masks.items()}
    if probs:
        arrays.update({f"prob_{r}": (p * 255).round().astype(np.uint8) for r, p in probs.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def mask_file_name(stem: str, region: str) -> str:
    """``<image>_<region>_mask.png``: what a region's mask is called as a file."""
    return f"{stem}_{region}_mask.png"


def masks_zip(masks: dict[str, np.ndarray], stem: str) -> bytes:
    return zip_bytes({mask_file_name(stem, r): mask_png(m) for r, m in masks.items()})


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A ZIP of ``files`` ({name inside the archive: contents}); PNGs and NPZs are
    compressed already and stored as they are."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            stored = name.endswith((".png", ".npz", ".zip"))
            z.writestr(name, data, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def rows_csv(rows: list[dict]) -> bytes:
    if not rows:
        return b""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _json_safe(value):
    """NaN/inf (an empty mask has no contour distance) become null: JSON has no NaN,
    and strict parsers reject the bare ``NaN`` Python writes by default."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def json_bytes(obj) -> bytes:
    """Strict JSON (NaN and inf as null), indented, as bytes for a download."""
    return json.dumps(_json_safe(obj), indent=1, allow_nan=False, default=float).encode()


def rows_json(rows: list[dict], **context) -> bytes:
    return json_bytes({**context, "regions": rows})
