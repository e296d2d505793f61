"""Reference masks (ground truth) for a radiograph of one's own, read from the files
a user has: a mask per region named by its region, one label image, or a DICOM SEG.

    read_reference(files, shape) -> Reference(masks, sources, notes)

``files``: (file name, bytes) pairs; ``shape``: the radiograph's own size (rows,
columns), which every mask must have, or a scaled copy of it (the SCR masks are
1024 px for the 2048 px JSRT images). The masks come back at ``shape``, scored
then exactly as a dataset case's ground truth is.

- **A mask per region**: PNG, GIF (the SCR format), JPEG or TIFF, the region in
  its file name as the SCR folders spell it (``heart.png``, ``JPCLN001_left_lung.gif``,
  ``left lung.gif``, ``right-clavicle.png``); foreground is any pixel above half
  the file's maximum.
- **A label image**: one grey or palette PNG (or TIFF) whose name names no region,
  each pixel the number of its region in :data:`LABELS` (0 background, 1 heart,
  2 left clavicle, 3 left lung, 4 right clavicle, 5 right lung). A label image
  holds one region per pixel: where structures overlap (a clavicle over a lung)
  only one of them can be given.
- **A DICOM SEG** (Segmentation Storage, binary or fractional): each segment's
  label (``SegmentLabel``, else its description or property type) names its
  region; segments naming none are listed in ``notes`` and left out.
"""
from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import ImageReadError
from .imaging import _check_size, read_mask
from .regions import REGION_KEYS, REGIONS

# The label image's numbers: 1 + the region's place in the registry.
LABELS: dict[int, str] = {i + 1: r for i, r in enumerate(REGION_KEYS)}
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SHAPE_TOLERANCE = 0.01       # aspect ratios that differ by less count as a scaled copy


def describe_labels() -> str:
    """'1 heart, 2 left clavicle, ...' for messages and help texts."""
    return ", ".join(f"{k} {REGIONS[r].display_name.lower()}" for k, r in LABELS.items())


@dataclass
class Reference:
    masks: dict[str, np.ndarray] = field(default_factory=dict)    # region -> bool (shape)
    sources: dict[str, str] = field(default_factory=dict)         # region -> file it came from
    notes: list[str] = field(default_factory=list)                # what was left out, and why


def region_in_name(name: str) -> str | None:
    """The region a file name names ('JPCLN001_left lung.gif' -> 'left_lung'), or None.
    None too for a name that names two regions."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    words = re.sub(r"[^a-z]+", "_", stem).strip("_")
    found = [r for r in REGION_KEYS if re.search(rf"(^|_){r}($|_)", words)]
    return found[0] if len(found) == 1 else None


def _is_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def _fit(mask: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """``mask`` at ``shape``: the same size, or a scaled copy of it (same aspect ratio)."""
    h, w = mask.shape
    if (h, w) == tuple(shape):
        return mask.astype(bool)
    if abs(h / w - shape[0] / shape[1]) > SHAPE_TOLERANCE * shape[0] / shape[1]:
        raise ImageReadError(
            f"{name}: the mask is {w} x {h} pixels, the radiograph {shape[1]} x {shape[0]}: a "
            "reference mask must have the radiograph's size, or be a scaled copy of it.")
    shrink = h > shape[0]
    resized = cv2.resize(mask.astype(np.float32), (shape[1], shape[0]),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return resized >= 0.5


def read_label_image(data: bytes, name: str) -> np.ndarray:
    """The label numbers of a grey or palette image (not its grey levels: a palette
    image's index is its label), as an integer array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            _check_size(im.width, im.height, name)
            im.load()
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError):
        raise ImageReadError(f"{name}: the file is corrupt or not an image.") from None
    if im.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
        return np.array(im).astype(np.int64)
    if im.mode in ("RGB", "RGBA"):
        arr = np.array(im)
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
            return arr[..., 0].astype(np.int64)
    raise ImageReadError(f"{name}: a label image must be grey or palette (its pixels the "
                         f"regions' numbers: {describe_labels()}), not {im.mode} colour.")


