"""Acquisition and export differences: how much each costs, and whether the app warns.

    CXR_DATA_DIR=... python scripts/acquisition.py [--models weights] [--cases 24]

The models were trained on one export of one database: JSRT films digitised
at 12 bits, converted to 8-bit PNGs with a wide window. A user's radiograph
arrives through other routes (the raw 12-bit ``.IMG`` at 2048 px, a 16-bit
PNG, a JPEG), with another tone curve or window, noisier or at a lower
resolution. This re-exports held-out SCR cases those ways, runs ``predict``
through the project's own reader (``read_image``) where a file format is
involved, and scores every region at 1024 x 1024 against the ground truth.
It also counts the cases where the app's checks (``cxr_dash.quality``:
the plausibility of the masks, a clipped grey scale) would have shown a warning: a route that costs
accuracy should be one the app says something about. Prints a table.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

from cxr_dash.imaging import read_image


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def _uint8(unit: np.ndarray) -> np.ndarray:
    return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


def jsrt_img_route(image: np.ndarray) -> np.ndarray:
    """The original distribution's route: 2048 x 2048, 12 bits, stored inverted
    (high values dark), big-endian, no header; read back by ``read_image``."""
    up = cv2.resize(_unit(image), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    raw = (4095 - np.clip(np.round(up * 4095), 0, 4095)).astype(">u2")
    return read_image(raw.tobytes(), name="case.IMG").pixels


def png16_route(image: np.ndarray) -> np.ndarray:
    _, data = cv2.imencode(".png", (image.astype(np.uint16) * 257))
    return read_image(data.tobytes(), name="case.png").pixels


def jpeg_route(quality: int):
    def route(image: np.ndarray) -> np.ndarray:
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return read_image(data.tobytes(), name="case.jpg").pixels
    return route


def gamma(g: float):
    return lambda image: _uint8(_unit(image) ** g)


def narrow_window(image: np.ndarray, low: float = 5, high: float = 95) -> np.ndarray:
    """A high-contrast export: the band between two percentiles stretched, the tails clipped."""
    lo, hi = np.percentile(image, [low, high])
    return _uint8((image.astype(np.float32) - lo) / max(hi - lo, 1.0))


def noisy(image: np.ndarray, sd: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _uint8(_unit(image) + rng.normal(0, sd, image.shape).astype(np.float32))


def low_resolution(side: int):
    """A small export (e.g. a thumbnail or a screen grab), upscaled back."""
    def route(image: np.ndarray) -> np.ndarray:
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, image.shape[::-1], interpolation=cv2.INTER_CUBIC)
    return route


def inverted(image: np.ndarray) -> np.ndarray:
    return 255 - image


# (name, what it does to a stored 1024 px, 8-bit case). The augmentation the
# models were trained with spans gamma 0.7-1.5 and contrast 0.8-1.2: the gamma
# rows sit outside it on purpose.
ROUTES = (("as stored (8-bit PNG)", lambda image: image),
          ("JSRT .IMG route (2048 px, 12-bit, inverted storage)", jsrt_img_route),
          ("16-bit PNG", png16_route),
          ("JPEG, quality 30", jpeg_route(30)),
          ("gamma 0.5 (brighter mid-tones)", gamma(0.5)),
          ("gamma 2.0 (darker mid-tones)", gamma(2.0)),
          ("narrow window (5th-95th percentile)", narrow_window),
          ("dark tail clipped (darkest 2% to black)", lambda image: narrow_window(image, 2, 100)),
          ("dark tail clipped (darkest 5% to black)", lambda image: narrow_window(image, 5, 100)),
          ("bright tail clipped (brightest 5% to white)", lambda image: narrow_window(image, 0, 95)),
          ("Gaussian noise, sd 3% of range", noisy),
          ("256 px export, upscaled", low_resolution(256)),
          ("grey scale inverted, not corrected", inverted))


def main(argv=None):
    from cxr_dash.cli import held_out_sample, measurement_setup
    from cxr_dash.metrics import jaccard
    from cxr_dash.quality import exposure_warnings, plausibility_warnings

    args, seg, dataset = measurement_setup(__doc__.splitlines()[0], argv)
    cases = held_out_sample(seg, dataset, args.cases)
    scores: dict[tuple, list[float]] = {}
    warned: dict[str, list[bool]] = {}
    for i, case_id in enumerate(cases, 1):
        case = dataset.load_case(case_id)
        side = case.image.shape[::-1]
        for name, route in ROUTES:
            image = route(case.image)
            probs = seg.predict(image)
            warns = plausibility_warnings(image, seg.masks(probs), probs) + exposure_warnings(image)
            warned.setdefault(name, []).append(bool(warns))
            # Scored at the masks' resolution whatever size the route produced.
            probs = {r: cv2.resize(p, side, interpolation=cv2.INTER_AREA) if p.shape != case.image.shape
                     else p for r, p in probs.items()}
            for region, mask in seg.masks(probs).items():
                scores.setdefault((name, region), []).append(jaccard(mask, case.masks[region]))
        print(f"{i}/{len(cases)} {case_id}", file=sys.stderr, flush=True)
    regions = seg.regions
    stored = ROUTES[0][0]
    print(f"{len(cases)} cases no model trained on; mean Jaccard at 1024 x 1024; the cases the app "
          "would warn about; the largest loss against the stored case, any region, in a case it "
          "would not warn about\n")
    print("| route | " + " | ".join(regions) + " | warned | largest loss unwarned |")
    print("| --- | " + " | ".join("---" for _ in regions) + " | --- | --- |")
    for name, _ in ROUTES:
        losses = [max(scores[stored, r][k] - scores[name, r][k] for r in regions)
                  for k, w in enumerate(warned[name]) if not w]
        print(f"| {name} | " + " | ".join(f"{np.mean(scores[name, r]):.3f}" for r in regions) +
              f" | {sum(warned[name])} of {len(cases)} | " +
              (f"{max(losses):.3f}" if losses else "—") + " |")

if __name__ == "__main__":
    main()
