"""What the dashboard keeps between reruns: loaded models, the current image, cached results.

Models load once per process (``st.cache_resource``); predictions are cached
per image digest (``st.cache_data``), so moving a display slider never
re-runs a model. Uploads are decoded in memory and never written to disk.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import streamlit as st

from cxr_dash.concurrency import MODEL_GATE, GateBusy
from cxr_dash.data import SCR_MASK_SPACING_MM, SCRDataset, data_dir_from_env
from cxr_dash.errors import ImageReadError, ModelSetError
from cxr_dash.imaging import VOI_APPLIED_NOTE, check_segmentable, read_image
from cxr_dash.manifest import DEFAULT_MODEL_DIR
from cxr_dash.render import downsample_for_display

log = logging.getLogger(__name__)
T = TypeVar("T")

WORKING_SIDE = 1024   # the app works at <= 1024 px, the SCR masks' resolution
BORDER_NOTE = "uniform border cropped"   # the note ``corrected`` adds; Downloads quotes it
WINDOW_NOTE = "DICOM window ignored: the file's full range used"


@dataclass
class CurrentImage:
    key: str                                  # content digest: the cache key of every result
    name: str
    pixels: np.ndarray                        # working resolution, display orientation
    original_shape: tuple[int, int]
    spacing_mm: float | None                  # at working resolution
    source: str                               # "upload" or "dataset"
    case_id: str | None = None
    truth: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    # (y0, y1, x0, x1) of ``pixels`` inside their wide uniform edge bands, found once
    # at decoding; None when there are none (cxr_dash.preprocess.content_box).
    content: tuple[int, int, int, int] | None = None
    # A DICOM upload whose display window was applied: its pixels without the window
    # (working resolution, display orientation), for *Image corrections*.
    unwindowed: np.ndarray | None = None
    # Which ground truth ``truth`` is ("scr" for a dataset case, a digest of the reference
    # files for an upload): the cache key of the scores against it.
    truth_key: str | None = None
    truth_sources: dict[str, str] = field(default_factory=dict)   # region -> file, for uploads


def model_dir() -> Path:
    return Path(os.environ.get("CXR_MODEL_DIR") or DEFAULT_MODEL_DIR)


def get_segmenter(path: str):
    """The model set, one for the whole server (every session shares its models), on the
    engine ``CXR_ENGINE`` names (:func:`~cxr_dash.engine.default_engine`). Made at once
    from the manifest; its models load and warm up in a background thread
    (:meth:`~cxr_dash.inference.Segmenter.start_loading`), so the page is up before them."""
    from cxr_dash.engine import default_engine

    return _shared_segmenter(path, default_engine())


@st.cache_resource(show_spinner=False)
def _shared_segmenter(path: str, engine: str):
    from cxr_dash.inference import Segmenter

    seg = Segmenter(path, engine=engine)
    seg.start_loading()
    return seg


def segmenter_or_error():
    try:
        return get_segmenter(str(model_dir())), None
    except ModelSetError as exc:
        return None, str(exc)
    except ValueError as exc:        # CXR_ENGINE names no engine
        return None, f"The server's setting is wrong: {exc}."


def models_ready(seg) -> str | None:
    """Wait for the models' background loading, with a progress bar; None once they are
    ready, else what went wrong (the next rerun tries again)."""
    loading = seg.start_loading()
    if not loading.finished:
        bar = st.progress(loading.fraction, text=f"{loading.text}…")
        while not loading.wait(0.2):
            bar.progress(loading.fraction, text=f"{loading.text}… "
                                                f"({time.monotonic() - loading.started:.0f} s)")
        bar.empty()
    if loading.error is None:
        return None
    _shared_segmenter.clear()
    if isinstance(loading.error, ModelSetError):
        return str(loading.error)
    return (f"The models could not be loaded ({type(loading.error).__name__}: {loading.error}); "
            "the server's log has the details.")


@st.cache_resource
def get_dataset(path: str | None) -> SCRDataset | None:
    if not path:
        return None
    try:
        return SCRDataset(path)
    except FileNotFoundError:
        return None


def dataset():
    root = data_dir_from_env()
    return get_dataset(str(root) if root else None)


def _working_copy(pixels: np.ndarray, spacing: float | None):
    small = downsample_for_display(pixels.astype(np.float32, copy=False), WORKING_SIDE)
    scale = pixels.shape[0] / small.shape[0]
    return small, (spacing * scale if spacing else None)


def _content(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    from cxr_dash.preprocess import content_box

    box = content_box(pixels)
    return None if box == (0, pixels.shape[0], 0, pixels.shape[1]) else box


def image_from_upload(name: str, data: bytes) -> CurrentImage:
    """Decode an upload (in memory). Raises ImageReadError with a user-facing message,
    also for an image the models cannot segment (too small, a strip, uniform)."""
    radiograph = read_image(data, name)
    check_segmentable(radiograph.pixels, name)
    shape = radiograph.shape
    small, spacing = _working_copy(radiograph.pixels, radiograph.pixel_spacing_mm)
    radiograph.pixels = None     # full size: freed before the next full-size copy is made
    digest = hashlib.sha1(data).hexdigest()[:16]
    unwindowed = None
    if radiograph.unwindowed is not None:
        unwindowed, _ = _working_copy(radiograph.unwindowed, None)
    return CurrentImage(digest, name, small, shape, spacing, "upload",
                        notes=radiograph.notes, content=_content(small), unwindowed=unwindowed)


def image_from_case(ds: SCRDataset, case_id: str) -> CurrentImage:
    case = ds.load_case(case_id)
    small, _ = _working_copy(case.image, None)
    truth = {r: (downsample_for_display(m.astype(np.float32), WORKING_SIDE) >= 0.5)
             if m.shape != small.shape else m for r, m in case.masks.items()}
    spacing = SCR_MASK_SPACING_MM * 1024 / small.shape[0]
    return CurrentImage(f"case-{case_id}", case_id, small, case.image.shape, spacing, "dataset",
                        case_id, truth, content=_content(small), truth_key="scr")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def queue_message(place: int, what: str) -> str:
    """What a session waiting for a model slot is told (``place`` 1: next)."""
    return (f"⏳ The server is busy: {MODEL_GATE.slots} model run"
            f"{'s' if MODEL_GATE.slots > 1 else ''} at a time, all taken. You are "
            f"**{_ordinal(place)} in the queue** for {what}; it starts by itself when a slot "
            "frees (nothing is lost by waiting).")


@contextmanager
def model_slot(what: str = "the models") -> Iterator[None]:
    """Hold one of the server's model slots (:data:`cxr_dash.concurrency.MODEL_GATE`) for
    the block; while queued, the page says where this session stands."""
    box = st.empty()
    try:
        with MODEL_GATE.slot(on_wait=lambda place: box.info(queue_message(place, what))):
            box.empty()
            yield
    finally:
        box.empty()


def gated(call: Callable[[], T], what: str) -> T:
    """``call()``, a cached function that takes a model slot inside without waiting
    (``MODEL_GATE.slot(wait=False)``): a cached result costs no slot and never queues;
    a computation that finds every slot taken waits in the queue, here, outside the cache
    (whose recorded page elements would be replayed on every later hit)."""
    try:
        return call()
    except GateBusy:
        pass
    with model_slot(what):
        return call()


def segment(model_key: str, image_key: str, seg, pixels, tta: bool = False) -> dict[str, np.ndarray]:
    """Raw probability maps at working resolution (the threshold is a slider, and
    heatmaps show what the models output); cached per (model set, image, TTA).
    Uniform borders are cropped, or kept, in *Image corrections* (``corrected``), which
    every view follows: ``predict`` must not crop them behind its back."""
    return gated(lambda: _segment(model_key, image_key, seg, pixels, tta), "segmenting this image")


@st.cache_data(max_entries=16, show_spinner="Segmenting five regions…")
def _segment(model_key: str, image_key: str, _seg, _pixels, tta: bool = False) -> dict[str, np.ndarray]:
    with MODEL_GATE.slot(wait=False):
        return _seg.predict(_pixels, tta=tta, one_piece_at=None, trim_borders=False)


def segment_small(model_key: str, image_key: str, seg, pixels) -> dict[str, np.ndarray]:
    """Probability maps at each model's input size (explanations start from these)."""
    return gated(lambda: _segment_small(model_key, image_key, seg, pixels), "the explanations")


