"""Batch segmentation: many radiographs to masks, overlays, DICOM SEG objects and one table.

    from cxr_dash.batch import BatchConfig, collect_inputs, run_batch
    tasks = collect_inputs(["scans/", "more/*.dcm", "export.zip"])
    summary = run_batch(tasks, BatchConfig(out=Path("results")), workers=2)

The command-line front end is :mod:`cxr_dash.segment` (``cxr-dash segment``).

Per image ``KEY`` (the input's path below the folder or archive it was found in,
``/`` as ``__``, without its extension) the output folder gets::

    KEY/<region>.png     the region's mask at the image's own size, 0 / 255
    KEY/overlay.png      every mask over the image (at most 1024 px a side)
    KEY/seg.dcm          DICOM inputs only: a DICOM SEG (highdicom) referencing the source
    KEY/record.json      written last: the image's table rows; its presence marks it done

and, once the run ends, ``segmentation.csv`` (and ``segmentation.parquet`` when
pyarrow is installed) with a row per image and region, an image that failed as one
row with its ``error``, and ``errors.log``.

Work runs in local processes (:class:`concurrent.futures.ProcessPoolExecutor`) or
on an existing Dask distributed cluster (``dask_address``); either way each worker
loads the model set once, the same :func:`segment_one` runs per image, and its
outputs come back to this process, which writes them: a cluster's workers must be
able to read the inputs, not the output folder. No Streamlit here.
"""
from __future__ import annotations

import concurrent.futures as cf
import csv
import glob
import io
import json
import logging
import os
import tarfile
import threading
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".dcm", ".dicom", ".img")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
RECORD = "record.json"
TABLE = "segmentation"
ERRORS_LOG = "errors.log"
OVERLAY_SIDE = 1024
STAT_KEYS = ("area_px", "area_cm2", "centroid_x", "centroid_y", "bbox_x0", "bbox_y0", "bbox_x1",
             "bbox_y1", "bbox_width_px", "bbox_height_px", "widest_row", "widest_x0",
             "widest_x1", "widest_px", "widest_mm")
COLUMNS = ("image", "source", "region", *STAT_KEYS, "quality_estimate", "quality_warning",
           "quality_threshold", "ctr", "ctr_heart_px", "ctr_thorax_px", "ctr_heart_mm",
           "ctr_thorax_mm", "rows", "columns", "spacing_mm", "spacing_from", "source_format",
           "mask", "overlay", "seg", "notes", "error")


@dataclass(frozen=True)
class ImageTask:
    """One input image: a file (``member`` None) or a member of a zip / tar archive."""
    key: str
    path: str
    member: str | None = None

    @property
    def source(self) -> str:
        return f"{self.path}::{self.member}" if self.member else self.path

    @property
    def name(self) -> str:
        return Path(self.member or self.path).name

    def read_bytes(self) -> bytes:
        if self.member is None:
            return Path(self.path).read_bytes()
        if zipfile.is_zipfile(self.path):
            with zipfile.ZipFile(self.path) as archive:
                return archive.read(self.member)
        with tarfile.open(self.path) as archive:
            handle = archive.extractfile(self.member)
            if handle is None:
                raise OSError(f"{self.member} is not a file in {self.path}")
            return handle.read()


@dataclass(frozen=True)
class BatchConfig:
    """What every worker needs: where the model set is, and how to measure."""
    out: Path
    model_dir: str | None = None
    engine: str | None = None
    threshold: float = 0.5
    pixel_spacing_mm: float | None = None   # for files that carry none
    quality: bool = True                    # the estimated Jaccard, where the set has a fit
    seg: bool = True                        # a DICOM SEG for DICOM inputs


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    table: list[Path] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------- the inputs

def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _looks_like_dicom(path: Path) -> bool:
    """An extension-less file in a folder counts when it has the DICM marker."""
    try:
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _key_of(relative: str) -> str:
    stem = relative.rsplit(".", 1)[0] if "." in Path(relative).name else relative
    return stem.replace("\\", "/").strip("/").replace("/", "__") or "image"


def _archive_members(path: Path) -> list[str]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return [i.filename for i in archive.infolist() if not i.is_dir()]
    with tarfile.open(path) as archive:
        return [m.name for m in archive.getmembers() if m.isfile()]


