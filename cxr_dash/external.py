"""Score a model set's lungs on radiographs from another hospital.

An external set is a folder of ``images/<name>.png`` and ``masks/<name>.png``
(both lungs in one mask, as the Shenzhen and Montgomery sets publish them):
the shipped per-lung models are scored as ``left_lung | right_lung`` against
that one mask, at the mask's resolution, the way a user's radiograph would be
segmented (:meth:`Segmenter.predict`, post-processed masks). Cases are grouped
by the digit after their name's last underscore (Shenzhen: ``_0`` normal,
``_1`` abnormal).

Where the reference mask falls into two large pieces, one on each half of the
image, each lung is also scored on its own (the patient's right lung is the
piece on the image's left): a single lung's model can then be compared
between recipes without its counterpart.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from .imaging import read_image, read_mask
from .metrics import jaccard, dice, summarise

LUNGS = ("left_lung", "right_lung")
GROUP_PATTERN = re.compile(r"_(\d+)$")
GROUP_NAMES = {"0": "normal", "1": "abnormal"}
EXTERNAL_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".gif", ".bmp", ".tif", ".tiff")
# A reference piece smaller than this share of the lungs' area is an island, not a lung.
MIN_LUNG_SHARE = 0.15


@dataclass(frozen=True)
class ExternalCase:
    name: str
    image_path: Path
    mask_path: Path

    @property
    def group(self) -> str:
        found = GROUP_PATTERN.search(self.name)
        return found.group(1) if found else "all"


def find_cases(root: str | Path) -> list[ExternalCase]:
    """The cases of an external folder: every image with a mask of the same name."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise FileNotFoundError(f"{root} needs images/ and masks/ folders (a mask per image, "
                                "same file name, both lungs in one mask)")
    by_stem = {p.stem: p for p in masks.iterdir() if p.suffix.lower() in EXTERNAL_SUFFIXES}
    cases = [ExternalCase(p.stem, p, by_stem[p.stem]) for p in sorted(images.iterdir())
             if p.suffix.lower() in EXTERNAL_SUFFIXES and p.stem in by_stem]
    if not cases:
        raise FileNotFoundError(f"no image under {images} has a mask of the same name in {masks}")
    return cases


def split_lungs(union: np.ndarray) -> dict[str, np.ndarray] | None:
    """{lung: mask} from a two-lung mask, or None when it is not two clear pieces, one
    per half of the image. Patient's sides: the right lung lies on the image's left."""
    labels, n = ndimage.label(union)
    if n < 2:
        return None
    sizes = ndimage.sum(union, labels, index=np.arange(1, n + 1))
    order = np.argsort(sizes)[::-1][:2]
    if sizes[order[1]] < MIN_LUNG_SHARE * union.sum():
        return None
    pieces = [labels == (k + 1) for k in order]
    centres = [np.nonzero(p)[1].mean() for p in pieces]
    middle = union.shape[1] / 2
    if not (min(centres) < middle < max(centres)):
        return None
    image_left, image_right = (pieces if centres[0] < centres[1] else pieces[::-1])
    return {"right_lung": image_left, "left_lung": image_right}


def score_case(probabilities: dict[str, np.ndarray], truth: np.ndarray,
               threshold: float = 0.5) -> dict:
    """One case's row: the lungs' union against the reference, and each lung where the
    reference splits into two; probabilities at the image's size (``predict``'s)."""
    shape = truth.shape
    masks = {}
    for lung in LUNGS:
        prob = probabilities[lung]
        if prob.shape != shape:
            prob = cv2.resize(prob, shape[::-1], interpolation=cv2.INTER_AREA)
        masks[lung] = prob >= threshold
    union = masks["left_lung"] | masks["right_lung"]
    row = {"jaccard": jaccard(union, truth), "dice": dice(union, truth),
           "area_ratio": float(union.sum() / max(1, truth.sum()))}
    sides = split_lungs(truth)
    for lung in LUNGS:
        row[f"{lung}_jaccard"] = jaccard(masks[lung], sides[lung]) if sides else None
    return row


def evaluate_external(seg, root: str | Path, limit: int | None = None, tta: bool | None = None,
                      progress=None) -> list[dict]:
    """[per-case row] of the set's lungs on an external folder (see the module's docs)."""
    missing = [lung for lung in LUNGS if lung not in seg.regions]
    if missing:
        raise ValueError(f"the model set has no {' or '.join(missing)} model: an external "
                         "set's lung masks need both lungs")
    cases = find_cases(root)[: limit or None]
    rows = []
    for i, case in enumerate(cases):
        image = read_image(case.image_path).pixels
        truth = read_mask(case.mask_path)
        probabilities = seg.predict(image, LUNGS, tta=tta)
        rows.append({"case": case.name, "group": case.group, **score_case(probabilities, truth)})
        if progress:
            progress(i + 1, len(cases), case.name)
    return rows


def summarise_external(rows: list[dict]) -> dict[str, dict]:
    """{"all" and each group: {metric: summary}} for the union and each lung."""
    groups = {"all": rows}
    for row in rows:
        if row["group"] != "all":
            groups.setdefault(row["group"], []).append(row)
    keys = ("jaccard", "dice", "area_ratio", "left_lung_jaccard", "right_lung_jaccard")
    return {g: {k: summarise([r[k] for r in rs if r[k] is not None]) for k in keys}
            for g, rs in groups.items()}


def group_label(group: str) -> str:
    return "all" if group == "all" else f"{GROUP_NAMES.get(group, 'group')} (_{group})"


def external_table(summary: dict[str, dict], title: str) -> str:
    lines = [f"### {title}", "",
             "| cases | lungs Jaccard | median | Dice | predicted / true area | left lung | right lung | n |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group, s in summary.items():
        def cell(k):
            return "—" if not s[k]["n"] else f"{s[k]['mean']:.3f}"
        lines.append(f"| {group_label(group)} | {s['jaccard']['mean']:.3f} ± {s['jaccard']['sd']:.3f} | "
                     f"{s['jaccard']['median']:.3f} | {cell('dice')} | {cell('area_ratio')} | "
                     f"{cell('left_lung_jaccard')} | {cell('right_lung_jaccard')} | "
                     f"{s['jaccard']['n']} |")
    lines.append("")
    lines.append("Lungs: left | right against the one reference mask at its resolution; "
                 "each lung alone on the cases whose reference splits into two lungs "
                 f"({summary['all']['left_lung_jaccard']['n']} of {summary['all']['jaccard']['n']}).")
    return "\n".join(lines) + "\n"