@st.cache_data(max_entries=16, show_spinner=False)
def _segment_small(model_key: str, image_key: str, _seg, _pixels) -> dict[str, np.ndarray]:
    with MODEL_GATE.slot(wait=False):
        return _seg.predict_at_input_size(_pixels)


@st.cache_data(max_entries=64, show_spinner=False)
def masks_for(model_key: str, image_key: str, threshold: float, largest_only: bool, _seg, _probs):
    return _seg.masks(_probs, threshold, largest_only)


def quality_for(model_key: str, image_key: str, seg, pixels, probs) -> dict[str, float | None]:
    """Each region's estimated Jaccard (one perturbed pass per model), once per image."""
    return gated(lambda: _quality_for(model_key, image_key, seg, pixels, probs),
                 "estimating the masks' quality")


@st.cache_data(max_entries=16, show_spinner="Estimating each mask's quality…")
def _quality_for(model_key: str, image_key: str, _seg, _pixels, _probs) -> dict[str, float | None]:
    with MODEL_GATE.slot(wait=False):
        return _seg.estimate_quality(_pixels, _probs)


@st.cache_data(max_entries=64, show_spinner=False)
def measurements_for(model_key: str, image_key: str, threshold: float, spacing_mm: float | None,
                     truth_key: str | None, _probs, _masks, _truth, _quality=None,
                     warning_threshold=None) -> list[dict]:
    """Areas, estimated Jaccard and (with ground truth) contour distances: distance
    transforms at 1024 px, so computed once per threshold, pixel spacing and ground
    truth (``truth_key``: reference masks added to an upload change it), not per slider
    move."""
    from cxr_dash.report import region_measurements

    return region_measurements(_probs, _masks, spacing_mm, _truth, _quality, warning_threshold)


