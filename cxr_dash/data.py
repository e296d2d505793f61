"""The SCR / JSRT dataset: discovery, the odd/even split, and packed arrays.

Reads both the development copy (``images/*.png``, ``masks/<region>/*.gif``)
and the original distribution (JSRT ``*.IMG``, SCR mask folders named with
spaces). The data folder comes from ``CXR_DATA_DIR``; nothing here is ever
written inside the project.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .imaging import read_image, read_mask
from .preprocess import FULL_VIEW, FieldOfView, finish_intensity, model_space_image, resize_mask
from .regions import REGION_KEYS, region_folder_names

CASE_PATTERN = re.compile(r"^(JPC(?:LN|NN))(\d{3})$", re.IGNORECASE)
IMAGE_SUFFIXES = (".png", ".img", ".dcm", ".jpg", ".jpeg")
MASK_SUFFIXES = (".gif", ".png")
SCR_MASK_SPACING_MM = 0.35   # SCR masks are 1024 x 1024 at 0.35 mm
FOLDS = ("odd", "even")
MONITOR_CASE = "JPCLN104"    # the study's training-progression case
SHOWCASE_CASE = "JPCLN034"   # the study's results case
# What a training run may train on: one SCR fold (validated on the other), every
# case, or the odd fold plus half of the even one (validated on the other half).
SPLIT_DESCRIPTIONS = {"odd": "the odd fold", "even": "the even fold", "all": "every case",
                      "odd+half-even": "the odd fold and half of the even fold"}
TRAINING_SPLITS = tuple(SPLIT_DESCRIPTIONS)


def data_dir_from_env() -> Path | None:
    value = os.environ.get("CXR_DATA_DIR", "").strip()
    return Path(value) if value else None


def case_number(case_id: str) -> int:
    m = CASE_PATTERN.match(case_id)
    if not m:
        raise ValueError(f"{case_id!r} is not a JSRT case id (JPCLNnnn / JPCNNnnn)")
    return int(m.group(2))


def case_fold(case_id: str) -> str:
    """The SCR protocol's fold: parity of the case number (JPCLN001 is odd)."""
    return "odd" if case_number(case_id) % 2 else "even"


def split_folds(case_ids) -> dict[str, list[str]]:
    folds: dict[str, list[str]] = {"odd": [], "even": []}
    for c in sorted(case_ids):
        folds[case_fold(c)].append(c)
    return folds


def other_fold(fold: str) -> str:
    return {"odd": "even", "even": "odd"}[fold]


def training_split(case_ids, split: str) -> tuple[list[str], list[str]]:
    """(training cases, validation cases) of a training split (``TRAINING_SPLITS``).

    ``odd+half-even`` adds every other even case (sorted; the first, third, ...)
    to the odd fold and holds out the rest, so that a model can learn from more
    cases and still be measured on cases it never saw. The study's showcase and
    monitor cases (JPCLN034, JPCLN104) always stay on the held-out side, so the
    app's showcase is never a training case. ``all`` validates on its own
    training cases (nothing is held out).
    """
    folds = split_folds(case_ids)
    if split in FOLDS:
        return list(folds[split]), list(folds[other_fold(split)])
    if split == "all":
        every = sorted(folds["odd"] + folds["even"])
        return every, list(every)
    if split == "odd+half-even":
        kept_out = {SHOWCASE_CASE, MONITOR_CASE}
        added = {c for c in folds["even"][0::2] if c.upper() not in kept_out}
        held_out = [c for c in folds["even"] if c not in added]
        return sorted([*folds["odd"], *added]), held_out
    raise ValueError(f"unknown training split {split!r}: one of {', '.join(TRAINING_SPLITS)}")


def describe_validation(training_cases, validation_cases) -> str:
    """How a run was validated, in words: a run on ``all`` validates on its own
    training cases, and its validation figures then measure fit, not
    generalisation; the caption must say so rather than count them as held out."""
    training = set(training_cases)
    held_out = [c for c in validation_cases if c not in training]
    seen = len(validation_cases) - len(held_out)
    if not validation_cases:
        return "no validation cases"
    if not held_out:
        return f"validated on {seen} of its own training cases: nothing held out"
    if seen:
        return f"{len(held_out)} held-out validation cases and {seen} of its training cases"
    return f"{len(held_out)} held-out validation cases"


@dataclass
class Case:
    case_id: str
    image: np.ndarray              # display orientation, 2-D
    masks: dict[str, np.ndarray]   # region -> bool, at the masks' resolution (1024)
    pixel_spacing_mm: float | None


