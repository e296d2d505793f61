"""Peak memory of the app's upload path for two decompression bombs and a large, legitimate
radiograph, each decoded in a fresh subprocess, against the limits in docs/deployment.md.

    python scripts/memory_check.py            # ~1 min; no model is loaded

Every file is synthetic and built in memory (a temporary folder outside the project
carries it to the subprocess): a 7999 x 7999 16-bit RGBA PNG of ~0.5 MB, a multi-frame
RLE DICOM whose frames decode to ~1.7 GB, and 4300 x 4300 16-bit radiographs (PNG and a
windowed MONOCHROME1 DICOM) with smooth "anatomy" and noise. Each subprocess imports what
the dashboard imports, reads its file, resets the kernel's peak-RSS counter
(/proc/self/clear_refs), then runs ``cxr_dash.ui.state.image_from_upload`` (decoding, the
segmentability checks, the 1024-px working copy), and reports its peak RSS above that
idle point (VmHWM - VmRSS before). Linux only.
"""
from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

MB = 2**20
LIMIT_REFUSED_MB = 64       # a bomb refused from its header: nothing decoded
LIMIT_UPLOAD_MB = 1024      # a legitimate upload (and a multi-frame file's first frame)

CHILD = r"""
import json, sys, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)

from cxr_dash.errors import ImageReadError
from cxr_dash.ui import state            # what the dashboard imports (no models loaded)
path, name = Path(sys.argv[1]), sys.argv[2]
data = path.read_bytes()                 # the upload, as Streamlit holds it
idle = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")   # the peak counter starts from here
started = time.perf_counter()
try:
    image = state.image_from_upload(name, data)
    outcome = {"result": "decoded", "shape": list(image.original_shape), "notes": image.notes}
except ImageReadError as exc:
    outcome = {"result": "refused", "message": str(exc)}
outcome.update(seconds=time.perf_counter() - started, idle=idle, peak=status("VmHWM"))
print(json.dumps(outcome))
"""


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(side: int) -> bytes:
    """A valid side x side 16-bit RGBA PNG of zeros, compressed row by row (the
    encoder never holds the 8 bytes x side^2 it describes)."""
    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    packer, row, parts = zlib.compressobj(9), b"\0" + bytes(side * 8), []
    for _ in range(side):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


def synthetic_radiograph(side: int, seed: int = 0) -> np.ndarray:
    """uint16, side x side: a bright mediastinum and two dark lung fields over a
    gradient, plus noise. No real pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float32) / side
    image = 20000 + 15000 * yy
    for cx in (0.3, 0.7):
        image -= 12000 * np.exp(-(((xx - cx) / 0.15) ** 2 + ((yy - 0.5) / 0.25) ** 2))
    image += rng.normal(0, 800, image.shape).astype(np.float32)
    return np.clip(image, 0, 65535).astype(np.uint16)


def png16(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def dicom(pixels: np.ndarray | None, frames: int = 1, side: int = 0) -> bytes:
    """A 16-bit DX DICOM: ``pixels`` stored natively (MONOCHROME1, windowed), or, with
    ``pixels`` None, ``frames`` RLE frames of a side x side row gradient."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.pixels.encoders import RLELosslessEncoder
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if pixels is not None else RLELossless
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.SOPClassUID = "DX", meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    rows = cols = side if pixels is None else pixels.shape[0]
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelSpacing = [0.1, 0.1]
    if pixels is None:
        ds.PhotometricInterpretation = "MONOCHROME2"
        frame = np.repeat(np.linspace(0, 60000, rows, dtype=np.float32)[:, None], cols, 1).astype(np.uint16)
        encoded = RLELosslessEncoder.encode(
            frame, rows=rows, columns=cols, samples_per_pixel=1, bits_allocated=16, bits_stored=16,
            pixel_representation=0, photometric_interpretation="MONOCHROME2", number_of_frames=1)
        ds.NumberOfFrames = frames
        ds.PixelData = encapsulate([encoded] * frames)
        ds["PixelData"].VR = "OB"
    else:
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
        ds.WindowCenter, ds.WindowWidth = 30000, 40000
        ds.PixelData = (65535 - pixels).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def measure(folder: Path, label: str, name: str, data: bytes) -> dict:
    path = folder / name
    path.write_bytes(data)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), name], capture_output=True,
                          text=True, timeout=600)
    path.unlink()
    if done.returncode:
        raise SystemExit(f"{label}: the subprocess failed:\n{done.stderr[-3000:]}")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    outcome.update(label=label, file_bytes=len(data), wall=time.perf_counter() - started,
                   above_idle=max(0, outcome["peak"] - outcome["idle"]))
    return outcome


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bomb-side", type=int, default=7999, help="side of the 16-bit RGBA PNG bomb")
    parser.add_argument("--frames", type=int, default=50, help="frames of the multi-frame DICOM")
    parser.add_argument("--side", type=int, default=4300,
                        help="side of the legitimate radiographs and of the DICOM's frames")
    args = parser.parse_args(argv)

    pixels = synthetic_radiograph(args.side)
    decoded_frames = args.frames * args.side ** 2 * 2
    cases = [
        (f"PNG bomb: {args.bomb_side} x {args.bomb_side} 16-bit RGBA "
         f"({args.bomb_side ** 2 * 8 / MB:.0f} MB decoded)", "bomb.png", bomb_png(args.bomb_side),
         "refused", LIMIT_REFUSED_MB),
        (f"multi-frame DICOM: {args.frames} RLE frames of {args.side} x {args.side} 16-bit "
         f"({decoded_frames / MB:.0f} MB if all decoded)", "frames.dcm",
         dicom(None, args.frames, args.side), "decoded", LIMIT_UPLOAD_MB),
        (f"radiograph: {args.side} x {args.side} 16-bit grey PNG", "large16.png", png16(pixels),
         "decoded", LIMIT_UPLOAD_MB),
        (f"radiograph: {args.side} x {args.side} 16-bit DICOM (MONOCHROME1, windowed)", "large16.dcm",
         dicom(pixels), "decoded", LIMIT_UPLOAD_MB),
    ]
    del pixels
    failed = 0
    print(f"Peak RSS of state.image_from_upload above the idle process (fresh subprocess each), "
          f"Python {sys.version.split()[0]}")
    print(f"| input | file | outcome | time | peak above idle | limit | |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, data, expected, limit_mb in cases:
            r = measure(Path(tmp), label, name, data)
            ok = r["result"] == expected and r["above_idle"] <= limit_mb * MB
            failed += not ok
            said = r.get("message") or "; ".join(r.get("notes") or []) or "no notes"
            print(f"| {label} | {r['file_bytes'] / MB:.1f} MB | {r['result']}: {said} | "
                  f"{r['seconds']:.2f} s | {r['above_idle'] / MB:.0f} MB | "
                  f"{expected}, <= {limit_mb} MB | {'ok' if ok else 'OVER'} |")
    print("all within their limits" if not failed else f"{failed} case(s) outside their limits")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