@st.cache_data(max_entries=64, show_spinner=False)
def statistics_for(model_key: str, image_key: str, threshold: float, spacing_mm: float | None,
                   _masks) -> dict[str, dict]:
    """Each mask's area, centroid, bounding box and widest extent, once per threshold."""
    from cxr_dash.measure import region_statistics

    return region_statistics(_masks, spacing_mm)


@st.cache_data(max_entries=8, show_spinner="Preparing the files…")
def download_files(model_key: str, image_key: str, threshold: float, stem: str,
                   _masks, _probs) -> dict[str, bytes]:
    """{file name: contents}: a PNG per mask (``<image>_<region>_mask.png``), their ZIP,
    the NPZ of masks and probabilities and a PNG per probability map (~2 s of
    compression at 1024 px), built once per image and threshold rather than on every
    rerun of the Downloads view."""
    from cxr_dash.render import colormap
    from cxr_dash.report import mask_file_name, mask_png, masks_npz, masks_zip, png_bytes

    files = {mask_file_name(stem, r): mask_png(m) for r, m in _masks.items()}
    files.update({probability_file_name(stem, r): png_bytes(colormap(p)) for r, p in _probs.items()})
    files[f"{stem}_masks.zip"] = masks_zip(_masks, stem)
    files[f"{stem}_masks.npz"] = masks_npz(_masks, _probs)
    return files


def probability_file_name(stem: str, region: str) -> str:
    return f"{stem}_{region}_probability.png"


@st.cache_data(max_entries=64, show_spinner=False)
def heatmap_png(result_key: str, _heat_of) -> bytes:
    """An explanation's heatmap over the image as a PNG, for download: upsampled, coloured
    and compressed once per result (``result_key``: :attr:`ResultKey.token
    <cxr_dash.ui.results.ResultKey.token>`), not on every rerun of the page."""
    from cxr_dash.render import colormap
    from cxr_dash.report import png_bytes

    return png_bytes(colormap(_heat_of(), "jet"))


