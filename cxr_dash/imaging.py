"""Readers for radiographs and masks.

Every reader returns pixels in *display orientation* (bone bright, air dark)
as a 2-D array, and raises :class:`~cxr_dash.errors.ImageReadError` with a
message a user understands for anything it cannot use. Orientation and
format quirks (JSRT's inverted raw files, DICOM MONOCHROME1, rescale and
VOI LUT) are solved here once, so nothing downstream has to know where an
image came from.
"""
from __future__ import annotations

import io
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageReadError

log = logging.getLogger(__name__)

# Limits checked from the header, before anything is decoded. A detector's radiograph
# is at most ~4300 x 4300 (43 cm at 0.1 mm); 6000 x 6000 leaves room for any of them.
MAX_PIXELS = 36_000_000
# What the decoder would allocate for one image (all its samples): a 4300 x 4300 16-bit
# RGBA PNG is 148 MB, the 7999 x 7999 16-bit RGBA bomb 512 MB.
MAX_DECODED_BYTES = 256 * 2**20
MAX_FILE_BYTES = 512 * 1024 * 1024
MIN_SIDE = 32
# What the models can segment (Segmenter.predict and the app's uploads): smaller or
# more elongated images are refused with a message rather than segmented into nothing.
MIN_SEGMENT_SIDE = 64
MAX_ASPECT = 4.0
JSRT_SIDE = 2048
JSRT_SPACING_MM = 0.175          # at 2048 x 2048; SCR masks are 1024 x 1024 at 0.35 mm
SUPPORTED = "PNG, JPEG, TIFF, DICOM (.dcm) or JSRT raw .IMG"
UNNAMED = "the upload"           # what messages call a source that has no file name
DICOM_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")



@dataclass
class Radiograph:
    """A decoded radiograph: pixels in display orientation plus what is known of them."""

    pixels: np.ndarray                     # 2-D, uint8 / uint16 / float32
    source_format: str                     # "png", "jpeg", "dicom", "jsrt-img", "gif"
    name: str = ""
    pixel_spacing_mm: float | None = None  # None when the file does not say
    notes: list[str] = field(default_factory=list)  # harmless conversions done
    # DICOM only: the pixels as the modality LUT left them, before the file's display
    # window / VOI LUT, in the same orientation; None when no window was applied. A
    # narrow window can clip the darkest lung to flat black, which the models cannot read.
    unwindowed: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # type: ignore[return-value]


def reorient(pixels: np.ndarray, invert: bool = False, mirror: bool = False) -> np.ndarray:
    """Correct an image stored the wrong way round: ``invert`` flips its grey scale within
    its own range (lungs dark again), ``mirror`` swaps left and right (the patient's right
    back on the image's left). The dtype and range are kept."""
    out = pixels
    if invert:
        lo, hi = out.min(), out.max()
        if out.dtype.kind in "uf" or int(hi) - int(lo) <= np.iinfo(out.dtype).max:
            # (hi - p) + lo stays within [lo, hi]: no wider copy of a large image needed.
            out = ((hi - out) + lo).astype(pixels.dtype, copy=False)
        else:
            wide = out.astype(np.int64)
            out = (int(hi) + int(lo) - wide).astype(pixels.dtype)
    if mirror:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _source_name(source) -> str:
    """The base name of a file-like object's ``.name`` ("" when it has none, or an fd number)."""
    name = getattr(source, "name", None)
    if isinstance(name, (str, os.PathLike)) and str(name):
        return Path(name).name
    return ""


def _as_bytes(source: bytes | str | os.PathLike | io.IOBase) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageReadError(f"{path.name}: no such file.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageReadError(f"{path.name}: the file is larger than "
                                 f"{MAX_FILE_BYTES // 2**20} MB; this is not a single radiograph.")
        return path.read_bytes(), path.name
    if hasattr(source, "read"):
        name = _source_name(source)
        try:
            data = source.read()
        except OSError:
            log.warning("reading %s failed", name or UNNAMED, exc_info=True)
            raise ImageReadError(f"{name or UNNAMED}: the file cannot be read (the transfer "
                                 "or the disk failed); upload or open it again.") from None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageReadError(f"{name or UNNAMED}: the file was opened as text; "
                                 "open it in binary mode ('rb').")
        return bytes(data), name
    raise ImageReadError(f"cannot read an image from a {type(source).__name__}.")