def _expand(item: str) -> Iterator[tuple[str, str, str | None]]:
    """(relative name for the key, path, archive member) for one command-line input."""
    paths = [Path(p) for p in sorted(glob.glob(item, recursive=True))] \
        if glob.has_magic(item) else [Path(item)]
    for path in paths:
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                if _is_image_name(f.name) or (not f.suffix and _looks_like_dicom(f)):
                    yield f.relative_to(path).as_posix(), str(f), None
        elif _is_archive(path):
            stem = path.name.split(".")[0]
            for member in _archive_members(path):
                if _is_image_name(member) or "." not in Path(member).name:
                    yield f"{stem}/{member}", str(path), member
        else:            # a file named explicitly: always tried, a bad one becomes an error row
            yield path.name, str(path), None


def collect_inputs(items: Iterable[str]) -> list[ImageTask]:
    """Files, folders (searched recursively), globs and zip / tar archives -> tasks with
    unique keys (a clash gets the extension, then a number, added)."""
    tasks, seen, keys = [], set(), set()
    for item in items:
        for relative, path, member in _expand(str(item)):
            source = (os.path.abspath(path), member)
            if source in seen:
                continue
            seen.add(source)
            key = _key_of(relative)
            if key in keys:
                key = _key_of(relative.replace(".", "_"))
            base, n = key, 2
            while key in keys:
                key, n = f"{base}_{n}", n + 1
            keys.add(key)
            tasks.append(ImageTask(key, path, member))
    return tasks


# ---------------------------------------------------------------- one image (in a worker)

_SEGMENTERS: dict[tuple, object] = {}
_SEGMENTER_LOCK = threading.Lock()


def worker_segmenter(model_dir: str | None, engine: str | None):
    """The model set of this worker process, loaded (and warmed up) on first use only."""
    key = (model_dir, engine)
    with _SEGMENTER_LOCK:
        if key not in _SEGMENTERS:
            from .inference import load_segmenter
            _SEGMENTERS[key] = load_segmenter(model_dir, engine=engine)
        return _SEGMENTERS[key]


def _init_local_worker(config: BatchConfig, cores: list[int] | None) -> None:
    """ProcessPoolExecutor initializer: this worker's share of the cores. The models load
    on its first readable image (:func:`worker_segmenter`), once: a rerun that only
    retries unreadable files loads none."""
    if cores and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, cores)
        except OSError:
            pass


def pixel_spacing(radiograph, name: str, config: BatchConfig) -> tuple[float | None, str | None]:
    """(mm per pixel, where it came from): the file's own, else ``--pixel-spacing``, else,
    for a JSRT case id (``JPCLN001.png``), the SCR spacing at the image's size."""
    from .data import CASE_PATTERN, SCR_MASK_SPACING_MM

    if radiograph.pixel_spacing_mm:
        return float(radiograph.pixel_spacing_mm), "file"
    if config.pixel_spacing_mm:
        return float(config.pixel_spacing_mm), "option"
    rows, cols = radiograph.shape
    if CASE_PATTERN.match(Path(name).stem) and rows == cols:
        return SCR_MASK_SPACING_MM * 1024 / rows, "jsrt-case"
    return None, None