def remember(store: dict, key, value, limit: int) -> None:
    """Keep a result in ``store`` (a dict in the session) for redisplay and download; the
    oldest go first, so a long session does not hold every result it ever computed."""
    store[key] = value
    while len(store) > limit:
        store.pop(next(iter(store)))


def with_pixel_spacing(image: CurrentImage, original_spacing_mm: float) -> CurrentImage:
    """The image with a pixel spacing given for its original resolution (for
    files that carry none), converted to the working resolution."""
    scale = image.original_shape[0] / image.pixels.shape[0]
    return replace(image, spacing_mm=original_spacing_mm * scale)


def corrected(image: CurrentImage, invert: bool, mirror: bool, crop_border: bool = False,
              ignore_window: bool = False) -> CurrentImage:
    """The image as corrected in the sidebar, under its own cache key (its results are
    computed once and kept beside the original's). Ground truth is cropped and
    mirrored with it.

    ``crop_border`` cuts the wide uniform bands found at decoding (``content``), so
    that every view, explanations and position tests included, works on what the
    models segment, not only ``predict``, which trims them by itself.

    ``ignore_window`` starts from a DICOM's pixels without its display window (when
    one was applied): a narrow window clips the darkest lung to flat black.
    """
    crop = crop_border and image.content is not None
    unwindow = ignore_window and image.unwindowed is not None
    if not (invert or mirror or crop or unwindow):
        return image
    from cxr_dash.imaging import reorient

    y0, y1, x0, x1 = image.content if crop else (0, None, 0, None)

    def fix(a: np.ndarray, contrast: bool = False) -> np.ndarray:
        return reorient(a[y0:y1, x0:x1], invert and contrast, mirror)

    truth = {r: fix(m) for r, m in image.truth.items()} if image.truth else None
    notes = [n for n in image.notes if not (unwindow and n == VOI_APPLIED_NOTE)]
    notes += ([f"{BORDER_NOTE}: {describe_border(image)}"] if crop else []) + (
        [WINDOW_NOTE] if unwindow else [])
    return replace(image, key=f"{image.key}|{'inv' if invert else ''}{'mir' if mirror else ''}"
                              f"{'crop' if crop else ''}{'nowin' if unwindow else ''}",
                   pixels=fix(image.unwindowed if unwindow else image.pixels, contrast=True),
                   truth=truth, notes=notes, content=None if crop else image.content,
                   # What is left to un-window, corrected alike; nothing once the window is ignored.
                   unwindowed=None if unwindow or image.unwindowed is None
                   else fix(image.unwindowed, contrast=True))


def describe_border(image: CurrentImage) -> str:
    """The bands ``content`` leaves out, in working-copy pixels: 'top 102, bottom 102 px'."""
    (h, w), (y0, y1, x0, x1) = image.pixels.shape, image.content
    return ", ".join(f"{side} {n}" for side, n in (("top", y0), ("bottom", h - y1), ("left", x0),
                                                   ("right", w - x1)) if n) + " px"


def remember_error(message: str, origin: tuple) -> None:
    """``origin``: the input that failed, ("upload", file id) or ("case", case id)."""
    st.session_state["input_error"] = (message, origin)


def input_error() -> str | None:
    """The error of the input now chosen in the sidebar. It stays for as long as
    that input does: a slider moved later must not leave a rejected file in the
    uploader beside results that silently belong to the previous image."""
    stored = st.session_state.get("input_error")
    return stored[0] if stored and stored[1] == st.session_state.get("chosen_input") else None