class SCRDataset:
    """Cases found under a root folder, in either layout.

    The original SCR distribution splits each region's masks over fold folders
    (``fold1/masks/heart``, ``fold2/masks/heart``; "left clavicle" or
    "left_clavicle"), so every folder named after a region is searched. A case
    whose mask is in two of them keeps the first, in sorted path order (a copy
    of the data next to the original must not make the folder unusable).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder {self.root} does not exist")
        entries = sorted(self.root.rglob("*"))
        folder_names = {region: {n.lower() for n in region_folder_names(region)}
                        for region in REGION_KEYS}
        every_mask_folder_name = set().union(*folder_names.values())
        self.image_paths: dict[str, Path] = {}
        for path in entries:
            if path.suffix.lower() in IMAGE_SUFFIXES and CASE_PATTERN.match(path.stem):
                if path.parent.name.lower() in every_mask_folder_name:
                    continue  # a PNG mask, not an image
                # Prefer the development PNG over a raw .IMG of the same case.
                key = path.stem.upper()
                if key not in self.image_paths or path.suffix.lower() == ".png":
                    self.image_paths[key] = path
        self.mask_dirs: dict[str, list[Path]] = {
            region: [d for d in entries if d.name.lower() in names and d.is_dir()]
            for region, names in folder_names.items()}
        self.mask_paths: dict[str, dict[str, Path]] = {
            region: _index_masks(dirs) for region, dirs in self.mask_dirs.items()}
        if not self.image_paths:
            raise FileNotFoundError(f"no JSRT images (JPCLNnnn / JPCNNnnn) found under {self.root}")

    @property
    def case_ids(self) -> list[str]:
        return sorted(self.image_paths)

    def cases_with_masks(self, regions=REGION_KEYS) -> list[str]:
        return [c for c in self.case_ids if all(self.mask_path(c, r) for r in regions)]

    def folds(self) -> dict[str, list[str]]:
        return split_folds(self.cases_with_masks())

    def mask_path(self, case_id: str, region: str) -> Path | None:
        return self.mask_paths.get(region, {}).get(case_id.upper())

    def load_image(self, case_id: str):
        return read_image(self.image_paths[case_id.upper()])

    def load_mask(self, case_id: str, region: str) -> np.ndarray:
        p = self.mask_path(case_id, region)
        if p is None:
            raise FileNotFoundError(f"no {region} mask for {case_id}")
        return read_mask(p)

    def load_case(self, case_id: str, regions=REGION_KEYS) -> Case:
        radiograph = self.load_image(case_id)
        masks = {r: self.load_mask(case_id, r) for r in regions if self.mask_path(case_id, r)}
        spacing = SCR_MASK_SPACING_MM
        return Case(case_id.upper(), radiograph.pixels, masks, spacing)


def _index_masks(folders: list[Path]) -> dict[str, Path]:
    """{case id: mask file} over ``folders`` in order: the first folder holding a
    case wins, and within a folder a GIF (SCR's own format) wins over a PNG."""
    found: dict[str, Path] = {}
    for folder in folders:
        masks = [p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES
                 and CASE_PATTERN.match(p.stem) and p.is_file()]
        for path in sorted(masks, key=lambda p: (MASK_SUFFIXES.index(p.suffix.lower()), p.name)):
            found.setdefault(path.stem.upper(), path)
    return found


def default_cache_dir() -> Path:
    return Path(os.environ.get("CXR_CACHE_DIR", Path.home() / ".cache" / "cxr_dash"))


def pack(dataset: "SCRDataset | TrainingPack", case_ids, size: int, regions=REGION_KEYS,
         cache: bool = True, view: FieldOfView | None = None) -> dict[str, np.ndarray]:
    """Model-ready arrays for training: images (N, S, S) float16 in [0, 1] and
    masks (N, R, S, S) uint8 of the field of view ``view`` (default: the whole
    image), built with :func:`~cxr_dash.preprocess.model_space_image`: the model
    input before its region's model-space intensity step (:func:`model_inputs`).

    Cached outside the project (``CXR_CACHE_DIR``, default ``~/.cache/cxr_dash``):
    the arrays are derived from the data and must never be committed.
    """
    case_ids = [c.upper() for c in case_ids]
    regions = tuple(regions)
    view = view or FULL_VIEW
    if isinstance(dataset, TrainingPack):
        return dataset.select(case_ids, size, regions, view)
    # Whole-image packs keep their original key, so existing caches stay valid.
    view_key = "" if view.is_full else f"|{view.as_list()}"
    key = hashlib.sha1(
        f"{dataset.root.resolve()}|{size}|{regions}|{case_ids}|v1{view_key}".encode()).hexdigest()[:16]
    path = default_cache_dir() / f"pack_{size}_{key}.npz"
    if cache and path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    images = np.zeros((len(case_ids), size, size), np.float16)
    masks = np.zeros((len(case_ids), len(regions), size, size), np.uint8)
    for i, c in enumerate(case_ids):
        images[i] = model_space_image(dataset.load_image(c).pixels, size, view)
        for j, r in enumerate(regions):
            masks[i, j] = resize_mask(dataset.load_mask(c, r), size, view)
    out = {"images": images, "masks": masks, "case_ids": np.array(case_ids),
           "regions": np.array(regions)}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
    return out


def model_inputs(images: np.ndarray, intensity: str | None = None) -> np.ndarray:
    """Packed (N, S, S) images -> (N, S, S, 3) float32, the models' input: the
    model-space intensity step of ``intensity`` (None: the default), as
    :func:`~cxr_dash.preprocess.prepare_input` ends."""
    return np.repeat(finish_intensity(images, intensity)[..., None], 3, axis=3)


# --- Training packs: the data, ready for training, where the data folder is not ---
#
# A lent GPU cannot read CXR_DATA_DIR and takes at most 64 MiB of files: a pack
# holds every case's model input at one input size and field of view (8 bits:
# 200 cases at 384 x 384 in ~20 MB) and its five masks there. Packs are derived
# from the data: they live in ignored folders and are never committed.
PACK_SUFFIX = ".cxrpack.npz"


def pack_file_name(size: int, view: FieldOfView) -> str:
    tag = "full" if view.is_full else "fov-" + "-".join(f"{v:g}" for v in view.as_list())
    return f"scr_{size}_{tag}{PACK_SUFFIX}"


def write_training_pack(dataset: SCRDataset, out_dir: str | os.PathLike, size: int,
                        view: FieldOfView | None = None, case_ids=None) -> Path:
    """Pack ``case_ids`` (default: every case with all five masks) at ``size`` over
    ``view`` into ``out_dir``; returns the file. The inputs are stored at 8 bits
    (within 1/510 of the float pipeline's values, far inside the brightness,
    contrast and gamma augmentation), the masks as they are."""
    view = view or FULL_VIEW
    case_ids = list(case_ids or dataset.cases_with_masks())
    arrays = pack(dataset, case_ids, size, view=view, cache=False)
    path = Path(out_dir) / pack_file_name(size, view)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, images=np.round(arrays["images"].astype(np.float32) * 255).astype(np.uint8),
        masks=np.packbits(arrays["masks"].astype(bool), axis=-1), case_ids=arrays["case_ids"],
        regions=arrays["regions"], size=np.int32(size), view=np.array(view.as_list(), np.float64))
    return path


