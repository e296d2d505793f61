"""The inference API the app and the acceptance checks use.

    from cxr_dash import load_segmenter
    seg = load_segmenter()            # the shipped weights/ set
    probs = seg.predict(image)        # {region: float32 H x W}
"""
from __future__ import annotations

import logging
import os
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .errors import ImageReadError, ModelSetError
from .imaging import check_segmentable
from .manifest import DEFAULT_MODEL_DIR, MANIFEST_NAME, read_manifest, training_cases
from .metrics import fill_holes, largest_component
from .preprocess import (FieldOfView, check_intensity, content_box, prepare_input, resize_mask,
                         upsample_probability)
from .regions import REGION_KEYS

log = logging.getLogger(__name__)


# Test-time augmentation: the image sampled on four model grids shifted by a
# quarter of a model pixel each way, so the averaged output sees sub-pixel
# detail that one grid misses. No flips: laterality is part of the task.
TTA_SHIFTS = ((-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25))


def shift_image(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate by (dy, dx) pixels (down, right), bilinear, border pixels repeated."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image.astype(np.float32), np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def as_grayscale(image) -> np.ndarray:
    """Accept one image: a 2-D array, or (H, W, 1|3|4) which is averaged to grey.

    Raises :class:`~cxr_dash.errors.ImageReadError` (a ValueError) for anything
    that is not one finite, real-valued grey or colour image: a NaN or inf pixel
    would otherwise spread through the intensity stretch and return all-NaN maps
    silently, a stack would be taken for channels, and a boolean array is a mask.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        raise ImageReadError("the image is a boolean array (a mask?), not a radiograph; pass "
                             "its grey values (uint8, uint16 or float).")
    if arr.dtype.kind not in "iuf":
        raise ImageReadError(f"expected a real-valued grey image, got an array of {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
        raise ImageReadError(
            f"expected one 2-D image, got an array of shape {arr.shape}: a stack of {arr.shape[0]} "
            "images (or channels first)? Pass one 2-D image (e.g. stack[0]), or channels last "
            "(H x W x 3).")
    if arr.ndim == 4:
        raise ImageReadError(f"expected one 2-D image, got an array of shape {arr.shape}: a "
                             f"batch of {arr.shape[0]}? Pass the images one at a time.")
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ImageReadError(f"expected a 2-D grey image, got an array of shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ImageReadError(f"the image contains {bad} non-numeric (NaN/inf) pixel values; "
                             "replace them (e.g. np.nan_to_num) before segmenting.")
    return arr


def to_mask(prob: np.ndarray, threshold: float = 0.5, largest_only: bool = True) -> np.ndarray:
    """Probability map -> binary mask; each SCR structure is one solid piece."""
    mask = prob >= threshold
    if largest_only and mask.any():
        # Components and holes lie inside the mask's bounding box, and all
        # outside it is background joined to the image border: working there
        # gives the same mask, 3-10x faster on a 1024 x 1024 map.
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        inner = fill_holes(largest_component(mask[box]))
        mask = np.zeros_like(mask)
        mask[box] = inner
    return mask


def one_piece(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The probability map made consistent with the post-processed mask: pixels
    of components detached from the largest one (at ``threshold``) set to 0,
    holes inside it raised to ``threshold``; elsewhere the model's values.

    So ``one_piece(p) >= threshold`` is exactly ``to_mask(p, threshold)``, the
    mask every reported figure is measured on (nnU-Net applies the same rule
    to its outputs). Worth +0.005-0.007 Jaccard for the right clavicle (specks
    near the spine, a piece at the root of the neck) and +0.0003-0.0007 for
    heart and lungs on held-out cases.
    """
    raw = prob >= threshold
    if not raw.any():
        return prob
    mask = to_mask(prob, threshold, largest_only=True)
    out = prob.copy()
    out[raw & ~mask] = 0.0
    filled = mask & ~raw
    out[filled] = np.maximum(out[filled], np.float32(threshold))
    return out


class Segmenter:
    """A model set: one ResNet34 U-Net per region, described by a manifest.

    Constructing one reads the manifest only. Each region's forward pass is
    prepared on first use, or all at once by :meth:`load` (or in the
    background, :meth:`start_loading`), on the set's ``engine``
    (:mod:`cxr_dash.engine`: OpenVINO when installed, else Keras). The Keras
    model itself, which the gradient explanations need, is built only when
    :meth:`model` is first asked for it.
    """

    def __init__(self, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR, regions=None,
                 engine: str | None = None):
        from .engine import ENGINES, default_engine

        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        available = self.manifest["regions"]
        if not isinstance(available, dict):
            raise ModelSetError(f"{self.model_dir / MANIFEST_NAME}: \"regions\" must map each "
                                "region to its entry.")
        wanted = regions or REGION_KEYS
        self.regions: tuple[str, ...] = tuple(r for r in REGION_KEYS if r in available and r in wanted)
        if not self.regions:
            raise ModelSetError(f"{self.model_dir} has no model for {', '.join(wanted)}")
        self.engine = engine or default_engine()
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        self._weights = {region: self._checked_entry(region)[0] for region in self.regions}
        self._runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        self._models = {}                    # Keras models, built when first asked for
        self._locks = {r: threading.Lock() for r in self.regions}
        self._keras_locks = {r: threading.Lock() for r in self.regions}
        self._loading: Loading | None = None
        self._loading_lock = threading.Lock()
        # Regions served by Keras although the set's engine is another: {region: why}.
        self.fallbacks: dict[str, str] = {}

    def _checked_entry(self, region: str) -> tuple[Path, int]:
        """(weights file, input size) of a region's manifest entry, or ModelSetError
        naming the manifest: a hand-edited entry must not fail with a KeyError."""
        manifest_path = self.model_dir / MANIFEST_NAME
        entry = self.manifest["regions"][region]
        if not isinstance(entry, dict) or not isinstance(entry.get("weights"), str):
            raise ModelSetError(f"{manifest_path}: the {region} entry names no weights file.")
        path = self.model_dir / entry["weights"]
        if not path.is_file():
            raise ModelSetError(f"{path} is missing: the manifest names it for {region}.")
        if not zipfile.is_zipfile(path):
            # Checked here: numpy's own message for a non-.npz file is about pickles.
            raise ModelSetError(f"{path}: the {region} weights file is truncated or not a "
                                ".npz archive; copy it again or retrain the region.")
        try:
            size = int(entry["input_size"])
        except (KeyError, TypeError, ValueError):
            size = 0
        if size < 32 or size % 32:
            raise ModelSetError(
                f"{manifest_path}: the {region} entry needs an input_size, a multiple of 32 "
                f"(the U-Net halves it five times); found {entry.get('input_size')!r}.")
        try:
            FieldOfView.parse(entry.get("field_of_view"))
        except (TypeError, ValueError) as exc:
            raise ModelSetError(f"{manifest_path}: the {region} field_of_view is invalid "
                                f"({exc}).") from None
        try:
            check_intensity((entry.get("preprocessing") or {}).get("intensity"))
        except (AttributeError, ValueError) as exc:
            raise ModelSetError(f"{manifest_path}: the {region} preprocessing is not one this "
                                f"version knows ({exc}); update cxr-dash or retrain.") from None
        return path, size

    def load(self, regions=None, progress: Callable[[int, int, str], None] | None = None) -> "Segmenter":
        """Prepare the forward pass of every region now (converting a model whose
        weights are new to the engine's cache first). ``progress(done, total, text)``
        is called before each region. Raises ModelSetError for damaged weights."""
        regions = tuple(regions or self.regions)
        for i, region in enumerate(regions):
            if progress:
                progress(i, len(regions), f"Loading the {region.replace('_', ' ')} model")
            self._runner(region, on_convert=(lambda r: progress(
                i, len(regions), f"Converting the {r.replace('_', ' ')} model for the fast "
                "engine (once after new weights)")) if progress else None)
        return self

    def warm_up(self, progress: Callable[[int, int, str], None] | None = None) -> "Segmenter":
        """:meth:`load`, then one dummy prediction per model at its own input size:
        Keras' graph tracing or OpenVINO's kernels for that shape (seconds on a CPU)
        are paid here, not by the first image a user uploads."""
        self.load(progress=progress)
        # Five models traced in a row trip TensorFlow's "excessive retracing"
        # warning, meant for one function retraced in a loop; here each traces once.
        tf_logger = logging.getLogger("tensorflow")
        level = tf_logger.level
        tf_logger.setLevel(logging.ERROR)
        try:
            if progress:
                progress(len(self.regions), len(self.regions) + 1, "Warming up")
            self.predict_at_input_size(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
        finally:
            tf_logger.setLevel(level)
        return self

    def start_loading(self) -> "Loading":
        """:meth:`warm_up` in a background thread (once); the returned :class:`Loading`
        says how far it got, and :meth:`Loading.wait` for it."""
        with self._loading_lock:
            if self._loading is None:
                self._loading = Loading(self)
            return self._loading

    @property
    def ready(self) -> bool:
        """Whether every region's forward pass is prepared."""
        return all(r in self._runners for r in self.regions)

    def forward(self, region: str, batch: np.ndarray, release: bool | None = None) -> np.ndarray:
        """The region model's probabilities for a batch of its inputs:
        (N, S, S, 3) float32 -> (N, S, S) float32, on the set's engine. Any N and
        any S that is a multiple of 32 (the quality estimate's pass runs smaller).
        ``release``: free the engine's buffers after the call (default: the engine's
        choice, yes for OpenVINO; see :meth:`run_of_calls`)."""
        return self._runner(region)(batch, release=release)

    def precision(self, region: str) -> str:
        """The arithmetic of the region's forward pass: ``f32``, or ``bf16`` on the
        ``openvino-bf16`` engine where the CPU computes it natively."""
        return str(getattr(self._runner(region), "precision", "f32"))

    def describe_engine(self) -> str:
        """What runs the forward passes, in words (loads nothing)."""
        text = {"openvino": "OpenVINO, float32 (the Keras models' masks)",
                "openvino-bf16": "OpenVINO, bfloat16 where the CPU computes it (opt-in: about "
                                 "twice as fast, masks at Jaccard 0.997-0.999 of float32's)",
                "keras": "Keras (TensorFlow), float32"}[self.engine]
        if self.fallbacks:
            text += f"; Keras for {', '.join(sorted(self.fallbacks))} (the engine failed there)"
        return text

    def predictor(self, region: str) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`forward` of one region, as occlusion and the deletion test take it."""
        return lambda batch: self.forward(region, batch)

    @contextmanager
    def run_of_calls(self, region: str) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
        """A predictor of ``region`` for a run of many forward passes (occlusion, Score-CAM,
        the position tests): the engine keeps its buffers between the calls, ~20% faster
        at 256 px (occlusion 21 -> 18 s on 2 cores), and frees them when the run ends."""
        try:
            yield lambda batch: self.forward(region, batch, release=False)
        finally:
            self.release_memory()

    def release_memory(self) -> None:
        """Let the engine free what batched runs (occlusion, Score-CAM) allocated."""
        for runner in list(self._runners.values()):
            release = getattr(runner, "release", None)
            if release:
                release()

    def _runner(self, region: str, on_convert=None) -> Callable[[np.ndarray], np.ndarray]:
        runner = self._runners.get(region)
        if runner is not None:
            return runner
        with self._locks[region]:
            if region not in self._runners:
                self._runners[region] = self._make_runner(region, on_convert)
            return self._runners[region]

    def _make_runner(self, region: str, on_convert=None):
        from .engine import keras_predictor, load_openvino

        if self.engine.startswith("openvino") and region not in self.fallbacks:
            precision = "bf16" if self.engine == "openvino-bf16" else "f32"
            try:
                return load_openvino(self._weights[region], region, on_convert=on_convert,
                                     precision=precision)
            except (ModelSetError, MemoryError):
                raise
            except Exception as exc:      # not installed, a conversion that failed its check
                self.fallbacks[region] = f"{type(exc).__name__}: {exc}"
                log.warning("%s: OpenVINO unavailable (%s); using Keras", region,
                            self.fallbacks[region])
        return keras_predictor(self.model(region))

    def input_size(self, region: str) -> int:
        return int(self.manifest["regions"][region]["input_size"])

    def view(self, region: str) -> FieldOfView:
        """The part of the image the region's model sees (the whole image unless its
        manifest entry names a ``field_of_view``)."""
        return FieldOfView.parse(self.manifest["regions"][region].get("field_of_view"))

    def intensity(self, region: str) -> str:
        """The model-space intensity step its model was trained with (the manifest's
        ``preprocessing``; models from before that record used the percentile window)."""
        return check_intensity((self.entry(region).get("preprocessing") or {}).get("intensity"))

    def model_space(self, region: str) -> tuple[int, FieldOfView, str]:
        """(input size, field of view, intensity step): regions that share it share an input."""
        return self.input_size(region), self.view(region), self.intensity(region)

    def model(self, region: str):
        """The Keras model of one region (explanations need the graph itself), built
        on first use: it costs TensorFlow's import and ~1 s a model."""
        model = self._models.get(region)
        if model is not None:
            return model
        from .engine import build_keras, trim_heap

        with self._keras_locks[region]:
            if region not in self._models:
                self._models[region] = build_keras(self._weights[region], region,
                                                   self.input_size(region))
                trim_heap()     # the dequantised copies of the weights, freed, go back
            return self._models[region]

    def entry(self, region: str) -> dict:
        return self.manifest["regions"][region]

    def training_cases(self, region: str) -> set[str]:
        return training_cases(self.entry(region))

    def regions_trained_on(self, case_id: str) -> list[str]:
        """Regions whose model saw this case in training: their scores on it are not held out."""
        return [r for r in self.regions if case_id.upper() in self.training_cases(r)]

    def prepare(self, image, region: str) -> np.ndarray:
        """The model input of ``region`` for this image: (S, S, 3) float32."""
        return prepare_input(as_grayscale(image), *self.model_space(region))

    def prepare_mask(self, mask, region: str) -> np.ndarray:
        """A full-image mask (e.g. ground truth) in the region's model space: (S, S) bool."""
        return resize_mask(mask, self.input_size(region), self.view(region)).astype(bool)

    def to_image(self, model_map: np.ndarray, region: str, shape: tuple[int, int]) -> np.ndarray:
        """A model-space map (probability, heatmap) of ``region`` at an image's size;
        zero outside the model's field of view."""
        return upsample_probability(model_map, shape, self.view(region))

    def predict_at_input_size(self, image, regions=None) -> dict[str, np.ndarray]:
        """{region: (S, S) float32} in each model's own space (input size, field of view)."""
        image = as_grayscale(image)
        check_segmentable(image)     # >= 64 px a side, within 1:4, not uniform
        regions = tuple(regions or self.regions)
        inputs: dict[tuple, np.ndarray] = {}
        out = {}
        for region in regions:
            space = self.model_space(region)
            if space not in inputs:  # regions of one model space share their preprocessing
                inputs[space] = prepare_input(image, *space)[None]
            out[region] = self.forward(region, inputs[space])[0]
        return out

    @property
    def default_tta(self) -> bool:
        """Whether this set's :meth:`predict` averages shifted grids unless told otherwise
        (the manifest's ``test_time_augmentation``, set when evaluation showed it helps)."""
        return bool(self.manifest.get("test_time_augmentation", False))

    def predict(self, image, regions=None, tta: bool | None = None,
                one_piece_at: float | None = 0.5, trim_borders: bool = True) -> dict[str, np.ndarray]:
        """{region: float32 probability map at the image's own size}.

        ``tta``: average over :data:`TTA_SHIFTS` (4 forward passes per region);
        None uses the model set's default.
        ``one_piece_at``: each SCR structure is one solid piece, so by default the
        maps are post-processed at this threshold (:func:`one_piece`: detached
        islands 0, holes raised to it) and thresholding them at 0.5 gives the
        evaluated masks; None returns the models' raw output (the app's
        heatmaps, whose threshold is a slider).
        ``trim_borders``: the models see the image without its wide uniform edge bands
        (:func:`~cxr_dash.preprocess.content_box`: padding, a letterbox, a scan's
        margin), and the maps are 0 over them; a no-op on SCR radiographs.
        """
        image = as_grayscale(image)
        check_segmentable(image)     # >= 64 px a side, within 1:4, not uniform
        h, w = image.shape
        y0, y1, x0, x1 = content_box(image) if trim_borders else (0, h, 0, w)
        probs = self._predict_raw(image[y0:y1, x0:x1], regions, tta)
        if (y0, y1, x0, x1) != (0, h, 0, w):
            probs = {r: np.pad(p, ((y0, h - y1), (x0, w - x1))) for r, p in probs.items()}
        if one_piece_at is None:
            return probs
        return {r: one_piece(p, one_piece_at) for r, p in probs.items()}

    def _predict_raw(self, image, regions, tta) -> dict[str, np.ndarray]:
        image = as_grayscale(image)
        regions = tuple(regions or self.regions)
        if not (self.default_tta if tta is None else tta):
            small = self.predict_at_input_size(image, regions)
            return {r: self.to_image(p, r, image.shape) for r, p in small.items()}
        by_space: dict[tuple, list[str]] = {}
        for r in regions:
            by_space.setdefault(self.model_space(r), []).append(r)
        out = {}
        for (size, view, _), group in by_space.items():
            y0, y1, x0, x1 = view.box(image.shape)
            sums = {r: np.zeros((size, size), np.float32) for r in group}
            for sy, sx in TTA_SHIFTS:
                # Shift the image by a fraction of a model pixel before it is
                # resampled, then shift each output back on the model's grid
                # (cheap: 128 x 128, not the image's size).
                dy, dx = sy * (y1 - y0) / size, sx * (x1 - x0) / size   # image pixels
                small = self.predict_at_input_size(shift_image(image, dy, dx), group)
                for r in group:
                    sums[r] += shift_image(small[r], -sy, -sx)
            out.update({r: self.to_image(sums[r] / len(TTA_SHIFTS), r, image.shape) for r in group})
        return {r: out[r] for r in regions}

    @property
    def quality_model(self):
        """The set's fitted quality estimate (``quality.json``), or None where it has none."""
        if not hasattr(self, "_quality_model"):
            from .quality_estimate import QualityModel
            self._quality_model = QualityModel.load(self.model_dir)
        return self._quality_model

    def estimate_quality(self, image, probabilities: dict[str, np.ndarray] | None = None,
                         regions=None, quality_model=None) -> dict[str, float | None]:
        """{region: estimated Jaccard of its mask against a careful manual outline}, in [0, 1].

        ``probabilities``: the raw maps of this image (``predict(image, one_piece_at=None,
        trim_borders=False)``, as the app keeps them); computed when not given. Costs one
        perturbed pass per region at ~70% of its input size (:mod:`cxr_dash.quality_estimate`).
        None per region where the set has no fitted estimate.
        """
        from .quality_estimate import feature_table, perturbed_probabilities

        image = as_grayscale(image)
        regions = tuple(r for r in self.regions if regions is None or r in regions)
        model = quality_model or self.quality_model
        if model is None:
            return {r: None for r in regions}
        if probabilities is None:
            # As predict sees it: without wide uniform edge bands.
            y0, y1, x0, x1 = content_box(image)
            image = image[y0:y1, x0:x1]
            probabilities = self.predict(image, regions, one_piece_at=None, trim_borders=False)
        probabilities = {r: probabilities[r] for r in regions}
        perturbed = perturbed_probabilities(self, np.asarray(image, np.float32), regions)
        features = feature_table(probabilities, perturbed, model.stats)
        return {r: model.estimate(r, features[r]) for r in regions}

    def masks(self, probabilities: dict[str, np.ndarray], threshold: float = 0.5,
              largest_only: bool = True) -> dict[str, np.ndarray]:
        return {r: to_mask(p, threshold, largest_only) for r, p in probabilities.items()}


class Loading:
    """A model set's :meth:`Segmenter.warm_up` running in a background thread."""

    def __init__(self, segmenter: Segmenter):
        self.done, self.total, self.text = 0, len(segmenter.regions) + 1, "Loading the models"
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(segmenter,), daemon=True,
                                        name="cxr-dash model loading")
        self._thread.start()

    def _run(self, segmenter: Segmenter) -> None:
        def progress(done, total, text):
            self.done, self.total, self.text = done, total, text
        try:
            segmenter.warm_up(progress=progress)
            self.done, self.text = self.total, "Models ready"
        except BaseException as exc:     # reported to whoever waits
            log.exception("loading the model set %s failed", segmenter.model_dir)
            self.error = exc
        finally:
            self._finished.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / max(1, self.total))

    def wait(self, timeout: float | None = None) -> bool:
        """Whether loading has finished (successfully or not) within ``timeout`` seconds."""
        return self._finished.wait(timeout)


def load_segmenter(model_dir: str | os.PathLike | None = None, regions=None,
                   warm_up: bool = True, engine: str | None = None) -> Segmenter:
    """Load a model set (default: the project's ``weights/``).

    Every region's forward pass is prepared on ``engine`` (:mod:`cxr_dash.engine`;
    default OpenVINO where installed, ``CXR_ENGINE`` overrides). With ``warm_up``
    (the default) each model also runs once on a dummy input, so the first real
    :meth:`Segmenter.predict` is as fast as the next ones.

    Raises :class:`~cxr_dash.errors.ModelSetError` with instructions when
    none has been trained yet, or when a weights file is damaged.
    """
    segmenter = Segmenter(model_dir or DEFAULT_MODEL_DIR, regions, engine)
    return segmenter.warm_up() if warm_up else segmenter.load()
