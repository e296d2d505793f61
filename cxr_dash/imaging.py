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
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageReadError

MAX_PIXELS = 64_000_000          # larger inputs are refused before decoding
MAX_FILE_BYTES = 512 * 1024 * 1024
MIN_SIDE = 32
JSRT_SIDE = 2048
JSRT_SPACING_MM = 0.175          # at 2048 x 2048; SCR masks are 1024 x 1024 at 0.35 mm
SUPPORTED = "PNG, JPEG, DICOM (.dcm) or JSRT raw .IMG"
UNNAMED = "the upload"           # what messages call a source that has no file name
DICOM_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Decoders put reprs such as <_io.BytesIO object at 0x7f...> in their messages:
# meaningless to the person who chose the file.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


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
        wide = out.astype(np.float64 if out.dtype.kind == "f" else np.int64)
        out = (wide.max() + wide.min() - wide).astype(pixels.dtype)
    if mirror:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _reason(exc: BaseException) -> str:
    """An exception's text for a user-facing message, without object reprs."""
    text = _OBJECT_REPR.sub("the file", str(exc)).strip()
    return text or type(exc).__name__


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
        except OSError as exc:
            raise ImageReadError(
                f"{name or UNNAMED}: the file cannot be read ({_reason(exc)}).") from None
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
    if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff" or data[:4] in (b"GIF8",):
        image = _read_raster(data, name)
    elif data[128:132] == b"DICM" or ext in (".dcm", ".dicom"):
        image = _read_dicom(data, name)
    elif ext == ".img":
        image = _read_jsrt_img(data, name)
    else:
        raise ImageReadError(f"{name}: not a supported image. Use {SUPPORTED}.")
    _check_usable(image.pixels, name)
    return image


def _check_size(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageReadError(
            f"{name}: {width} x {height} pixels is too large "
            f"(limit {MAX_PIXELS // 1_000_000} megapixels); downsample it first.")
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(f"{name}: {width} x {height} pixels is too small to be a radiograph.")


def _check_usable(pixels: np.ndarray, name: str) -> None:
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageReadError(f"{name}: no 2-D image found in the file.")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise ImageReadError(f"{name}: the image contains non-numeric (NaN/inf) values.")
    if pixels.max() == pixels.min():
        raise ImageReadError(f"{name}: the image is uniform (every pixel the same); "
                             "nothing to segment.")


def _to_gray(arr: np.ndarray, mode: str) -> np.ndarray:
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        # float32 holds 8- and 16-bit values exactly, not 32-bit ones (2**32 - 1 rounds up
        # past uint32's range), which get float64.
        wide = np.float64 if arr.dtype.kind in "ui" and arr.dtype.itemsize >= 4 else np.float32
        # ITU-R BT.601 luma, as PIL and OpenCV use for grey conversion.
        gray = arr[..., :3].astype(wide) @ np.array([0.299, 0.587, 0.114], wide)
        if arr.dtype.kind not in "ui":
            return gray.astype(np.float32)
        info = np.iinfo(arr.dtype)
        return np.clip(np.round(gray), info.min, info.max).astype(arr.dtype)
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        return arr[..., 0]
    raise ImageReadError(f"unsupported pixel layout {arr.shape} ({mode}).")


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


def _decode_16bit_colour_png(data: bytes, name: str) -> np.ndarray:
    """(H, W, 3 | 4) uint16 in RGB(A) order, decoded by OpenCV, which keeps the 16 bits."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageReadError(f"{name}: the 16-bit colour PNG is truncated or corrupt.")
    return arr[..., [2, 1, 0, 3][:arr.shape[2]]]   # OpenCV gives BGR(A)


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
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(
            f"{name}: the file is corrupt or not an image ({_reason(exc)}).") from None
    _check_size(im.width, im.height, name)
    fmt = (im.format or "").lower()
    if fmt == "png" and _is_16bit_colour_png(data):
        arr = _decode_16bit_colour_png(data, name)
        return _raster_radiograph(arr, "16-bit RGB(A)", fmt, name, [])
    notes = []
    try:
        # load() decodes everything; a truncated file raises here, not later.
        im.load()
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(_bomb_message(exc, name)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(
            f"{name}: the file is truncated or corrupt ({_reason(exc)}).") from None
    return _raster_radiograph(arr, im.mode, fmt, name, notes)


def _raster_radiograph(arr: np.ndarray, mode: str, fmt: str, name: str,
                       notes: list[str]) -> Radiograph:
    if arr.ndim == 3:
        if arr.shape[2] == 4 or arr.shape[2] == 2:
            notes.append("alpha channel ignored")
        channels = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
        if channels.ndim == 3 and channels.shape[2] == 3 and not (
                np.array_equal(channels[..., 0], channels[..., 1])
                and np.array_equal(channels[..., 1], channels[..., 2])):
            notes.append("colour image converted to grey")
        arr = _to_gray(arr, mode)
    fmt = {"jpeg": "jpeg", "mpo": "jpeg", "png": "png", "gif": "gif"}.get(fmt, fmt or "raster")
    return Radiograph(np.ascontiguousarray(arr), fmt, name, None, notes)


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
        raise ImageReadError(f"{name}: not a readable DICOM file ({_reason(exc)}).") from None
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
        raise ImageReadError(
            f"{name}: the DICOM header is malformed or uses a feature this reader does not "
            f"support ({type(exc).__name__}: {_reason(exc)}).") from None


def _dicom_radiograph(ds, name: str) -> Radiograph:
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    if not any(keyword in ds for keyword in DICOM_PIXEL_KEYWORDS):
        raise ImageReadError(f"{name}: the DICOM file holds no image "
                             "(no PixelData, FloatPixelData or DoubleFloatPixelData).")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows and cols:
        _check_size(cols, rows, name)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for bad/unsupported pixel data
        if (syntax := _undecodable_syntax(ds)) is not None:
            raise ImageReadError(
                f"{name}: its pixel data is compressed as {syntax}, which no decoder installed "
                "with this app reads. Export the image uncompressed (or as PNG) and upload "
                "that.") from None
        raise ImageReadError(
            f"{name}: the DICOM pixel data cannot be decoded ({type(exc).__name__}: "
            f"{_reason(exc)}). Truncated file, or a compressed transfer syntax without "
            "a decoder.") from None
    notes = []
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if frames > 1:
        arr = arr[0]
        notes.append(f"first of {frames} frames used")
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        arr = apply_color_lut(arr, ds)  # stored values are indices into the palette
    if arr.ndim == 3:  # RGB / YBR secondary capture
        arr = _to_gray(arr, photometric)
        notes.append("colour DICOM converted to grey")
    stored = arr
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            arr = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
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
        windowed = np.asarray(apply_voi_lut(arr, ds), dtype=np.float32)
    except Exception as exc:  # pydicom's window checks raise ValueError, bad LUTs others
        return arr, f"DICOM window / VOI LUT ignored ({_reason(exc)}); own range used"
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