def read_image(source, name: str | None = None) -> Radiograph:
    """Decode a radiograph from a path, bytes or a file-like object.

    The format is recognised from the content (PNG, JPEG, GIF, DICOM) or, for
    headerless JSRT ``.IMG`` files, from the extension and the byte count.
    """
    data, found_name = _as_bytes(source)
    name = name or found_name or UNNAMED
    if len(data) == 0:
        raise ImageReadError(f"{name}: the file is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise ImageReadError(f"{name}: the file is larger than {MAX_FILE_BYTES // 2**20} MB.")
    ext = Path(name).suffix.lower()
    if (data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff"
            or data[:4] in (b"GIF8", b"II*\0", b"MM\0*")):
        image = _read_raster(data, name)
    elif data[128:132] == b"DICM" or ext in (".dcm", ".dicom"):
        image = _read_dicom(data, name)
    elif ext == ".img":
        image = _read_jsrt_img(data, name)
    else:
        raise ImageReadError(f"{name}: not a supported image. Use {SUPPORTED}.")
    _check_usable(image.pixels, name)
    return image


def _megabytes(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


def _check_size(width: int, height: int, name: str, bytes_per_pixel: float | None = None,
                what: str = "") -> None:
    """Refuse, from the header's numbers, an image too large to decode (pixels, or the
    bytes its decoder would allocate: ``bytes_per_pixel``, ``what`` naming the layout)
    or too small to be a radiograph."""
    limit = (f"this app's limit is {MAX_PIXELS // 1_000_000} megapixels and "
             f"{_megabytes(MAX_DECODED_BYTES)} decoded")
    advice = "downsample it first (a radiograph needs no more than about 4300 x 4300)."
    if width * height > MAX_PIXELS:
        raise ImageReadError(
            f"{name}: {width} x {height} pixels ({width * height / 1e6:.1f} megapixels) is too "
            f"large; {limit}: {advice}")
    if bytes_per_pixel and width * height * bytes_per_pixel > MAX_DECODED_BYTES:
        raise ImageReadError(
            f"{name}: {width} x {height} pixels{f' of {what}' if what else ''} is too large: "
            f"{_megabytes(width * height * bytes_per_pixel)} once decoded; {limit}: {advice}")
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(f"{name}: {width} x {height} pixels is too small to be a radiograph.")


def check_segmentable(pixels: np.ndarray, name: str = "the image") -> None:
    """Refuse an image the models cannot segment: under :data:`MIN_SEGMENT_SIDE` pixels a
    side, more elongated than :data:`MAX_ASPECT` to 1 (a strip, not a chest), or one flat
    value. Shared by :meth:`~cxr_dash.inference.Segmenter.predict` and the dashboard's
    uploads, which are refused before anything is shown of them."""
    h, w = pixels.shape[:2]
    if min(h, w) < MIN_SEGMENT_SIDE:
        raise ImageReadError(
            f"{name}: {w} x {h} pixels is too small to segment; the models need at least "
            f"{MIN_SEGMENT_SIDE} pixels a side (a chest radiograph is usually 1000-4300).")
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ImageReadError(
            f"{name}: {w} x {h} pixels is a strip (1:{max(h, w) / min(h, w):.0f}), not a chest "
            f"radiograph; the models take images between 1:{MAX_ASPECT:.0f} and "
            f"{MAX_ASPECT:.0f}:1. Upload the whole radiograph, or crop it to the chest.")
    low, high = pixels.min(), pixels.max()
    if low == high:
        raise ImageReadError(f"{name}: the image is uniform (every pixel is {low:g}): "
                             "nothing to segment.")


def _check_usable(pixels: np.ndarray, name: str) -> None:
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageReadError(f"{name}: no 2-D image found in the file.")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise ImageReadError(f"{name}: the image contains non-numeric (NaN/inf) values.")
    if pixels.max() == pixels.min():
        raise ImageReadError(f"{name}: the image is uniform (every pixel the same); "
                             "nothing to segment.")


GRAY_CHUNK_ROWS = 256     # rows converted at a time: the float copy of a band, not of the image


def _to_gray(arr: np.ndarray, mode: str, order: tuple[int, int, int] = (0, 1, 2),
             name: str = "the image") -> np.ndarray:
    """Grey from (H, W, 1 | 2 | 3 | 4); ``order``: where R, G and B sit (OpenCV's BGR: (2, 1, 0)).

    Converted a band of rows at a time, so a 4300 x 4300 colour image needs a few MB of
    floats beside its result rather than three full-size float planes."""
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        # float32 holds 8- and 16-bit values exactly, not 32-bit ones (2**32 - 1 rounds up
        # past uint32's range), which get float64.
        wide = np.float64 if arr.dtype.kind in "ui" and arr.dtype.itemsize >= 4 else np.float32
        # ITU-R BT.601 luma, as PIL and OpenCV use for grey conversion.
        weights = np.array([0.299, 0.587, 0.114], wide)
        integer = arr.dtype.kind in "ui"
        out = np.empty(arr.shape[:2], arr.dtype if integer else np.float32)
        info = np.iinfo(arr.dtype) if integer else None
        for y in range(0, arr.shape[0], GRAY_CHUNK_ROWS):
            band = arr[y:y + GRAY_CHUNK_ROWS][..., list(order)].astype(wide) @ weights
            out[y:y + GRAY_CHUNK_ROWS] = (np.clip(np.round(band), info.min, info.max)
                                          if integer else band)
        return out
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        return arr[..., 0]
    log.warning("unsupported pixel layout %s (%s)", arr.shape, mode)
    channels = arr.shape[2] if arr.ndim == 3 else arr.ndim
    raise ImageReadError(f"{name}: its pixels are laid out as {channels} channels, which is not "
                         "a grey or colour image; export it as PNG.")


def _bomb_message(exc: Exception, name: str) -> str:
    """The "too large" message for PIL's decompression-bomb refusal, which comes
    before the header's size is available to :func:`_check_size`."""
    claimed = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(claimed.group(1)) / 1e6:.0f} megapixels is" if claimed else "the image is"
    return (f"{name}: {size} too large (limit {MAX_PIXELS // 1_000_000} megapixels); "
            "downsample it first.")


def _is_16bit_colour_png(data: bytes) -> bool:
    """PNG header (IHDR, the first chunk) says 16 bits per sample with colour or alpha.
    PIL decodes those to 8 bits per channel; only 16-bit grey keeps its depth."""
    return (data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 26
            and data[24] == 16 and data[25] in (2, 4, 6))


# What PIL holds per pixel once it has decoded an image of each mode (multi-band modes
# take 4 bytes), and the mode in words for a message.
_PIL_MODES = {"1": (1, "1-bit"), "L": (1, "8-bit grey"), "P": (4, "palette colour"),
              "I;16": (2, "16-bit grey"), "I;16B": (2, "16-bit grey"), "I;16L": (2, "16-bit grey"),
              "I": (4, "32-bit integer"), "F": (4, "32-bit float"), "LA": (4, "8-bit grey + alpha"),
              "RGB": (4, "8-bit RGB"), "RGBA": (4, "8-bit RGBA"), "CMYK": (4, "CMYK")}


def _raster_layout(im, data: bytes) -> tuple[float, str]:
    """(bytes per pixel, layout in words) of what decoding ``im`` allocates."""
    if (im.format or "").lower() == "png" and _is_16bit_colour_png(data):
        # OpenCV gives grey + alpha as BGRA: 4 samples of 2 bytes, like RGBA.
        return {2: 6, 4: 8, 6: 8}[data[25]], "16-bit " + {2: "RGB", 4: "grey + alpha",
                                                          6: "RGBA"}[data[25]]
    return _PIL_MODES.get(im.mode, (4, im.mode))


def _decode_16bit_colour_png(data: bytes, name: str) -> np.ndarray:
    """(H, W, 3 | 4) uint16 in OpenCV's BGR(A) order, decoded by OpenCV, which keeps the
    16 bits (a grey + alpha PNG comes out as BGRA too)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageReadError(f"{name}: the 16-bit colour PNG is truncated or corrupt; "
                             "export it again.")
    return arr


def _corrupt(name: str, exc: BaseException, stage: str) -> ImageReadError:
    """The user's message for a decoder failure; the decoder's own text goes to the log."""
    log.info("%s: %s failed: %s: %s", name, stage, type(exc).__name__, exc)
    if stage == "header":
        return ImageReadError(f"{name}: the file is corrupt or not an image (its header cannot "
                              "be decoded). Export it again as PNG, JPEG or DICOM.")
    return ImageReadError(f"{name}: the file is truncated or corrupt (its pixels cannot be "
                          "decoded). Upload the complete file, or export it again.")


def _read_raster(data: bytes, name: str) -> Radiograph:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Between PIL's two limits the header only warns (into the server's
            # log); the size check below refuses it in the user's words.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is an exception only when warnings are errors; either way
        # the header claims far more than MAX_PIXELS.
        raise ImageReadError(_bomb_message(exc, name)) from None
    except UnidentifiedImageError:
        # PIL's own text names the in-memory buffer, not the file: say it in words.
        raise ImageReadError(f"{name}: the file is corrupt or not an image "
                             "(its header cannot be decoded).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _corrupt(name, exc, "header") from None
    # Only the header has been read: refuse a bomb before a byte of it is decoded.
    per_pixel, layout = _raster_layout(im, data)
    _check_size(im.width, im.height, name, per_pixel, layout)
    fmt = (im.format or "").lower()
    notes = []
    frames = int(getattr(im, "n_frames", 1) or 1)
    if frames > 1:     # animated GIF or PNG, multi-page TIFF: one image is a radiograph
        kind = {"gif": "an animated GIF", "png": "an animated PNG",
                "tiff": "a multi-page TIFF"}.get(fmt, "a multi-frame file")
        notes.append(f"first of {frames} frames used ({kind})")
    if fmt == "png" and _is_16bit_colour_png(data):
        im.close()
        arr = _decode_16bit_colour_png(data, name)
        return _raster_radiograph(arr, layout, fmt, name, notes, bgr=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # load() decodes the (first) frame; a truncated file raises here, not later.
            im.load()
        mode = im.mode
        if mode in ("P", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L"):
            arr = np.array(im, dtype=np.uint16)
        elif mode == "I":
            arr = np.array(im, dtype=np.int32)
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        elif mode == "F":
            arr = np.array(im, dtype=np.float32)
        elif mode in ("L", "RGB", "RGBA", "LA", "1"):
            arr = np.array(im.convert("L") if mode == "1" else im)
        elif mode == "CMYK":
            arr = np.array(im.convert("RGB"))
        else:
            arr = np.array(im.convert("L"))
        im.close()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(_bomb_message(exc, name)) from None
    except (ImageReadError, MemoryError):
        raise
    except Exception as exc:  # PIL's plugins raise OSError, ValueError, struct.error, ...
        raise _corrupt(name, exc, "pixel decoding") from None
    return _raster_radiograph(arr, mode, fmt, name, notes)


def _raster_radiograph(arr: np.ndarray, mode: str, fmt: str, name: str,
                       notes: list[str], bgr: bool = False) -> Radiograph:
    """Grey pixels of a decoded raster; ``bgr``: channels in OpenCV's order."""
    if arr.ndim == 3:
        alpha = arr[..., -1] if arr.shape[2] in (2, 4) else None
        colour = arr.shape[2] >= 3 and not (np.array_equal(arr[..., 0], arr[..., 1])
                                            and np.array_equal(arr[..., 1], arr[..., 2]))
        if colour:
            notes.append("colour image converted to grey")
        gray = _to_gray(arr, mode, (2, 1, 0) if bgr else (0, 1, 2), name)
        arr = gray if alpha is None else _composite_on_black(gray, alpha, notes)
    fmt = {"jpeg": "jpeg", "mpo": "jpeg", "png": "png", "gif": "gif",
           "tiff": "tiff"}.get(fmt, fmt or "raster")
    return Radiograph(np.ascontiguousarray(arr), fmt, name, None, notes)


def _composite_on_black(gray: np.ndarray, alpha: np.ndarray, notes: list[str]) -> np.ndarray:
    """``gray`` over a black background through ``alpha`` (as a viewer shows it on
    black): unchanged, with a note, when every pixel is opaque."""
    opaque = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
    clear = int(np.count_nonzero(alpha < opaque))
    if clear == 0:
        notes.append("alpha channel ignored")
        return gray
    notes.append(f"transparent image composited onto black ({clear / alpha.size:.0%} of its "
                 "pixels transparent or translucent)")
    out = np.empty_like(gray)
    for y in range(0, gray.shape[0], GRAY_CHUNK_ROWS):
        rows = slice(y, y + GRAY_CHUNK_ROWS)
        band = gray[rows].astype(np.float32) * (alpha[rows].astype(np.float32) / np.float32(opaque))
        out[rows] = np.round(band) if gray.dtype.kind in "ui" else band
    return out


def _read_dicom(data: bytes, name: str) -> Radiograph:
    import pydicom
    from pydicom.datadict import keyword_for_tag

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except MemoryError:
        raise
    except Exception as exc:
        # Besides InvalidDicomError, a damaged file meta header raises whatever its
        # first bad element does (NotImplementedError for an unknown VR, ...).
        log.info("%s: pydicom cannot parse the file: %s: %s", name, type(exc).__name__, exc)
        raise ImageReadError(f"{name}: not a readable DICOM file (its header is damaged or "
                             "truncated). Export it again from the archive, or as PNG.") from None
    if data[128:132] != b"DICM" and not any(keyword_for_tag(tag) for tag in ds.keys()):
        # force=True parses any bytes into "elements"; none of them a standard one
        # means the file is not DICOM at all, rather than a DICOM without an image.
        raise ImageReadError(f"{name}: not a DICOM file (no DICM marker and no standard DICOM "
                             f"elements). Use {SUPPORTED}.")
    try:
        return _dicom_radiograph(ds, name)
    except (ImageReadError, MemoryError):
        raise
    except Exception as exc:
        # pydicom parses elements lazily, so a malformed or unsupported header
        # element raises (ValueError, TypeError, NotImplementedError, numpy
        # ufunc errors, ...) wherever it is first used.
        log.info("%s: a DICOM element cannot be used", name, exc_info=True)
        raise ImageReadError(
            f"{name}: the DICOM header is malformed or uses a feature this reader does not "
            "support (an element's value cannot be read). Export the image again from the "
            "archive, uncompressed or as PNG.") from None


# The image pixel elements a decoder reads: each is checked, and named when malformed.
_DICOM_PIXEL_MODULE = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                       "HighBit", "PixelRepresentation", "PlanarConfiguration",
                       "PhotometricInterpretation", "NumberOfFrames")


def _dicom_value(ds, keyword: str, name: str, default=None):
    """An element's value; a malformed element (unknown VR, bad number, ...) is named."""
    try:
        value = ds.get(keyword, default)
        return default if value in (None, "") else value
    except Exception as exc:
        log.info("%s: DICOM element %s cannot be read: %s: %s", name, keyword,
                 type(exc).__name__, exc)
        raise ImageReadError(
            f"{name}: the DICOM header is malformed: its {keyword} element cannot be read. "
            "Export the image again from the archive, uncompressed or as PNG.") from None


def _dicom_int(ds, keyword: str, default: int, name: str = UNNAMED) -> int:
    value = _dicom_value(ds, keyword, name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ImageReadError(f"{name}: the DICOM header is malformed: its {keyword} is "
                             f"{str(value)[:40]!r}, not a whole number. Export the image "
                             "again.") from None


@dataclass(frozen=True)
class _DicomLayout:
    """The image a DICOM header describes, read before any pixel is decoded."""
    rows: int
    cols: int
    samples: int
    bits: int
    frames: int

    def describe(self) -> str:
        frames = f"{self.frames} frames of " if self.frames > 1 else ""
        samples = f", {self.samples} samples per pixel" if self.samples > 1 else ""
        return (f"{frames}{self.cols} x {self.rows} pixels (Columns x Rows; "
                f"{self.bits}-bit{samples})")

    def stored_bytes(self, photometric: str) -> int:
        """The native (uncompressed) pixel data's length for every frame, without padding."""
        bits = self.rows * self.cols * self.samples * self.bits * self.frames
        if photometric == "YBR_FULL_422":      # two chroma samples shared by two pixels
            bits = bits * 2 // 3
        return (bits + 7) // 8


def _dicom_layout(ds, name: str) -> _DicomLayout:
    for keyword in _DICOM_PIXEL_MODULE:
        _dicom_value(ds, keyword, name)
    layout = _DicomLayout(*(_dicom_int(ds, keyword, default, name) for keyword, default in (
        ("Rows", 0), ("Columns", 0), ("SamplesPerPixel", 1), ("BitsAllocated", 0),
        ("NumberOfFrames", 1))))
    if layout.rows <= 0 or layout.cols <= 0:
        raise ImageReadError(f"{name}: the DICOM header gives no image size (Rows / Columns "
                             "missing or 0), so its pixels cannot be placed. Export it again.")
    if layout.bits not in (1, 8, 16, 32, 64) or layout.samples not in (1, 3) or layout.frames < 1:
        raise ImageReadError(
            f"{name}: the DICOM header describes {layout.samples} sample(s) per pixel of "
            f"{layout.bits} bits allocated, in {layout.frames} frame(s): not an image this reader "
            "knows (1 or 3 samples of 1, 8, 16, 32 or 64 bits). Export it again, uncompressed "
            "or as PNG.")
    return layout


def _check_native_length(ds, keyword: str, layout: _DicomLayout, photometric: str,
                         name: str) -> None:
    """Refuse uncompressed pixel data whose length does not match the header: Rows or
    Columns off by a few would decode into a sheared, scrambled picture."""
    actual = len(ds[keyword].value)
    expected = layout.stored_bytes(photometric)
    if actual in (expected, expected + 1):          # DICOM pads odd lengths to even
        return
    said = (f"the header says {layout.describe()}, {expected} bytes, but the pixel data "
            f"holds {actual}")
    if actual < expected:
        raise ImageReadError(f"{name}: {said}: the file is truncated, or its Rows / Columns (or "
                             "NumberOfFrames) do not match its pixels. Upload the complete file, "
                             "or export it again.")
    raise ImageReadError(f"{name}: {said}: its Rows / Columns (or NumberOfFrames) do not match its "
                         "pixels, so the picture would come out scrambled. Export it again from "
                         "the archive.")


def _dicom_radiograph(ds, name: str) -> Radiograph:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

    keyword = next((k for k in DICOM_PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        raise ImageReadError(f"{name}: the DICOM file holds no image "
                             "(no PixelData, FloatPixelData or DoubleFloatPixelData).")
    layout = _dicom_layout(ds, name)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    # One frame is decoded (a radiograph is one image), so the limit is on one frame.
    frame_bytes = layout.samples * max(1, layout.bits // 8)
    samples = f" x {layout.samples} samples" if layout.samples > 1 else ""
    _check_size(layout.cols, layout.rows, name, frame_bytes, f"{layout.bits}-bit{samples}")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    encapsulated = (bool(syntax is not None and syntax.is_encapsulated)
                    or ds[keyword].is_undefined_length)
    if not encapsulated:
        _check_native_length(ds, keyword, layout, photometric, name)
    log.debug("%s: %s, %s", name, layout.describe(), syntax or "no transfer syntax")
    try:
        arr = pixel_array(ds, index=0)
    except Exception as exc:  # pydicom raises many types for bad/unsupported pixel data
        log.info("%s: decoding the DICOM pixel data failed: %s: %s", name, type(exc).__name__, exc)
        if (undecodable := _undecodable_syntax(ds)) is not None:
            raise ImageReadError(
                f"{name}: its pixel data is compressed as {undecodable}, which no decoder installed "
                "with this app reads. Export the image uncompressed (or as PNG) and upload "
                "that.") from None
        raise ImageReadError(
            f"{name}: the DICOM pixel data cannot be decoded: the file is truncated or damaged, "
            "or its compressed image does not match the size its header gives. Upload the "
            "complete file, or export it again uncompressed (or as PNG).") from None
    if arr.shape[:2] != (layout.rows, layout.cols):
        log.info("%s: decoded frame %s, header %s", name, arr.shape, layout.describe())
        raise ImageReadError(
            f"{name}: the header says {layout.cols} x {layout.rows} pixels but its image decodes "
            f"to {arr.shape[1]} x {arr.shape[0]}: the header does not match the pixels. Export "
            "it again from the archive.")
    notes = []
    if layout.frames > 1:
        notes.append(f"first of {layout.frames} frames used (a multi-frame DICOM)")
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        arr = apply_color_lut(arr, ds)  # stored values are indices into the palette
    if arr.ndim == 3:  # RGB / YBR secondary capture
        arr = _to_gray(arr, photometric, name=name)
        notes.append("colour DICOM converted to grey")
    stored = arr
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            arr = _pointwise(lambda band: apply_modality_lut(band, ds), stored)
        usable = np.isfinite(arr).all() or not np.isfinite(stored).all()
    except Exception:  # numpy's own text (ufunc loops, dtypes) would not help the user
        usable = False
    if not usable:
        raise ImageReadError(
            f"{name}: the DICOM rescale (RescaleSlope {_dicom_text(ds, 'RescaleSlope')}, "
            f"RescaleIntercept {_dicom_text(ds, 'RescaleIntercept')}) or modality LUT is "
            "invalid: it does not give numeric pixel values.")
    unwindowed = None
    if ("WindowCenter" in ds and "WindowWidth" in ds) or "VOILUTSequence" in ds:
        windowed, voi_note = _apply_voi(arr, ds)
        notes.append(voi_note)
        arr, unwindowed = windowed, (arr if windowed is not arr else None)
    # MONOCHROME1: high values are dark. A Presentation LUT Shape of INVERSE says the
    # same of a MONOCHROME2 image; on a MONOCHROME1 one it restates that inversion (the DX
    # IOD requires INVERSE there), so the grey scale is flipped once either way.
    inverse_lut = str(ds.get("PresentationLUTShape", "") or "").strip().upper() == "INVERSE"
    if photometric == "MONOCHROME1" or (inverse_lut and photometric == "MONOCHROME2"):
        arr = reorient(arr, invert=True)
        unwindowed = None if unwindowed is None else reorient(unwindowed, invert=True)
        notes.append("MONOCHROME1 inverted to display orientation" if photometric == "MONOCHROME1"
                     else "Presentation LUT INVERSE applied: inverted to display orientation")
    return Radiograph(np.ascontiguousarray(arr), "dicom", name, _dicom_spacing(ds), notes,
                      None if unwindowed is None else np.ascontiguousarray(unwindowed))


def _undecodable_syntax(ds) -> str | None:
    """The file's transfer syntax, named, when no installed decoder reads it; else None.

    pydicom's own message lists plugin packages to install, which helps a developer but
    not the person uploading. The pinned GDCM decodes JPEG baseline and lossless, JPEG-LS
    and JPEG 2000; this names what is left (High-Throughput JPEG 2000, video, ...)."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if not syntax:
        return None
    try:
        if get_decoder(syntax).is_available:
            return None
    except NotImplementedError:        # no decoder exists for it at all
        pass
    except Exception:
        return None
    known = syntax.name != str(syntax)
    return f"'{syntax.name}'" if known else f"transfer syntax {syntax}"


def _pointwise(lut, arr: np.ndarray) -> np.ndarray:
    """float32 ``lut(arr)`` for a per-pixel function (a DICOM modality or VOI LUT), applied
    a band of rows at a time: pydicom computes in float64, which for a whole 4300 x 4300
    image means several 148 MB temporaries."""
    out = np.empty(arr.shape, np.float32)
    for y in range(0, arr.shape[0], GRAY_CHUNK_ROWS):
        band = np.asarray(lut(arr[y:y + GRAY_CHUNK_ROWS]))
        if band.shape != out[y:y + GRAY_CHUNK_ROWS].shape:
            raise ValueError(f"the LUT changed the shape {arr.shape} to {band.shape}")
        out[y:y + GRAY_CHUNK_ROWS] = band
    return out


# The note of a window that was applied: the one a reader of Radiograph.unwindowed undoes.
VOI_APPLIED_NOTE = "DICOM window / VOI LUT applied"


def _apply_voi(arr: np.ndarray, ds) -> tuple[np.ndarray, str]:
    """The DICOM window / VOI LUT applied, and a note saying so.

    An unusable window (a width of 0, a malformed LUT, one that leaves every
    pixel the same) is ignored rather than refused: the models scale every
    image by its own intensity range anyway, so the image stays usable.
    """
    from pydicom.pixels import apply_voi_lut

    try:
        windowed = _pointwise(lambda band: apply_voi_lut(band, ds), arr)
    except Exception as exc:  # pydicom's window checks raise ValueError, bad LUTs others
        log.info("DICOM window / VOI LUT ignored: %s: %s", type(exc).__name__, exc)
        return arr, "DICOM window / VOI LUT ignored (its values are unusable); own range used"
    if windowed.shape != arr.shape or not np.isfinite(windowed).all():
        return arr, "DICOM window / VOI LUT ignored (unusable result); own range used"
    if windowed.max() == windowed.min() and arr.max() != arr.min():
        return arr, "DICOM window ignored (it leaves every pixel the same); own range used"
    return windowed, VOI_APPLIED_NOTE


def _dicom_text(ds, keyword: str) -> str:
    """An element's value as the file has it, for a message."""
    try:
        return repr(str(ds[keyword].value)) if keyword in ds else "absent"
    except Exception:  # the element itself is malformed
        return "unreadable"


def _dicom_spacing(ds) -> float | None:
    """Pixel spacing in mm, or None when the file gives none usable."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            if tag in ds:
                spacing = float(ds.get(tag)[0])
                if math.isfinite(spacing) and spacing > 0:
                    return spacing
        except Exception:  # optional metadata: a malformed value is ignored, not fatal
            pass
    return None


def _read_jsrt_img(data: bytes, name: str) -> Radiograph:
    """JSRT raw: square, headerless, big-endian 12-bit in uint16, high = dark."""
    if len(data) % 2:
        raise ImageReadError(f"{name}: a JSRT .IMG file holds 16-bit pixels; "
                             "an odd byte count means it is truncated or not a JSRT file.")
    side = math.isqrt(len(data) // 2)
    if side * side * 2 != len(data):
        raise ImageReadError(
            f"{name}: {len(data)} bytes is not a square 16-bit raw image "
            f"(a JSRT .IMG is {JSRT_SIDE} x {JSRT_SIDE}, {JSRT_SIDE * JSRT_SIDE * 2} bytes); "
            "the file is truncated or not a JSRT image.")
    _check_size(side, side, name)
    raw = np.frombuffer(data, dtype=">u2").reshape(side, side)
    if raw.max() > 4095:
        raise ImageReadError(f"{name}: values above 4095 — not 12-bit JSRT data.")
    pixels = (4095 - raw).astype(np.uint16)
    spacing = JSRT_SPACING_MM * JSRT_SIDE / side
    return Radiograph(pixels, "jsrt-img", name, spacing, ["JSRT raw inverted to display orientation"])


def read_mask(source, name: str | None = None) -> np.ndarray:
    """Read a binary mask (SCR GIF, PNG): True where the structure is."""
    data, found = _as_bytes(source)
    name = name or found or UNNAMED
    if not data:
        raise ImageReadError(f"{name}: the mask file is empty.")
    pixels = _read_raster(data, name).pixels
    return pixels > (pixels.max() / 2 if pixels.max() > 1 else 0)