def handle_upload(uploaded) -> None:
    """Decode a new upload once; on failure keep the previous image and its results.

    The last good upload stays in the session, so switching to a dataset case
    and back shows it again even though the uploader widget was cleared.
    """
    origin = ("upload", uploaded.file_id if uploaded is not None else None)
    st.session_state["chosen_input"] = origin
    if uploaded is None or st.session_state.get("upload_id") == uploaded.file_id:
        return
    try:
        # Decoding a large radiograph holds a few hundred MB for a second: it takes a slot
        # like a model run, so that many uploads at once queue instead of adding up.
        with model_slot("reading the upload"):
            image = image_from_upload(uploaded.name, uploaded.getvalue())
        st.session_state["upload_image"] = image
        st.session_state.pop("input_error", None)     # an earlier failure is history now
    except ImageReadError as exc:
        remember_error(str(exc), origin)
    except MemoryError:
        log.warning("%s: out of memory while decoding", uploaded.name, exc_info=True)
        remember_error(f"{uploaded.name}: the image is too large to process in memory on this "
                       "server now; downsample it, or try again later.", origin)
    except Exception:      # a decoder's bug must not show its traceback, nor lose the page
        log.exception("%s: unexpected error while decoding the upload", uploaded.name)
        remember_error(f"{uploaded.name}: the file could not be read (an unexpected error, "
                       "recorded in the server's log). Export it again as PNG or DICOM; if "
                       "that fails too, report it with the file.", origin)
    # Marked as handled only now: a rerun that interrupts the wait for a slot (a slider
    # moved meanwhile) decodes it on the next run instead of forgetting it.
    st.session_state["upload_id"] = uploaded.file_id


def handle_case(ds: SCRDataset, case_id: str | None) -> None:
    origin = ("case", case_id)
    st.session_state["chosen_input"] = origin
    shown = st.session_state.get("case_image")
    if not case_id or (shown is not None and shown.case_id == case_id):
        return
    if st.session_state.get("input_error", (None, None))[1] == origin:
        return      # failed already: not re-read from disk on every slider move
    try:
        st.session_state["case_image"] = image_from_case(ds, case_id)
        st.session_state.pop("input_error", None)     # a case chosen again later is retried
    except (ImageReadError, FileNotFoundError) as exc:
        remember_error(f"{case_id}: {exc}", origin)


def current() -> CurrentImage | None:
    """The image of the input source chosen in the sidebar; an upload with the reference
    masks given for it as its ground truth."""
    if st.session_state.get("source") == "Dataset case":
        return st.session_state.get("case_image")
    image = st.session_state.get("upload_image")
    ref = st.session_state.get("reference")
    if image is not None and ref and ref["image_key"] == image.key and ref["masks"]:
        return replace(image, truth=ref["masks"], truth_key=ref["key"], truth_sources=ref["sources"])
    return image


def handle_reference(image: CurrentImage, uploaded) -> dict | None:
    """Read the reference masks uploaded for ``image`` (an upload, before its corrections,
    which then crop and mirror them with it) once per set of files; returns what was
    read: {"masks", "sources", "notes", "errors", ...}, or None when none is given.

    A file that fails is named in ``errors`` and the others still count."""
    from cxr_dash.reference import read_reference_file

    uploaded = list(uploaded or [])
    ids = tuple(f.file_id for f in uploaded)
    ref = st.session_state.get("reference")
    if ref and ref["image_key"] == image.key and ref["ids"] == ids:
        return ref if ids else None
    if not ids:
        st.session_state.pop("reference", None)
        return None
    masks, sources, notes, errors = {}, {}, [], []
    digest = hashlib.sha1()
    for f in uploaded:
        data = f.getvalue()
        digest.update(f.name.encode() + hashlib.sha1(data).digest())
        try:
            for region, mask in read_reference_file(f.name, data, image.original_shape, notes).items():
                masks[region] = mask if mask.shape == image.pixels.shape else (
                    downsample_for_display(mask.astype(np.float32), WORKING_SIDE) >= 0.5)
                sources[region] = f.name
        except ImageReadError as exc:
            errors.append(str(exc))
        except Exception:      # a reader's bug: said in words, the traceback in the log
            log.exception("%s: unexpected error while reading a reference mask", f.name)
            errors.append(f"{f.name}: the file could not be read (an unexpected error, recorded "
                          "in the server's log).")
    ref = {"image_key": image.key, "ids": ids, "masks": masks, "sources": sources, "notes": notes,
           "errors": errors, "key": "ref-" + digest.hexdigest()[:16]}
    st.session_state["reference"] = ref
    return ref
