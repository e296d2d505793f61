"""Batch segmentation (cxr_dash.batch, ``cxr-dash segment``): a small folder of synthetic
radiographs (PNG, 16-bit PNG, DICOM, JSRT .IMG) and a corrupt file, end to end in a
local worker process and on a Dask LocalCluster, with the tiny random-weights model set."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_dash.regions import REGION_KEYS
from tests.phantom import chest_phantom, png

GOOD = ("phantom", "phantom16", "scan", "raw")


def make_dicom(pixels: np.ndarray, path: Path, spacing: float = 0.3) -> None:
    """A DX DICOM of 16-bit pixels, patient and study attributes partly left out (as
    anonymised exports do)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path.name, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = "DX"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "ANON1", generate_uid(), generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [spacing, spacing]
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batch_in")
    image, _ = chest_phantom(256, seed=1)
    (root / "phantom.png").write_bytes(png(image))
    sub = root / "more"
    sub.mkdir()
    (sub / "phantom16.png").write_bytes(png(chest_phantom(256, seed=2)[0].astype(np.uint16) * 257))
    make_dicom(chest_phantom(256, seed=3)[0].astype(np.uint16) * 16, sub / "scan.dcm")
    raw = (4095 - chest_phantom(256, seed=4)[0].astype(np.uint16) * 16).astype(">u2")
    (sub / "raw.IMG").write_bytes(raw.tobytes())
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    (root / "notes.txt").write_text("not an image: left out of a folder")
    return root


def _config(out: Path, models: Path):
    from cxr_dash.batch import BatchConfig

    return BatchConfig(out=out, model_dir=str(models))


def test_inputs_from_folders_globs_and_archives(folder, tmp_path):
    from cxr_dash.batch import collect_inputs

    tasks = collect_inputs([str(folder)])
    assert sorted(t.key for t in tasks) == ["broken", "more__phantom16", "more__raw",
                                            "more__scan", "phantom"]
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(folder / "phantom.png", "a/phantom.png")
        z.write(folder / "more" / "scan.dcm", "scan.dcm")
    globbed = collect_inputs([str(folder / "*.png"), str(archive), str(folder / "phantom.png")])
    assert [t.key for t in globbed] == ["broken", "phantom", "export__a__phantom", "export__scan"]
    assert globbed[2].read_bytes() == (folder / "phantom.png").read_bytes()
    # A clash of names (a.png beside a.dcm) keeps both, under different keys.
    (tmp_path / "x.png").write_bytes(b"1")
    (tmp_path / "x.dcm").write_bytes(b"2")
    assert len({t.key for t in collect_inputs([str(tmp_path / "x.png"), str(tmp_path / "x.dcm")])}) == 2


def _read_table(out: Path) -> list[dict]:
    with (out / "segmentation.csv").open() as f:
        return list(csv.DictReader(f))


def _check_outputs(out: Path, summary) -> None:
    from cxr_dash.measure import cardiothoracic_ratio, region_statistics

    assert summary.done == len(GOOD) and summary.skipped == 0
    assert [Path(s).name for s in summary.failed] == ["broken.png"]
    rows = _read_table(out)
    errors = [r for r in rows if r["error"]]
    assert len(errors) == 1 and errors[0]["image"] == "broken" and errors[0]["region"] == ""
    assert "broken.png" in (out / "errors.log").read_text()
    for key in ("phantom", "more__phantom16", "more__scan", "more__raw"):
        mine = [r for r in rows if r["image"] == key]
        assert [r["region"] for r in mine] == list(REGION_KEYS)
        masks = {r: cv2.imread(str(out / key / f"{r}.png"), cv2.IMREAD_UNCHANGED) > 0
                 for r in REGION_KEYS}
        assert all(m.shape == (256, 256) for m in masks.values())
        assert (out / key / "overlay.png").is_file()
        stats = region_statistics(masks, float(mine[0]["spacing_mm"] or 0) or None)
        for row in mine:           # the table is cxr_dash.measure's figures of the PNG masks
            assert int(row["area_px"]) == stats[row["region"]]["area_px"]
        ctr = cardiothoracic_ratio(masks)
        assert (mine[0]["ctr"] == "") == (ctr is None)
        if ctr is not None:
            assert float(mine[0]["ctr"]) == pytest.approx(ctr.ratio, abs=1e-4)
    scan = [r for r in rows if r["image"] == "more__scan"]
    assert scan[0]["spacing_mm"] == "0.3" and scan[0]["spacing_from"] == "file"
    assert scan[0]["seg"] == "more__scan/seg.dcm" and not (out / "phantom" / "seg.dcm").exists()
    raw = [r for r in rows if r["image"] == "more__raw"][0]
    assert raw["source_format"] == "jsrt-img" and float(raw["spacing_mm"]) == pytest.approx(1.4)