def segment_one(task: ImageTask, config: BatchConfig) -> dict:
    """Segment one image: {"key", "source", "rows": table rows, "files": {name: bytes},
    "error": message or None, "seconds"}. Never raises for a bad input."""
    from .errors import ImageReadError

    started = time.perf_counter()
    try:
        rows, files = _segment(task, config)
        error = None
    except (ImageReadError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        rows, files, error = [], {}, str(exc) or type(exc).__name__
    except Exception as exc:        # a failed image must not end the run
        log.debug("%s failed", task.source, exc_info=True)
        rows, files = [], {}
        error = f"{type(exc).__name__}: {exc} ({traceback.format_exc(limit=-1).strip()})"
    if error:
        rows = [error_row(task, error)]
    return {"key": task.key, "source": task.source, "rows": rows, "files": files,
            "error": error, "seconds": round(time.perf_counter() - started, 3)}


def error_row(task: ImageTask, error: str) -> dict:
    return {**{c: None for c in COLUMNS}, "image": task.key, "source": task.source, "error": error}


def _segment(task: ImageTask, config: BatchConfig) -> tuple[list[dict], dict[str, bytes]]:
    from .imaging import check_segmentable, read_image

    data = task.read_bytes()
    radiograph = read_image(data, task.name)
    check_segmentable(radiograph.pixels, task.name)
    seg = worker_segmenter(config.model_dir, config.engine)
    image = radiograph.pixels
    raw = seg.predict(image, one_piece_at=None)
    masks = seg.masks(raw, config.threshold)          # one piece per region, as evaluated
    quality, threshold = _quality(seg, image, raw, config)
    spacing, spacing_from = pixel_spacing(radiograph, task.name, config)
    files = {f"{r}.png": _png(m.astype(np.uint8) * 255) for r, m in masks.items()}
    files["overlay.png"] = _png(overlay(image, masks))
    notes = list(radiograph.notes)
    if radiograph.source_format == "dicom" and config.seg:
        try:
            files["seg.dcm"] = dicom_seg(data, masks, seg.regions)
        except Exception as exc:      # an incomplete header: the masks still count
            notes.append(f"no DICOM SEG: {type(exc).__name__}: {exc}")
    common = {"image": task.key, "source": task.source, "rows": image.shape[0],
              "columns": image.shape[1], "spacing_mm": spacing, "spacing_from": spacing_from,
              "source_format": radiograph.source_format, "overlay": f"{task.key}/overlay.png",
              "seg": f"{task.key}/seg.dcm" if "seg.dcm" in files else None,
              "notes": "; ".join(notes) or None, "error": None,
              "quality_threshold": threshold, **ctr_columns(masks, spacing)}
    return table_rows(masks, spacing, quality, threshold, common, task.key), files


def _quality(seg, image, raw, config) -> tuple[dict, float | None]:
    """({region: estimated Jaccard or None}, the set's warning threshold or None)."""
    from .preprocess import content_box

    model = seg.quality_model if config.quality else None
    if model is None:
        return {r: None for r in seg.regions}, None
    whole = content_box(image) == (0, image.shape[0], 0, image.shape[1])
    # The raw maps are the ones the estimate wants unless predict trimmed a border.
    quality = seg.estimate_quality(image, raw if whole else None, quality_model=model)
    return quality, float(model.warning_threshold)


def ctr_columns(masks: dict[str, np.ndarray], spacing: float | None) -> dict:
    """The image's cardiothoracic ratio (:func:`cxr_dash.measure.cardiothoracic_ratio`)."""
    from .measure import cardiothoracic_ratio

    ratio = cardiothoracic_ratio(masks)
    if ratio is None:
        return {"ctr": None, "ctr_heart_px": None, "ctr_thorax_px": None,
                "ctr_heart_mm": None, "ctr_thorax_mm": None}
    d = ratio.as_dict(spacing)
    return {"ctr": d["ratio"], "ctr_heart_px": d["heart"]["width_px"],
            "ctr_thorax_px": d["thorax"]["width_px"], "ctr_heart_mm": d["heart"]["width_mm"],
            "ctr_thorax_mm": d["thorax"]["width_mm"]}


def table_rows(masks, spacing, quality, threshold, common: dict, key: str) -> list[dict]:
    """A row per region: :func:`cxr_dash.measure.region_statistics` and the quality estimate."""
    from .measure import region_statistics

    rows = []
    for region, stats in region_statistics(masks, spacing).items():
        estimate = quality.get(region)
        rows.append({**{c: None for c in COLUMNS}, **common, "region": region, **stats,
                     "quality_estimate": None if estimate is None else round(float(estimate), 4),
                     "quality_warning": (None if estimate is None or threshold is None
                                         else bool(estimate < threshold)),
                     "mask": f"{key}/{region}.png"})
    return rows


def overlay(image: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
    """Every mask, filled and outlined in its colour, over the image (RGB uint8)."""
    import cv2

    from .render import display_rgb, downsample_for_display, overlay_masks

    rgb = display_rgb(image)
    h, w = image.shape
    scale = min(1.0, OVERLAY_SIDE / max(h, w))
    if scale < 1:
        rgb = downsample_for_display(rgb, OVERLAY_SIDE)
        size = (rgb.shape[1], rgb.shape[0])
        masks = {r: cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
                 for r, m in masks.items()}
    return overlay_masks(rgb, masks, opacity=0.3, style="both")


def _png(array: np.ndarray) -> bytes:
    import cv2

    if array.ndim == 3:
        array = array[..., ::-1]          # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


# ---------------------------------------------------------------- DICOM SEG

# Patient and study attributes of type 2 (present, may be empty) that a SEG copies from
# its source; exports often leave them out.
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                       "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")

def _cielab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB (0-255) -> CIE L*a*b* (D65), as a SEG's recommended display colour."""
    c = np.asarray(rgb, float) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))