def _labels_to_masks(labels: np.ndarray, name: str) -> dict[str, np.ndarray]:
    values = set(np.unique(labels).tolist()) - {0}
    if not values:
        raise ImageReadError(f"{name}: the image is empty (every pixel 0), and its name "
                             "names no region.")
    stray = sorted(v for v in values if v not in LABELS)
    if values == {int(labels.max())} and len(stray) == 1:      # 0 and 255: one region's mask
        raise ImageReadError(
            f"{name}: a single mask (0 and {stray[0]}), but its name names no region. Name it "
            "after its region: heart.png, left_lung.gif, right clavicle.png, ...")
    if stray:
        shown = ", ".join(map(str, stray[:6])) + (", ..." if len(stray) > 6 else "")
        raise ImageReadError(
            f"{name}: its name names no region, so it is read as a label image, but it holds "
            f"values ({shown}) that are not region numbers. Name a mask after its region "
            f"(e.g. heart.png), or give each pixel its region's number: 0 background, "
            f"{describe_labels()}.")
    return {LABELS[v]: labels == v for v in sorted(values)}


def read_dicom_seg(data: bytes, name: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """({region: mask} at the SEG's own size, notes) of a DICOM Segmentation object."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError):
        raise ImageReadError(f"{name}: not a readable DICOM file.") from None
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS and ds.get("Modality") != "SEG":
        raise ImageReadError(f"{name}: a DICOM file, but not a segmentation (DICOM SEG); "
                             "reference masks come as a SEG, or as PNG/GIF files.")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    _check_size(cols, rows, name, frames_n)
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as exc:      # pydicom's decoders raise many kinds
        raise ImageReadError(f"{name}: the segmentation's pixel data cannot be decoded "
                             f"({type(exc).__name__}).") from None
    frames = frames.reshape(-1, rows, cols)
    if ds.get("SegmentationType", "BINARY") == "FRACTIONAL":
        frames = frames >= float(ds.get("MaximumFractionalValue", 255) or 255) / 2
    frames = frames.astype(bool)
    labels = {}
    for item in ds.get("SegmentSequence", []):
        number = int(item.get("SegmentNumber", 0))
        words = [str(item.get(k, "") or "") for k in ("SegmentLabel", "SegmentDescription")]
        for code in item.get("SegmentedPropertyTypeCodeSequence", []):
            words.append(str(code.get("CodeMeaning", "") or ""))
        labels[number] = next((w for w in words if w), f"segment {number}")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == len(frames):
        numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
                   for f in per_frame]
    elif len(frames) == len(labels):        # one frame per segment, in segment order
        numbers = sorted(labels)
    else:
        raise ImageReadError(f"{name}: the SEG does not say which segment each of its "
                             f"{len(frames)} frames belongs to.")
    masks: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for number, frame in zip(numbers, frames):
        label = labels.get(number, f"segment {number}")
        region = _region_of_label(label)
        if region is None:
            if f"'{label}'" not in " ".join(notes):
                notes.append(f"{name}: segment '{label}' names no region; left out")
            continue
        masks[region] = masks[region] | frame if region in masks else frame
    if not masks:
        raise ImageReadError(f"{name}: none of its segments ({', '.join(labels.values())}) "
                             "names a region (heart, left/right lung, left/right clavicle).")
    return masks, notes


def _region_of_label(label: str) -> str | None:
    """A segment label's region: 'Left lung', 'Lung, left', 'heart' -> a region key."""
    words = set(re.sub(r"[^a-z]+", " ", label.lower()).split())
    for region in REGION_KEYS:
        if set(region.split("_")) == words & {"left", "right", "lung", "clavicle", "heart"}:
            return region
    return None


def read_reference(files, shape: tuple[int, int]) -> Reference:
    """Reference masks from uploaded ``files`` ((name, bytes) pairs), at ``shape``.

    A file that fails raises :class:`~cxr_dash.errors.ImageReadError` in the user's
    words; the caller decides whether the others still count (the app keeps them).
    The same region given twice: the later file wins, with a note."""
    reference = Reference()
    for name, data in files:
        for region, mask in read_reference_file(name, data, shape, reference.notes).items():
            if region in reference.masks:
                reference.notes.append(f"{REGIONS[region].display_name} given twice: "
                                       f"{name} used, not {reference.sources[region]}")
            reference.masks[region] = mask
            reference.sources[region] = name
    return reference


def read_reference_file(name: str, data: bytes, shape: tuple[int, int],
                        notes: list[str] | None = None) -> dict[str, np.ndarray]:
    """{region: mask at ``shape``} of one file (a region's mask, a label image or a SEG)."""
    if not data:
        raise ImageReadError(f"{name}: the file is empty.")
    if _is_dicom(data, name):
        masks, seg_notes = read_dicom_seg(data, name)
        if notes is not None:
            notes.extend(seg_notes)
    elif (region := region_in_name(name)) is not None:
        masks = {region: read_mask(data, name)}
    else:
        masks = _labels_to_masks(read_label_image(data, name), name)
    return {r: _fit(m, shape, name) for r, m in masks.items()}