def _check_seg(out: Path, source: Path) -> None:
    """The SEG reads back (pydicom, highdicom, the app's reference reader), references
    the source, and its frames are the PNG masks."""
    import highdicom as hd
    import pydicom

    from cxr_dash.reference import read_dicom_seg

    data = (out / "more__scan" / "seg.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    src = pydicom.dcmread(source)
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == src.StudyInstanceUID
    assert [s.SegmentLabel for s in ds.SegmentSequence] == \
        ["Heart", "Left clavicle", "Left lung", "Right clavicle", "Right lung"]
    seg = hd.seg.segread(io.BytesIO(data))
    assert seg.get_source_image_uids()[0][2] == src.SOPInstanceUID
    frames = seg.get_pixels_by_source_instance([src.SOPInstanceUID],
                                               segment_numbers=list(range(1, 6)))
    read_back, notes = read_dicom_seg(data, "seg.dcm")
    for i, region in enumerate(REGION_KEYS):
        mask = cv2.imread(str(out / "more__scan" / f"{region}.png"), cv2.IMREAD_UNCHANGED) > 0
        assert np.array_equal(frames[0, ..., i] > 0, mask)
        assert np.array_equal(read_back[region], mask)
    assert notes == []


@pytest.fixture(scope="module")
def local_run(folder, tiny_model_set, tmp_path_factory):
    from cxr_dash.batch import collect_inputs, run_batch

    out = tmp_path_factory.mktemp("batch_local")
    summary = run_batch(collect_inputs([str(folder)]), _config(out, tiny_model_set), workers=1,
                        progress=False)
    return out, summary


def test_a_folder_runs_end_to_end_in_local_processes(local_run, folder):
    out, summary = local_run
    _check_outputs(out, summary)
    _check_seg(out, folder / "more" / "scan.dcm")
    assert (out / "segmentation.parquet").is_file()


def test_a_rerun_skips_what_is_done_and_retries_what_failed(local_run, folder, tiny_model_set):
    from cxr_dash.segment import main

    out, _ = local_run
    before = (out / "phantom" / "record.json").stat().st_mtime_ns
    # Only the corrupt file is tried again (no model is loaded for it); it fails again.
    assert main([str(folder), "--out", str(out), "--models", str(tiny_model_set), "--quiet"]) == 1
    assert (out / "phantom" / "record.json").stat().st_mtime_ns == before
    assert len(_read_table(out)) == len(GOOD) * len(REGION_KEYS) + 1
    assert main([str(folder / "phantom.png"), "--out", str(out), "--models",
                 str(tiny_model_set), "--quiet"]) == 0


def test_a_folder_runs_end_to_end_on_a_dask_local_cluster(local_run, folder, tiny_model_set,
                                                          tmp_path):
    from distributed import Client, LocalCluster

    from cxr_dash.batch import collect_inputs, run_batch

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        summary = run_batch(collect_inputs([str(folder)]), _config(tmp_path, tiny_model_set),
                            dask_address=client, progress=False)
    _check_outputs(tmp_path, summary)
    _check_seg(tmp_path, folder / "more" / "scan.dcm")
    local_out, _ = local_run
    for key in ("phantom", "more__scan"):      # the same masks as the local processes
        for region in REGION_KEYS:
            assert (tmp_path / key / f"{region}.png").read_bytes() == \
                (local_out / key / f"{region}.png").read_bytes()


def test_a_record_from_another_source_is_not_taken_for_done(tmp_path):
    from cxr_dash.batch import ImageTask, is_done

    task = ImageTask("a", str(tmp_path / "a.png"))
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "record.json").write_text(json.dumps({"source": "elsewhere.png"}))
    assert not is_done(tmp_path / "out", task)
    (tmp_path / "out" / "a" / "record.json").write_text(json.dumps({"source": task.source}))
    assert is_done(tmp_path / "out", task)


def test_the_command_is_listed():
    from cxr_dash.__main__ import commands

    assert commands()["segment"][0] == "cxr_dash.segment"


def test_the_quality_estimate_and_its_warning_come_from_the_set(folder, tiny_model_set, tmp_path):
    from cxr_dash.batch import BatchConfig, ImageTask, segment_one
    from cxr_dash.quality_estimate import FEATURES, QualityModel

    models = tmp_path / "set"
    models.mkdir()
    for f in tiny_model_set.iterdir():
        (models / f.name).symlink_to(f)
    n = len(FEATURES)
    QualityModel({r: {"mean": [0] * n, "scale": [1] * n, "coef": [0] * n, "bias": 1.0}
                  for r in REGION_KEYS},       # logit 1 everywhere: 0.731, under 0.85
                 {r: {"area": 0.1, "centroid": [0.5, 0.5], "centroid_sd": [0.1, 0.1]}
                  for r in REGION_KEYS}).save(models)
    result = segment_one(ImageTask("phantom", str(folder / "phantom.png")),
                         BatchConfig(out=tmp_path, model_dir=str(models)))
    assert result["error"] is None
    assert [(r["quality_estimate"], r["quality_warning"], r["quality_threshold"])
            for r in result["rows"]] == [(0.7311, True, 0.85)] * len(REGION_KEYS)