def segment_description(number: int, region: str):
    """A SEG segment for one region: SNOMED CT property (lung / clavicle with laterality)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from . import __version__
    from .regions import REGIONS

    side, _, organ = region.rpartition("_")
    property_type = {"heart": codes.SCT.Heart, "lung": codes.SCT.Lung,
                     "clavicle": codes.SCT.Clavicle}[organ]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="cxr-dash U-Net", family=codes.cid7162.ArtificialIntelligence, version=__version__)
    desc = hd.seg.SegmentDescription(
        segment_number=number, segment_label=REGIONS[region].display_name,
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=property_type, algorithm_type="AUTOMATIC",
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor(*_cielab(REGIONS[region].colour)))
    if side:
        laterality = {"left": codes.SCT.Left, "right": codes.SCT.Right}[side]
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(laterality)]
    return desc


def _drop_partial_pixel_measures(seg) -> None:
    """Without a frame of reference (a projection radiograph) highdicom copies the source's
    PixelSpacing alone into a Pixel Measures item, which readers, highdicom's own among
    them, refuse for lacking SliceThickness; the module is only required with a frame of
    reference, so it goes."""
    if "FrameOfReferenceUID" in seg:
        return
    for group in seg.get("SharedFunctionalGroupsSequence") or []:
        measures = group.get("PixelMeasuresSequence")
        if measures and "SliceThickness" not in measures[0]:
            del group.PixelMeasuresSequence


def dicom_seg(source: bytes, masks: dict[str, np.ndarray], regions) -> bytes:
    """A binary DICOM SEG of ``masks`` (one frame per region, in ``regions``' order, none
    left out when empty) that references the source image by its UIDs."""
    import highdicom as hd
    import pydicom

    from . import __version__

    ds = pydicom.dcmread(io.BytesIO(source), force=True, stop_before_pixels=True)
    for keyword in PATIENT_STUDY_TYPE2:     # may be empty, not absent: a SEG copies them
        if keyword not in ds:
            setattr(ds, keyword, None)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ValueError("a multi-frame source (the masks are of its first frame)")
    regions = [r for r in regions if r in masks]
    pixels = np.stack([masks[r] for r in regions], axis=-1)[None].astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=[ds], pixel_array=pixels, segmentation_type="BINARY",
        segment_descriptions=[segment_description(i, r) for i, r in enumerate(regions, 1)],
        series_instance_uid=hd.UID(), series_number=int(ds.get("SeriesNumber", 0) or 0) + 100,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="cxr-dash",
        manufacturer_model_name="cxr-dash per-region U-Nets", software_versions=__version__,
        device_serial_number="none", series_description="cxr-dash segmentation",
        content_label="CXRDASH", content_description="Heart, lungs and clavicles",
        omit_empty_frames=False)
    _drop_partial_pixel_measures(seg)
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- the run (this process)

def record_path(out: Path, key: str) -> Path:
    return out / key / RECORD


def is_done(out: Path, task: ImageTask) -> bool:
    """Whether a previous run finished this image (its record names the same source)."""
    try:
        record = json.loads(record_path(out, task.key).read_text())
    except (OSError, ValueError):
        return False
    return record.get("source") == task.source


def write_result(out: Path, result: dict) -> None:
    """An image's files, then its record (atomically, last: it marks the image done).
    A failed image gets no record, so a rerun tries it again."""
    if result["error"]:
        return
    folder = out / result["key"]
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in result["files"].items():
        (folder / name).write_bytes(data)
    tmp = folder / f".{RECORD}.tmp"
    tmp.write_text(json.dumps({"source": result["source"], "seconds": result["seconds"],
                               "rows": result["rows"]}, indent=1) + "\n")
    os.replace(tmp, folder / RECORD)


def _log_failure(out: Path, result: dict) -> None:
    log.warning("%s failed: %s", result["source"], result["error"])
    with (out / ERRORS_LOG).open("a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\t{result['source']}\t{result['error']}\n")


def _local_results(tasks: list[ImageTask], config: BatchConfig, workers: int) -> Iterator[dict]:
    """:func:`segment_one` over ``tasks`` in ``workers`` processes, results as they finish;
    at most 4 tasks a worker in flight, so the results are not all held at once."""
    import multiprocessing

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    # Each process gets its own share of the cores (the engine sizes its threads to them).
    shares = [cores[i::workers] for i in range(workers)] if len(cores) >= workers > 1 else None
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_init_shared_worker,
                                initargs=(config, shares, counter)) as pool:
        queue, running = iter(tasks), {}
        while True:
            while len(running) < 4 * workers and (task := next(queue, None)) is not None:
                running[pool.submit(segment_one, task, config)] = task
            if not running:
                return
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                yield _result_of(future.result, running.pop(future))


def _init_shared_worker(config: BatchConfig, shares, counter) -> None:
    cores = None
    if shares:
        with counter.get_lock():
            cores, counter.value = shares[counter.value % len(shares)], counter.value + 1
    _init_local_worker(config, cores)


def _result_of(get: Callable[[], dict], task: ImageTask) -> dict:
    """A finished task's result; a worker that died or raised becomes an error result."""
    try:
        return get()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return {"key": task.key, "source": task.source, "rows": [error_row(task, error)],
                "files": {}, "error": error, "seconds": None}


