"""The forward pass of the region models: OpenVINO for speed, Keras as the reference.

Predictions, test-time augmentation, the quality estimate's perturbed pass,
occlusion and the deletion test only need a model's output, so they run on
an inference engine; the explanations that need gradients (Grad-CAM and its
kin, SmoothGrad) still build the Keras model, on demand
(:meth:`cxr_dash.inference.Segmenter.model`).

Engines (``CXR_ENGINE`` or ``load_segmenter(engine=...)``):

- ``openvino`` (the default when the package is installed): each region's
  U-Net converted once to OpenVINO IR with any batch and input size, compiled
  for the CPU in float32 (``INFERENCE_PRECISION_HINT`` f32: the bfloat16 that
  OpenVINO picks by default on CPUs with AMX moved masks visibly). The
  converted files live in the user's cache (:func:`engine_cache_dir`), named
  by the SHA-256 of the weights file they were made from, so replaced weights
  are converted again and unchanged ones never are; converting needs
  TensorFlow and takes ~5 s a model, loading a converted one ~0.2 s and no
  TensorFlow. Nothing is downloaded.
- ``openvino-bf16``: the same converted models run in bfloat16 where the CPU
  computes it natively (AVX512_BF16 or AMX; float32 elsewhere, with a warning):
  about twice as fast, since float32 already runs at the cores' arithmetic
  peak, and half the weights' memory, but not exact: on 30 SCR and Shenzhen
  radiographs its maps differ from float32 by 2e-5-2e-4 on average and its
  masks agree at Jaccard 0.997-0.999 (0.987 at worst, a clavicle's edge).
  Opt-in (batch runs over many images), never the default.
- ``keras``: the models' own ``predict_on_batch`` (TensorFlow), as before.

Timings on 2 CPU cores, before and after: docs/results.md, "Speed".
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import ModelSetError

log = logging.getLogger(__name__)

ENGINE_ENV = "CXR_ENGINE"
ENGINES = ("openvino", "openvino-bf16", "keras")
# Part of every converted file's name: raise it when the conversion itself changes.
CONVERSION_VERSION = 1
# A converted model must reproduce the Keras model's output to this (checked once,
# on a random input, right after converting).
CONVERSION_TOLERANCE = 1e-4
# The converted files of replaced weights are removed once the cache holds more.
CACHE_LIMIT_BYTES = 2 * 2**30


class EngineError(RuntimeError):
    """The fast engine cannot serve a model (not installed, conversion failed)."""


def default_engine() -> str:
    """``CXR_ENGINE`` when set, else ``openvino`` when it is installed, else ``keras``."""
    value = os.environ.get(ENGINE_ENV, "").strip().lower()
    if value:
        if value not in ENGINES:
            raise ValueError(f"{ENGINE_ENV}={value!r}: expected one of {', '.join(ENGINES)}")
        return value
    import importlib.util

    return "openvino" if importlib.util.find_spec("openvino") is not None else "keras"


def cpu_threads() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:          # not on Linux
        return max(1, os.cpu_count() or 1)


def engine_cache_dir() -> Path:
    """Where converted models are kept: ``<cache>/engine`` (``CXR_CACHE_DIR``, default
    ``~/.cache/cxr_dash``), never inside the project."""
    from .data import default_cache_dir

    return default_cache_dir() / "engine"


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file (hex): the key of everything converted from it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_keras_weights(model, path: Path, region: str) -> None:
    """``load_compact`` with the damage a copy can suffer named as a ModelSetError."""
    from .model import load_compact

    try:
        load_compact(model, path)
    except MemoryError:
        raise
    except Exception as exc:
        # A truncated or damaged .npz raises whatever numpy / zipfile meets
        # first (BadZipFile, EOFError, zlib.error, ValueError, ...).
        raise ModelSetError(
            f"{path}: the {region} weights cannot be loaded ({type(exc).__name__}: "
            f"{exc}). The file is truncated, corrupt or from another architecture; "
            "copy it again or retrain the region.") from None


def build_keras(path: Path, region: str, input_size: int | None):
    """The Keras U-Net of a region with its compact weights."""
    from .model import build_unet

    model = build_unet(input_size)
    load_keras_weights(model, path, region)
    return model


# ---------------------------------------------------------------- OpenVINO

_core = None
_core_lock = threading.Lock()


def _openvino_core():
    global _core
    with _core_lock:
        if _core is None:
            try:
                import openvino as ov
            except ImportError as exc:
                raise EngineError(f"OpenVINO is not installed ({exc})") from None
            _core = ov.Core()
        return _core


def _openvino_version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def converted_path(weights: Path, digest: str) -> Path:
    """The OpenVINO IR (.xml, its .bin beside it) converted from ``weights``."""
    return engine_cache_dir() / (f"{weights.stem}-{digest[:32]}-ov{_openvino_version()}"
                                 f"-v{CONVERSION_VERSION}.xml")


def convert_to_openvino(weights: Path, region: str, target: Path) -> Path:
    """Convert a region's compact weights to OpenVINO IR at ``target`` (needs TensorFlow).

    The IR takes any batch and any input side (a multiple of 32), float32
    weights. Its output is checked against the Keras model before it is kept;
    files appear under their final names only once complete (renamed into place,
    the .bin before the .xml), so a reader never sees half a model.
    """
    import openvino as ov

    model = build_keras(weights, region, None)
    with warnings.catch_warnings():
        # Keras 3 warns that the traced call passes its one input in a tuple.
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
        ov_model = ov.convert_model(model, input=[(-1, -1, -1, 3)])
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    expected = np.asarray(keras_call(model, x), np.float32)[..., 0]
    got = OpenVinoModel(ov_model)(x)
    error = float(np.abs(got - expected).max())
    if not error <= CONVERSION_TOLERANCE:
        raise EngineError(f"{weights}: the OpenVINO conversion differs from the Keras model by "
                          f"{error:.2g} (allowed {CONVERSION_TOLERANCE:g})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.tmp{os.getpid()}-{threading.get_ident()}.xml")
    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
    os.replace(tmp, target)
    prune_cache(keep=target)
    return target


def prune_cache(keep: Path | None = None, limit: int = CACHE_LIMIT_BYTES) -> int:
    """Remove the least recently used converted models while the cache holds more than
    ``limit`` bytes (weights replaced since); returns the files removed."""
    folder = engine_cache_dir()
    models = []
    for xml in folder.glob("*.xml"):
        if ".tmp" in xml.name:
            continue
        try:
            size = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
            models.append((xml.stat().st_mtime, size, xml))
        except FileNotFoundError:
            continue
    total, removed = sum(m[1] for m in models), 0
    for _, size, xml in sorted(models):
        if total <= limit:
            break
        if keep is not None and xml == keep:
            continue
        for f in (xml, xml.with_suffix(".bin")):
            try:
                f.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        total -= size
    return removed


class OpenVinoModel:
    """A compiled OpenVINO model as ``(N, S, S, 3) float32 -> (N, S, S) float32``.

    Any batch and side; float32 throughout; one inference at a time (a lock:
    the dashboard's sessions share it, and the model gate already limits how
    many runs the server does at once).

    Memory: the CPU plugin repacks the weights for its kernels on the first
    inference and keeps that copy (~98 MB a model). The converted file stays
    mapped beside it, clean and never read again, so its pages are handed back
    to the kernel then (``MADV_PAGEOUT``: re-read from disk should one ever be
    needed). A call's activations (~70 MB at 384 px, hundreds for a batch) are
    freed by :meth:`release`, after every call where ``release_after_call``.
    """

    def __init__(self, model, threads: int | None = None, release_after_call: bool = True,
                 precision: str = "f32"):
        core = _openvino_core()
        if precision == "bf16" and not bf16_native():
            log.warning("this CPU has no native bfloat16: the models run in float32")
            precision = "f32"
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                  "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads or cpu_threads()}
        self.source = model if isinstance(model, Path) else None
        self._compiled = core.compile_model(str(model) if self.source else model, "CPU", config)
        compiled_as = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = getattr(compiled_as, "get_type_name", lambda: str(compiled_as))()  # f32
        if precision == "f32" and self.precision != "f32":
            # Never bf16 unasked: it moves mask edges (see the module's text).
            raise EngineError(f"OpenVINO compiled the model in {self.precision}, not float32")
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self._shapes: set[tuple[int, ...]] = set()
        self.release_after_call = release_after_call

    def __call__(self, batch: np.ndarray, release: bool | None = None) -> np.ndarray:
        """Probabilities of a batch; ``release`` (default ``release_after_call``) frees the
        call's activations after it: a run of many calls (occlusion) passes False and
        calls :meth:`release` at its end, as reallocating them costs ~20% of a 256 px pass."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            y = self._request.infer({0: x})[0]
            out = np.array(y[..., 0], dtype=np.float32)
            if x.shape not in self._shapes:       # new kernels, weights repacked for them
                self._shapes.add(x.shape)
                if self.source is not None:
                    page_out(self.source.with_suffix(".bin"))
            if self.release_after_call if release is None else release:
                self._release()
        return out

    def release(self) -> None:
        """Free the activations of the calls since the last release."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        self._compiled.release_memory()
        trim_heap()


def bf16_native() -> bool:
    """Whether OpenVINO's CPU plugin computes bfloat16 natively on this machine."""
    return "BF16" in _openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


