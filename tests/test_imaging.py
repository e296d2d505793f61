"""Every reader on synthetic files: what it accepts, and that bad input raises ImageReadError."""
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from cxr_dash.errors import ImageReadError
from cxr_dash.imaging import read_image, read_mask


def gradient(h=64, w=48, dtype=np.uint8, high=255):
    y = np.linspace(0, high, h)[:, None] * np.ones((1, w))
    return np.round(y).astype(dtype)


def encode(arr, fmt="PNG", mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def test_png_8bit_grey():
    img = read_image(encode(gradient()), "x.png")
    assert img.source_format == "png" and img.pixels.dtype == np.uint8
    assert img.shape == (64, 48) and img.pixels[-1, 0] == 255


def test_png_16bit_keeps_full_depth():
    arr = gradient(dtype=np.uint16, high=60000)
    img = read_image(encode(arr), "x16.png")
    assert img.pixels.dtype == np.uint16 and img.pixels.max() == 60000


def test_rgb_and_rgba_become_grey():
    rgb = np.stack([gradient()] * 3, axis=2)
    assert read_image(encode(rgb), "c.png").pixels.ndim == 2
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    img = read_image(encode(rgba), "c.png")
    assert img.pixels.ndim == 2 and "alpha channel ignored" in img.notes


def test_jpeg():
    img = read_image(encode(gradient(), "JPEG"), "x.jpg")
    assert img.source_format == "jpeg" and abs(int(img.pixels[-1, 0]) - 255) < 8


def make_jsrt_img(side=64):
    display = gradient(side, side, np.uint16, 4095)
    raw = (4095 - display).astype(">u2")   # JSRT stores high values as dark
    return raw.tobytes(), display


def test_jsrt_raw_img_is_big_endian_inverted_12bit():
    data, display = make_jsrt_img()
    img = read_image(data, "JPCLN001_synthetic.IMG")
    assert img.source_format == "jsrt-img"
    np.testing.assert_array_equal(img.pixels, display)
    assert img.pixel_spacing_mm == pytest.approx(0.175 * 2048 / 64)


def test_jsrt_raw_img_wrong_size_or_values():
    data, _ = make_jsrt_img()
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(data[:-2], "x.IMG")
    with pytest.raises(ImageReadError, match="12-bit"):
        read_image(np.full((64, 64), 65000, ">u2").tobytes(), "x.IMG")


def make_dicom(pixels, photometric="MONOCHROME2", slope=None, intercept=None, window=None,
               bits=16, truncate=0, presentation_lut=None, compressed=None):
    """A DX DICOM of ``pixels``; ``compressed=(transfer syntax UID, frame bytes)`` stores
    those bytes encapsulated under that syntax instead of the pixels themselves."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(compressed[0]) if compressed else ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = "DX"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.2, 0.2]
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if presentation_lut is not None:
        ds.PresentationLUTShape = presentation_lut
    if compressed:
        ds.PixelData = encapsulate([compressed[1]])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data[:-truncate] if truncate else data


def test_dicom_monochrome2():
    arr = gradient(dtype=np.uint16, high=4000)
    img = read_image(make_dicom(arr), "a.dcm")
    assert img.source_format == "dicom" and img.pixel_spacing_mm == pytest.approx(0.2)
    assert img.pixels[-1, 0] > img.pixels[0, 0]


def test_dicom_monochrome1_is_inverted_to_bone_bright():
    arr = gradient(dtype=np.uint16, high=4000)
    img = read_image(make_dicom(arr, "MONOCHROME1"), "inv.dcm")
    # Stored high = dark; after reading, the stored-high row must be the darkest.
    assert img.pixels[-1, 0] < img.pixels[0, 0]
    assert any("MONOCHROME1" in n for n in img.notes)


@pytest.mark.parametrize("photometric, lut, inverted", [
    ("MONOCHROME2", "INVERSE", True),      # stored bone-dark, displayed through an inverse LUT
    ("MONOCHROME2", "IDENTITY", False),
    ("MONOCHROME1", "INVERSE", True),      # the DX IOD's pairing: one inversion, not two
    ("MONOCHROME1", "IDENTITY", True),
])
def test_dicom_presentation_lut_inverse_is_applied_once(photometric, lut, inverted):
    arr = gradient(dtype=np.uint16, high=4000)
    img = read_image(make_dicom(arr, photometric, presentation_lut=lut), "p.dcm")
    np.testing.assert_allclose(img.pixels, (4000 - arr) if inverted else arr)
    assert any("inverted" in n for n in img.notes) == inverted


def test_dicom_rescale_and_window_are_applied():
    arr = gradient(dtype=np.uint16, high=1000)
    img = read_image(make_dicom(arr, slope=2.0, intercept=-1000.0), "r.dcm")
    assert img.pixels.min() == pytest.approx(-1000) and img.pixels.max() == pytest.approx(1000)
    win = read_image(make_dicom(arr, window=(500, 200)), "w.dcm")
    # Values far outside the 400..600 window are clipped to its ends.
    assert (win.pixels[:10] == win.pixels.min()).all() and (win.pixels[-10:] == win.pixels.max()).all()


def test_a_windowed_dicom_keeps_its_pixels_without_the_window():
    # The app can ignore a window that clips the lungs: the reader keeps the full range.
    arr = gradient(dtype=np.uint16, high=1000)
    win = read_image(make_dicom(arr, window=(500, 200)), "w.dcm")
    np.testing.assert_allclose(win.unwindowed, arr)
    assert (win.pixels[:10] == win.pixels.min()).all()      # the window itself still applied
    assert read_image(make_dicom(arr), "plain.dcm").unwindowed is None
    assert read_image(make_dicom(arr, window=(500, 0)), "w0.dcm").unwindowed is None   # ignored window
    mono1 = read_image(make_dicom(arr, "MONOCHROME1", window=(500, 200)), "m1.dcm")
    np.testing.assert_allclose(mono1.unwindowed, 1000 - arr)   # display orientation, as its pixels


@pytest.mark.parametrize("data,name,message", [
    (b"", "empty.png", "empty"),
    (b"hello, this is text", "notes.txt", "not a supported image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "broken.png", "corrupt"),
    (b"\xff\xd8\xff\xe0" + b"garbage" * 10, "broken.jpg", "corrupt|truncated"),
])
def test_bad_bytes_raise_the_documented_error(data, name, message):
    with pytest.raises(ImageReadError, match=message):
        read_image(data, name)


def test_truncated_png_and_jpeg():
    big = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
    for fmt, name in (("PNG", "t.png"), ("JPEG", "t.jpg")):
        data = encode(big, fmt)
        with pytest.raises(ImageReadError, match="truncated|corrupt"):
            read_image(data[: len(data) // 2], name)


def test_truncated_dicom():
    data = make_dicom(gradient(dtype=np.uint16, high=4000), truncate=3000)
    with pytest.raises(ImageReadError):
        read_image(data, "cut.dcm")


def recompress_dicom(data, tmp_path, syntax):
    """The DICOM re-encoded by GDCM (the decoder the app pins) in a compressed transfer syntax."""
    import gdcm  # python-gdcm, pinned in requirements.txt as the app's DICOM decoder
    src, dst = tmp_path / "plain.dcm", tmp_path / "compressed.dcm"
    src.write_bytes(data)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(dst))
    assert writer.Write()
    return dst.read_bytes()


@pytest.mark.parametrize("syntax", ["JPEGLosslessProcess14_1", "JPEGLSLossless", "JPEG2000Lossless"])
def test_losslessly_compressed_dicom_reads_the_same_pixels(tmp_path, syntax):
    # Archives often export CR/DX as JPEG Lossless, JPEG-LS or JPEG 2000: a 12-bit
    # MONOCHROME1 image in each must come out exactly as the uncompressed file does.
    import pydicom

    arr = (gradient(96, 80, np.uint16, 4095) ^ np.arange(80, dtype=np.uint16)[None, :]) & 0x0FFF
    plain = make_dicom(arr, "MONOCHROME1")
    compressed = recompress_dicom(plain, tmp_path, syntax)
    assert pydicom.dcmread(io.BytesIO(compressed)).file_meta.TransferSyntaxUID.is_compressed
    assert len(compressed) < len(plain) / 2
    expected, got = read_image(plain, "plain.dcm"), read_image(compressed, "compressed.dcm")
    np.testing.assert_array_equal(got.pixels, expected.pixels)
    assert got.pixels.max() > got.pixels.min() and got.notes == expected.notes


@pytest.mark.parametrize("syntax, label", [
    ("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000"),   # a plugin not pinned here
    ("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component"),  # no decoder anywhere
])
def test_dicom_compressed_in_a_syntax_nothing_here_decodes_names_it(syntax, label):
    data = make_dicom(gradient(dtype=np.uint16, high=4000), compressed=(syntax, b"\xff\x4f" + bytes(200)))
    with pytest.raises(ImageReadError, match=rf"c.dcm: its pixel data is compressed as '{label}.*', "
                       r"which no decoder installed with this app reads\. Export the image uncompressed"):
        read_image(data, "c.dcm")


def test_32_bit_colour_converts_to_grey_without_overflow():
    # float32 rounds 2**32 - 1 up to 2**32; the cast back to uint32 must not wrap to 0.
    rgb = np.zeros((40, 40, 3), np.uint32)
    rgb[:20] = 2**32 - 1
    from cxr_dash.imaging import _to_gray

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gray = _to_gray(rgb, "RGB")
    assert gray.dtype == np.uint32
    assert gray[:20].min() == 2**32 - 1 and gray[20:].max() == 0


def png_claiming_size(width, height):
    """A valid tiny PNG whose header claims another size (a decompression bomb's shape)."""
    data = bytearray(encode(gradient(8, 8)))
    ihdr = bytearray(data[12:29])              # 'IHDR' + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_oversized_image_is_refused_before_decoding():
    with pytest.raises(ImageReadError, match="too large"):
        read_image(png_claiming_size(9000, 9000), "huge.png")


def test_uniform_and_tiny_images_are_refused():
    with pytest.raises(ImageReadError, match="uniform"):
        read_image(encode(np.full((64, 64), 7, np.uint8)), "flat.png")
    with pytest.raises(ImageReadError, match="too small"):
        read_image(encode(gradient(8, 8)), "tiny.png")


def test_gif_mask_reader(tmp_path):
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 5:30] = 255
    path = tmp_path / "left lung" / "JPCLN001_synthetic.gif"
    path.parent.mkdir()
    Image.fromarray(m).save(path, format="GIF")
    mask = read_mask(path)
    assert mask.dtype == bool and mask.sum() == 250


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("side", [10000, 20000])
def test_decompression_bomb_sizes_are_refused_as_too_large(side):
    # 20000^2 is over PIL's hard limit (DecompressionBombError); 10000^2 is in its
    # warning band, which must not escape either, even when warnings are errors.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match="too large.*36 megapixels"):
            read_image(png_claiming_size(side, side), "bomb.png")


def test_gif_claiming_a_huge_screen_is_refused_as_too_large():
    data = bytearray(encode(gradient(), "GIF"))
    data[6:10] = struct.pack("<HH", 60000, 60000)   # logical screen width, height
    with pytest.raises(ImageReadError, match="too large"):
        read_image(bytes(data), "bomb.gif")


def test_messages_name_the_upload_never_an_in_memory_buffer():
    garbage = b"\x89PNG\r\n\x1a\n" + b"\0" * 8    # a PNG signature and nothing usable
    with pytest.raises(ImageReadError) as nameless:
        read_image(io.BytesIO(garbage))
    assert str(nameless.value).startswith("the upload:")
    assert "object at 0x" not in str(nameless.value)
    named = io.BytesIO(garbage)
    named.name = "/somewhere/chest.png"           # as Streamlit's UploadedFile carries one
    with pytest.raises(ImageReadError, match=r"^chest\.png: the file is corrupt"):
        read_image(named)
    with pytest.raises(ImageReadError, match="binary mode"):
        read_image(io.StringIO("text"))


def png_16bit(pixels):
    """A 16-bit PNG written chunk by chunk: PIL cannot write 16-bit colour."""
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[pixels.shape[2]]
    h, w = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_16bit_colour_png_keeps_16bit_precision():
    grey = gradient(dtype=np.uint16, high=60000)
    rgb = np.stack([grey, grey // 2, grey // 3], axis=2)
    img = read_image(png_16bit(rgb), "rgb16.png")
    assert img.pixels.dtype == np.uint16 and "colour image converted to grey" in img.notes
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.abs(img.pixels - luma).max() <= 1          # not rounded to 8-bit steps
    rgba = np.concatenate([rgb, np.full(grey.shape + (1,), 65535, np.uint16)], axis=2)
    img = read_image(png_16bit(rgba), "rgba16.png")
    assert img.pixels.max() > 255 and "alpha channel ignored" in img.notes
    data = png_16bit(rgb)
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(data[: len(data) // 2], "cut16.png")


def test_dicom_window_width_zero_falls_back_to_the_image_range():
    arr = gradient(dtype=np.uint16, high=1000)
    img = read_image(make_dicom(arr, window=(500, 0)), "w0.dcm")
    assert any("window" in n and "ignored" in n for n in img.notes)
    assert img.pixels[-1, 0] > img.pixels[0, 0]
    # A window far outside the data would leave every pixel the same: ignored too.
    img = read_image(make_dicom(arr, window=(50000, 10)), "far.dcm")
    assert img.pixels.max() > img.pixels.min() and any("ignored" in n for n in img.notes)


def test_dicom_with_a_non_numeric_rescale_says_so():
    data = make_dicom(gradient(dtype=np.uint16, high=1000), slope="1.5", intercept="0")
    assert data.count(b"1.5 ") == 1
    with pytest.raises(ImageReadError, match="RescaleSlope 'x.y'.*invalid"):
        read_image(data.replace(b"1.5 ", b"x.y "), "slope.dcm")
    with pytest.raises(ImageReadError, match="RescaleSlope 'NaN'.*invalid"):
        read_image(data.replace(b"1.5 ", b"NaN "), "nan.dcm")


# (0028,0010) Rows and (0028,0103) PixelRepresentation, little-endian as written.
@pytest.mark.parametrize("tag", [b"\x28\x00\x10\x00", b"\x28\x00\x03\x01"],
                         ids=["Rows", "PixelRepresentation"])
def test_dicom_with_a_malformed_header_element_raises_the_documented_error(tag):
    data = make_dicom(gradient(dtype=np.uint16, high=1000))
    assert data.count(tag + b"US") == 1
    with pytest.raises(ImageReadError, match=r"vr\.dcm: the DICOM header is malformed: its (Rows|PixelRepresentation) element cannot be read"):
        read_image(data.replace(tag + b"US", tag + b"U\x01"), "vr.dcm")


@pytest.mark.parametrize("keyword,bits,dtype", [("FloatPixelData", 32, np.float32),
                                                ("DoubleFloatPixelData", 64, np.float64)])
def test_dicom_float_pixel_data_is_read(keyword, bits, dtype):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("f.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = 64, 48
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    pixels = gradient(dtype=np.float64, high=1).astype(dtype)
    setattr(ds, keyword, pixels.tobytes())
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    img = read_image(buf.getvalue(), "float.dcm")
    np.testing.assert_allclose(img.pixels, pixels, atol=1e-6)
    pixels[3, 3] = np.nan
    setattr(ds, keyword, pixels.tobytes())
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    with pytest.raises(ImageReadError, match="NaN"):
        read_image(buf.getvalue(), "nan.dcm")


def test_a_dcm_name_on_non_dicom_bytes_says_not_dicom():
    with pytest.raises(ImageReadError, match="not a DICOM file"):
        read_image(b"hello world, not a radiograph " * 20, "x.dcm")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_reorient_inverts_within_the_image_range_and_mirrors(dtype):
    from cxr_dash.imaging import reorient

    pixels = np.array([[10, 20, 30], [40, 50, 60]], dtype=dtype)
    inverted = reorient(pixels, invert=True)
    assert inverted.dtype == pixels.dtype
    assert inverted.tolist() == [[60, 50, 40], [30, 20, 10]]
    assert reorient(pixels, mirror=True).tolist() == [[30, 20, 10], [60, 50, 40]]
    assert reorient(reorient(pixels, True, True), True, True).tolist() == pixels.tolist()


# --- Hardening: bombs, inconsistent headers, frames, transparency, clean messages ---------

from cxr_dash.imaging import MAX_DECODED_BYTES, MAX_PIXELS  # noqa: E402

# What a message a user sees must never contain: library internals.
INTERNALS = ("NoneType", "gdcm", "GDCM", "pydicom", "Traceback", "Error:", "object at 0x", "numpy")


def assert_clean(message: str) -> None:
    assert not [word for word in INTERNALS if word in message], message


def edit_dicom(data: bytes, **elements) -> bytes:
    """The DICOM with header elements replaced (as a hand-edited or buggy export has them)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def multiframe_dicom(frames: np.ndarray, rle: bool = False) -> bytes:
    """A DICOM of (N, H, W) uint16 frames, stored natively or RLE-compressed."""
    from pydicom.encaps import encapsulate
    from pydicom.pixels.encoders import RLELosslessEncoder

    n, h, w = frames.shape
    data = make_dicom(frames[0])
    if not rle:
        return edit_dicom(data, NumberOfFrames=n, PixelData=frames.astype(np.uint16).tobytes())
    encoded = [RLELosslessEncoder.encode(f, rows=h, columns=w, samples_per_pixel=1, bits_allocated=16,
                                         bits_stored=16, pixel_representation=0,
                                         photometric_interpretation="MONOCHROME2", number_of_frames=1)
               for f in frames]
    data = make_dicom(frames[0], compressed=("1.2.840.10008.1.2.5", encoded[0]))
    return edit_dicom(data, NumberOfFrames=n, PixelData=encapsulate(encoded))


def png_header_claiming(width, height, depth=16, colour_type=6):
    """A tiny 16-bit RGBA PNG whose IHDR claims another size and layout."""
    data = bytearray(png_16bit(np.zeros((8, 8, 4), np.uint16)))
    ihdr = bytearray(data[12:29])
    ihdr[4:14] = struct.pack(">IIBB", width, height, depth, colour_type)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def bomb_png(side=7999):
    """A real, decodable side x side 16-bit RGBA PNG of zeros (~0.5 MB at 7999)."""
    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\0" + bytes(side * 8)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def frames_file(fmt, frames):
    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, format=fmt, save_all=True, append_images=images[1:])
    return buf.getvalue()


def test_the_16bit_rgba_bomb_is_refused_from_its_header_with_the_numbers(monkeypatch):
    import cv2

    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1))   # must never be reached
    with pytest.raises(ImageReadError) as refused:
        read_image(bomb_png(), "bomb.png")
    message = str(refused.value)
    assert message.startswith("bomb.png: 7999 x 7999 pixels (64.0 megapixels) is too large")
    assert f"{MAX_PIXELS // 1_000_000} megapixels" in message and "downsample" in message
    assert decoded == []
    assert_clean(message)


def test_a_png_under_the_pixel_limit_but_over_the_decoded_bytes_is_refused():
    side = 5900                         # 34.8 megapixels: 16-bit RGBA is 266 MB decoded
    assert side * side <= MAX_PIXELS and side * side * 8 > MAX_DECODED_BYTES
    with pytest.raises(ImageReadError, match=r"5900 x 5900 pixels of 16-bit RGBA is too large: "
                                             r"266 MB once decoded; .*256 MB decoded"):
        read_image(png_header_claiming(side, side), "wide.png")
    # The same size in 8-bit grey is 35 MB: past the header check (then found truncated).
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(png_claiming_size(side, side), "grey.png")


def test_a_dicom_frame_over_the_limits_is_refused_before_decoding():
    data = make_dicom(gradient(dtype=np.uint16, high=4000))
    with pytest.raises(ImageReadError, match=r"big\.dcm: 7000 x 7000 pixels \(49\.0 megapixels\) "
                                             r"is too large"):
        read_image(edit_dicom(data, Rows=7000, Columns=7000), "big.dcm")


@pytest.mark.parametrize("rle", [False, True], ids=["native", "rle"])
def test_a_multiframe_dicom_decodes_only_its_first_frame(rle, monkeypatch):
    from pydicom import pixels

    frames = np.stack([gradient(64, 48, np.uint16, 4000) + 100 * i for i in range(5)])
    data = multiframe_dicom(frames, rle)
    calls = []
    original = pixels.pixel_array
    monkeypatch.setattr(pixels, "pixel_array",
                        lambda ds, **kw: calls.append(kw) or original(ds, **kw))
    img = read_image(data, "cine.dcm")
    np.testing.assert_array_equal(img.pixels, frames[0])
    assert "first of 5 frames used (a multi-frame DICOM)" in img.notes
    assert calls == [{"index": 0}]          # one frame decoded, not five


@pytest.mark.parametrize("elements,message", [
    ({"Columns": 40}, r"says 40 x 64 pixels .* 5120 bytes, but the pixel data holds 6144: its Rows "
                      r"/ Columns \(or NumberOfFrames\) do not match its pixels, so the picture "
                      r"would come out scrambled"),
    ({"Rows": 80}, r"says 48 x 80 pixels .* holds 6144: the file is truncated, or its Rows"),
    ({"NumberOfFrames": 3}, r"says 3 frames of 48 x 64 pixels"),
    ({"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7}, r"8-bit\), 3072 bytes, but the pixel data "
                                                         r"holds 6144"),
    ({"Rows": 0}, r"gives no image size \(Rows / Columns missing or 0\)"),
    ({"BitsAllocated": 12}, r"not an image this reader knows"),
    ({"SamplesPerPixel": 2}, r"2 sample\(s\) per pixel"),
], ids=["columns-short", "rows-long", "frames", "bits", "no-rows", "bits-12", "samples-2"])
def test_a_dicom_whose_header_does_not_match_its_pixels_is_refused(elements, message):
    data = edit_dicom(make_dicom(gradient(dtype=np.uint16, high=4000)), **elements)
    with pytest.raises(ImageReadError, match=r"^h\.dcm: .*" + message) as refused:
        read_image(data, "h.dcm")
    assert_clean(str(refused.value))


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
                                    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5"],
                         ids=["jpeg-ls", "jpeg2000", "jpeg-baseline", "rle"])
def test_damaged_compressed_dicom_pixels_say_what_to_do_without_decoder_internals(syntax, caplog):
    import logging

    data = make_dicom(gradient(dtype=np.uint16, high=4000), compressed=(syntax, b"\xff\xd8" + bytes(300)))
    with caplog.at_level(logging.INFO, logger="cxr_dash.imaging"):
        with pytest.raises(ImageReadError, match=r"^d\.dcm: the DICOM pixel data cannot be decoded: "
                                                 r"the file is truncated or damaged.*Upload the "
                                                 r"complete file") as refused:
            read_image(data, "d.dcm")
    assert_clean(str(refused.value))
    assert any("decoding the DICOM pixel data failed" in r.getMessage() for r in caplog.records)


def test_a_dicom_with_a_non_integer_size_names_the_element():
    data = edit_dicom(make_dicom(gradient(dtype=np.uint16, high=1000)), NumberOfFrames=7)
    element = b"\x28\x00\x08\x00IS\x02\x007 "        # (0028,0008) NumberOfFrames, "7 "
    assert data.count(element) == 1
    with pytest.raises(ImageReadError, match=r"^n\.dcm: the DICOM header is malformed: its "
                                             r"NumberOfFrames") as refused:
        read_image(data.replace(element, element[:-2] + b"x "), "n.dcm")
    assert_clean(str(refused.value))


def test_transparent_rgba_is_composited_onto_black_and_says_so():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[:32, :, 3] = 0            # the top half fully transparent
    rgba[32:48, :, 3] = 128        # a translucent band
    img = read_image(encode(rgba), "t.png")
    assert img.pixels[:32].max() == 0 and img.pixels[-1, 0] == 200
    assert abs(int(img.pixels[40, 0]) - 100) <= 1
    assert img.notes == ["transparent image composited onto black (75% of its pixels transparent "
                         "or translucent)"]


def test_transparent_grey_alpha_palette_and_16bit_pngs_are_composited_too():
    la = np.stack([gradient(64, 64), np.full((64, 64), 255, np.uint8)], axis=2)
    la[:, :16, 1] = 0
    img = read_image(encode(la, mode="LA"), "la.png")
    assert img.pixels[:, :16].max() == 0 and img.pixels[-1, -1] == 255
    assert "composited onto black" in img.notes[0]
    palette = Image.fromarray(gradient(64, 64)).convert("P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG", transparency=int(palette.getpixel((0, 63))))
    assert "composited onto black" in read_image(buf.getvalue(), "p.png").notes[0]
    rgba16 = np.zeros((64, 64, 4), np.uint16)
    rgba16[..., :3] = gradient(64, 64, np.uint16, 60000)[..., None]
    rgba16[..., 3] = 65535
    rgba16[:, 32:, 3] = 0
    img = read_image(png_16bit(rgba16), "t16.png")
    assert img.pixels.dtype == np.uint16 and img.pixels[-1, 0] == 60000 and img.pixels[:, 32:].max() == 0
    assert "composited onto black" in img.notes[0]


@pytest.mark.parametrize("fmt,name,kind", [("GIF", "cine.gif", "an animated GIF"),
                                           ("TIFF", "pages.tif", "a multi-page TIFF"),
                                           ("PNG", "anim.png", "an animated PNG")])
def test_animated_and_multipage_files_use_their_first_frame_and_say_so(fmt, name, kind):
    first, second = gradient(64, 64), 255 - gradient(64, 64)
    img = read_image(frames_file(fmt, [first, second, first]), name)
    np.testing.assert_array_equal(img.pixels, first)
    assert f"first of 3 frames used ({kind})" in img.notes


def test_tiff_is_read_with_its_16_bits_and_a_damaged_one_is_refused():
    arr = gradient(64, 64, np.uint16, 60000)
    img = read_image(encode(arr, "TIFF"), "x.tif")
    assert img.source_format == "tiff" and img.pixels.dtype == np.uint16 and img.pixels.max() == 60000
    data = encode(gradient(256, 256), "TIFF")
    with pytest.raises(ImageReadError, match=r"^cut\.tif: the file is truncated or corrupt") as refused:
        read_image(data[: len(data) // 2], "cut.tif")
    assert_clean(str(refused.value))


def test_decoder_errors_go_to_the_log_not_into_the_message(caplog):
    import logging

    data = encode((np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8))
    with caplog.at_level(logging.INFO, logger="cxr_dash.imaging"):
        with pytest.raises(ImageReadError) as refused:
            read_image(data[: len(data) // 2], "half.png")
    assert str(refused.value) == ("half.png: the file is truncated or corrupt (its pixels cannot "
                                  "be decoded). Upload the complete file, or export it again.")
    assert any("half.png: pixel decoding failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("shape,message", [
    ((40, 40), "40 x 40 pixels is too small to segment; the models need at least 64"),
    ((100, 600), r"600 x 100 pixels is a strip \(1:6\), not a chest radiograph"),
])
def test_check_segmentable_refuses_what_the_models_cannot_take(shape, message):
    from cxr_dash.imaging import check_segmentable

    with pytest.raises(ImageReadError, match="^up.png: " + message):
        check_segmentable(gradient(*shape), "up.png")
    check_segmentable(gradient(64, 256), "ok.png")           # 1:4 is still a radiograph
