"""Reference masks for an image of one's own: per-region files, a label image, a DICOM
SEG; sizes checked, names matched, every failure said in words."""
import io

import numpy as np
import pytest
from PIL import Image

from cxr_dash.errors import ImageReadError
from cxr_dash.reference import LABELS, read_reference, region_in_name
from tests.phantom import chest_phantom, png

SHAPE = (256, 256)


@pytest.fixture(scope="module")
def truth():
    return chest_phantom(SHAPE[0])[1]


def test_file_names_name_their_region_as_the_scr_folders_do():
    assert region_in_name("heart.png") == "heart"
    assert region_in_name("JPCLN001_left_lung.gif") == "left_lung"
    assert region_in_name("left lung.gif") == "left_lung"
    assert region_in_name("Right-Clavicle.PNG") == "right_clavicle"
    assert region_in_name("JPCLN001.gif") is None and region_in_name("labels.png") is None
    assert region_in_name("sweetheart.png") is None                     # a word, not a part of one


def test_a_mask_per_region_at_the_radiograph_size_or_a_scaled_copy(truth):
    half = np.array(Image.fromarray(truth["left_lung"].astype(np.uint8) * 255).resize((128, 128)))
    ref = read_reference([("heart.png", png(truth["heart"])), ("case_left_lung.png", png(half))], SHAPE)
    assert set(ref.masks) == {"heart", "left_lung"} and ref.sources["heart"] == "heart.png"
    assert np.array_equal(ref.masks["heart"], truth["heart"])
    assert ref.masks["left_lung"].shape == SHAPE
    assert (ref.masks["left_lung"] == truth["left_lung"]).mean() > 0.99     # upsampled copy


def test_a_mask_of_another_shape_is_refused_in_words(truth):
    with pytest.raises(ImageReadError, match=r"heart.png: the mask is 256 x 200 pixels, the "
                                             r"radiograph 256 x 256"):
        read_reference([("heart.png", png(truth["heart"][:200]))], SHAPE)


def test_a_label_image_gives_each_number_its_region(truth):
    labels = np.zeros(SHAPE, np.uint8)
    number = {r: k for k, r in LABELS.items()}
    for region in ("heart", "left_lung", "right_lung"):
        labels[truth[region]] = number[region]
    ref = read_reference([("labels.png", png(labels))], SHAPE)
    assert set(ref.masks) == {"heart", "left_lung", "right_lung"}
    assert all(np.array_equal(ref.masks[r], truth[r]) for r in ref.masks)
    palette = Image.fromarray(labels, mode="L").convert("P")     # a palette image: its indices count
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert set(read_reference([("seg.png", buffer.getvalue())], SHAPE).masks) == set(ref.masks)


@pytest.mark.parametrize("values,message", [
    ((0, 255), r"a single mask \(0 and 255\), but its name names no region"),
    ((0, 3, 9), r"values \(9\) that are not region numbers"),
    ((0,), r"empty"),
])
def test_a_file_naming_no_region_that_is_no_label_image_is_explained(values, message):
    labels = np.zeros(SHAPE, np.uint8)
    for k, v in enumerate(values):
        labels[k * 20:(k + 1) * 20] = v
    with pytest.raises(ImageReadError, match=message):
        read_reference([("JPCLN001.png", png(labels))], SHAPE)


def make_seg(frames: dict[str, np.ndarray], fractional: bool = False) -> bytes:
    """A DICOM Segmentation Storage object with one frame per segment label."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("seg.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "SEG"
    stack = np.stack(list(frames.values()))
    ds.Rows, ds.Columns = stack.shape[1:]
    ds.NumberOfFrames = len(stack)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    segments, per_frame = [], []
    for number, label in enumerate(frames, 1):
        item = Dataset()
        item.SegmentNumber, item.SegmentLabel = number, label
        segments.append(item)
        ident = Dataset()
        ident.ReferencedSegmentNumber = number
        group = Dataset()
        group.SegmentIdentificationSequence = Sequence([ident])
        per_frame.append(group)
    ds.SegmentSequence, ds.PerFrameFunctionalGroupsSequence = Sequence(segments), Sequence(per_frame)
    if fractional:
        ds.SegmentationType, ds.MaximumFractionalValue = "FRACTIONAL", 255
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = (stack.astype(np.uint8) * 200).tobytes()
    else:
        ds.SegmentationType = "BINARY"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
        ds.PixelData = pack_bits(stack.astype(np.uint8))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("fractional", [False, True])
def test_a_dicom_seg_names_its_regions_by_segment_label(truth, fractional):
    data = make_seg({"Heart": truth["heart"], "Lung, left": truth["left_lung"],
                     "Trachea": truth["right_lung"]}, fractional)
    ref = read_reference([("reference.dcm", data)], SHAPE)
    assert set(ref.masks) == {"heart", "left_lung"}
    assert np.array_equal(ref.masks["heart"], truth["heart"])
    assert np.array_equal(ref.masks["left_lung"], truth["left_lung"])
    assert ref.notes == ["reference.dcm: segment 'Trachea' names no region; left out"]


def test_a_dicom_that_is_no_segmentation_is_refused(truth):
    from tests.test_imaging import make_dicom

    with pytest.raises(ImageReadError, match="not a segmentation"):
        read_reference([("image.dcm", make_dicom(truth["heart"].astype(np.uint16) * 100))], SHAPE)