def _dask_results(tasks: list[ImageTask], config: BatchConfig, address,
                  window: int | None = None) -> Iterator[dict]:
    """:func:`segment_one` over ``tasks`` on a Dask distributed cluster (``address``: a
    scheduler address, or a Client / LocalCluster), results as they finish."""
    from distributed import Client, as_completed

    client = address if isinstance(address, Client) else Client(address)
    try:
        window = window or max(4, 4 * sum(client.nthreads().values()))
        queue = iter(tasks)
        first = [client.submit(segment_one, t, config, pure=False) for t in _take(queue, window)]
        owner = {f.key: t for f, t in zip(first, tasks)}
        pending = as_completed(first)
        for future in pending:
            task = owner.pop(future.key)
            yield _result_of(future.result, task)
            future.release()
            for nxt in _take(queue, 1):
                new = client.submit(segment_one, nxt, config, pure=False)
                owner[new.key] = nxt
                pending.add(new)
    finally:
        if client is not address:
            client.close()


def _take(iterator: Iterator, n: int) -> list:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) == n:
            break
    return out


def run_batch(tasks: list[ImageTask], config: BatchConfig, workers: int = 1,
              dask_address=None, progress: bool = True,
              on_result: Callable[[dict], None] | None = None) -> BatchSummary:
    """Segment every task not done yet (see :func:`is_done`), streaming each result to
    ``config.out`` as it arrives (then ``on_result(result)``), and write the table of
    every task. A failed image is logged and counted, never fatal. ``dask_address``: a
    scheduler address or a distributed Client; else ``workers`` local processes."""
    from tqdm import tqdm

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [t for t in tasks if not is_done(out, t)]
    summary = BatchSummary(skipped=len(tasks) - len(todo))
    failures: dict[str, dict] = {}
    started = time.perf_counter()
    if todo:
        results = (_dask_results(todo, config, dask_address) if dask_address is not None
                   else _local_results(todo, config, max(1, workers)))
        bar = tqdm(total=len(todo), unit="image", disable=not progress, smoothing=0.1,
                   desc="segmenting", dynamic_ncols=True)
        with bar:
            for result in results:
                write_result(out, result)
                if result["error"]:
                    failures[result["key"]] = result
                    summary.failed.append(result["source"])
                    _log_failure(out, result)
                else:
                    summary.done += 1
                bar.update(1)
                if on_result:
                    on_result(result)
    summary.seconds = time.perf_counter() - started
    summary.table = write_table(out, _all_rows(out, tasks, failures))
    return summary


def _all_rows(out: Path, tasks: list[ImageTask], failures: dict[str, dict]) -> list[dict]:
    """Every task's rows, in input order: from its record, or its error."""
    rows = []
    for task in tasks:
        if task.key in failures:
            rows.extend(failures[task.key]["rows"])
            continue
        try:
            rows.extend(json.loads(record_path(out, task.key).read_text())["rows"])
        except (OSError, ValueError, KeyError):
            rows.append(error_row(task, "no result (the run was interrupted?)"))
    return rows


def write_table(out: Path, rows: list[dict]) -> list[Path]:
    """``segmentation.csv``, and ``segmentation.parquet`` where pyarrow is installed."""
    paths = [out / f"{TABLE}.csv"]
    with paths[0].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    columns = {c: [r.get(c) for r in rows] for c in COLUMNS}
    for c, values in columns.items():      # a column wholly None or mixed int/float: float
        if any(isinstance(v, float) for v in values):
            columns[c] = [None if v is None else float(v) for v in values]
    pq.write_table(pa.table(columns), out / f"{TABLE}.parquet")
    paths.append(out / f"{TABLE}.parquet")
    return paths