class TrainingPack:
    """Packed cases standing in for an :class:`SCRDataset` in training and tuning
    (``--data`` given a pack file, or a folder of them): each file holds one
    input size and field of view, and :func:`pack` takes its arrays from here."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        files = sorted(self.root.glob(f"*{PACK_SUFFIX}")) if self.root.is_dir() else [self.root]
        if not files or not all(f.is_file() for f in files):
            raise FileNotFoundError(f"no training packs (*{PACK_SUFFIX}) at {self.root}")
        self.packs: dict[tuple[int, tuple[float, ...]], dict] = {}
        for f in files:
            with np.load(f) as z:
                size = int(z["size"])
                entry = {"images": z["images"], "masks": z["masks"],
                         "case_ids": [str(c) for c in z["case_ids"]],
                         "regions": tuple(str(r) for r in z["regions"])}
                self.packs[(size, tuple(np.round(z["view"], 6)))] = entry
        ids = [set(p["case_ids"]) for p in self.packs.values()]
        self._case_ids = sorted(set.intersection(*ids))

    @property
    def case_ids(self) -> list[str]:
        return list(self._case_ids)

    def cases_with_masks(self, regions=REGION_KEYS) -> list[str]:
        packed = set.intersection(*(set(p["regions"]) for p in self.packs.values()))
        return self.case_ids if set(regions) <= packed else []

    def select(self, case_ids, size: int, regions, view: FieldOfView) -> dict[str, np.ndarray]:
        key = (size, tuple(np.round(view.as_list(), 6)))
        if key not in self.packs:
            have = ", ".join(f"{s} px {FieldOfView.parse(list(v)).describe()}" for s, v in self.packs)
            raise ValueError(f"{self.root} holds no pack at {size} px over "
                             f"{view.describe()} (it has: {have})")
        entry = self.packs[key]
        index = {c: i for i, c in enumerate(entry["case_ids"])}
        missing = [c for c in case_ids if c not in index]
        if missing:
            raise ValueError(f"{len(missing)} cases are not in the pack, e.g. {missing[0]}")
        rows = [index[c] for c in case_ids]
        columns = [entry["regions"].index(r) for r in regions]
        masks = np.unpackbits(entry["masks"][rows], axis=-1, count=size)[:, columns]
        return {"images": (entry["images"][rows].astype(np.float32) / 255).astype(np.float16),
                "masks": masks.astype(np.uint8), "case_ids": np.array(case_ids),
                "regions": np.array(regions)}