_libc_handle = None


def _libc():
    """glibc through ctypes, or None (another C library, another OS)."""
    global _libc_handle
    if _libc_handle is None:
        try:
            import ctypes

            _libc_handle = ctypes.CDLL("libc.so.6", use_errno=True)
            _libc_handle.malloc_trim      # noqa: B018 (glibc only)
        except (OSError, AttributeError):
            _libc_handle = False
    return _libc_handle or None


def trim_heap() -> None:
    """Return freed heap memory to the kernel (glibc's ``malloc_trim``; a no-op elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


MADV_PAGEOUT = 21      # Linux >= 5.4


def page_out(path: Path) -> int:
    """Hand the pages of ``path`` mapped into this process back to the kernel (clean file
    pages: they are read again from disk if touched); returns the bytes advised."""
    name = str(path)
    return page_out_mapped(lambda mapped: mapped == name)


def page_out_tensorflow() -> int:
    """Hand back the pages of TensorFlow's libraries that its import read and nothing
    reads again (its static initialisers and registrations, ~330 MB of RSS here): a
    Grad-CAM afterwards faults ~20 MB of them back in, once. Returns the bytes advised."""
    return page_out_mapped(lambda mapped: "/tensorflow/" in mapped and ".so" in mapped)


def page_out_mapped(match: Callable[[str], bool]) -> int:
    """``MADV_PAGEOUT`` on this process's read-only file mappings whose path ``match``es
    (writable ones hold private copies, which are not the file's to re-read). Pages
    another process maps too stay resident. Returns the bytes advised."""
    libc = _libc()
    if libc is None:
        return 0
    import ctypes

    advised, ranges = 0, []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[1][1] != "w" and match(fields[5].rstrip("\n")):
                    ranges.append(fields[0])
    except OSError:
        return 0
    for span in ranges:
        start, end = (int(v, 16) for v in span.split("-"))
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_PAGEOUT) == 0:
            advised += end - start
    return advised


def load_openvino(weights: Path, region: str, threads: int | None = None,
                  on_convert: Callable[[str], None] | None = None,
                  precision: str = "f32") -> OpenVinoModel:
    """The region's model on OpenVINO: from the cache, or converted into it first
    (``on_convert(region)`` is told before a conversion starts); ``precision``
    ``f32`` or ``bf16`` (one converted file serves both)."""
    _openvino_core()
    target = converted_path(weights, weights_digest(weights))
    if not (target.is_file() and target.with_suffix(".bin").is_file()):
        if on_convert:
            on_convert(region)
        started = time.perf_counter()
        convert_to_openvino(weights, region, target)
        log.info("%s: converted to OpenVINO in %.1f s (%s)", region, time.perf_counter() - started,
                 target)
    else:
        try:
            os.utime(target)         # recently used: kept when the cache is pruned
        except OSError:
            pass
    return OpenVinoModel(target, threads, precision=precision)


def keras_call(model, batch: np.ndarray) -> np.ndarray:
    """One direct call of a Keras model (no ``predict`` function traced: used once)."""
    import keras

    return keras.ops.convert_to_numpy(model(batch, training=False))


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras region model as ``(N, S, S, 3) -> (N, S, S)`` float32."""
    def predict(batch: np.ndarray, release: bool | None = None) -> np.ndarray:
        # ``release``: as OpenVinoModel's; Keras keeps no per-call buffers to free.
        return np.asarray(model.predict_on_batch(np.asarray(batch, np.float32)), np.float32)[..., 0]
    return predict


def main(argv=None) -> int:
    """``python -m cxr_dash.engine [--models weights]``: convert a model set now (e.g.
    when deploying), so the dashboard's first start after new weights is fast too."""
    import argparse

    from .inference import Segmenter

    parser = argparse.ArgumentParser(prog="python -m cxr_dash.engine", description=main.__doc__)
    parser.add_argument("--models", default=None, help="model set folder (default: weights/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .manifest import DEFAULT_MODEL_DIR

    seg = Segmenter(args.models or DEFAULT_MODEL_DIR, engine="openvino")
    started = time.perf_counter()
    seg.load()
    print(f"{len(seg.regions)} regions ready on {seg.engine} in {time.perf_counter() - started:.1f} s "
          f"({engine_cache_dir()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
