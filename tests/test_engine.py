"""The fast engine (OpenVINO) against the Keras models it replaces for forward passes:
the same probabilities and masks on SCR cases, and a cache keyed by the weights."""
import os
import sys

import numpy as np
import pytest

from cxr_dash import load_segmenter
from cxr_dash.manifest import DEFAULT_MODEL_DIR
from cxr_dash.metrics import jaccard

pytest.importorskip("openvino")

SHIPPED = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "manifest.json").is_file(),
                             reason="no shipped weights")
CASES = ("JPCLN002", "JPCLN034", "JPCNN010")      # held out by every region, nodule and not




@pytest.fixture(scope="module")
def engines():
    return (load_segmenter(engine="openvino", warm_up=False),
            load_segmenter(engine="keras", warm_up=False))


@SHIPPED
def test_openvino_gives_the_keras_probabilities_and_masks_on_scr_cases(dataset, engines):
    fast, keras = engines
    assert fast.engine == "openvino" and not fast.fallbacks
    for case in CASES:
        image = dataset.load_image(case).pixels
        for a, b in ((fast.predict_at_input_size(image), keras.predict_at_input_size(image)),
                     (fast.predict(image, one_piece_at=None), keras.predict(image, one_piece_at=None))):
            for region in fast.regions:
                difference = float(np.abs(a[region] - b[region]).mean())
                assert difference <= 1e-3, (case, region, difference)
                assert jaccard(a[region] >= 0.5, b[region] >= 0.5) >= 0.999, (case, region)
        masks_fast, masks_keras = fast.masks(fast.predict(image)), keras.masks(keras.predict(image))
        for region in fast.regions:
            assert jaccard(masks_fast[region], masks_keras[region]) >= 0.999, (case, region)


@SHIPPED
def test_the_quality_estimates_perturbed_pass_runs_on_the_engine_too(dataset, engines):
    from cxr_dash.quality_estimate import perturbed_probabilities

    fast, keras = engines
    image = dataset.load_image(CASES[0]).pixels.astype(np.float32)
    a = perturbed_probabilities(fast, image, fast.regions)
    b = perturbed_probabilities(keras, image, keras.regions)
    for region in fast.regions:
        assert float(np.abs(a[region] - b[region]).mean()) <= 1e-3, region
    # A batch (occlusion, Score-CAM) gives each image what it gives alone.
    x = fast.prepare(image, "heart")
    batch = np.stack([x, x[::-1].copy(), x * 0.5])
    together = fast.forward("heart", batch)
    alone = np.stack([fast.forward("heart", b[None])[0] for b in batch])
    assert together.shape == (3,) + x.shape[:2] and np.abs(together - alone).max() < 1e-5


def test_converted_models_are_cached_by_the_weights_hash(tiny_model_set, tmp_path, monkeypatch):
    import shutil

    import keras

    from cxr_dash import engine
    from cxr_dash.model import build_unet, save_compact

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "set"
    shutil.copytree(tiny_model_set, models)
    converted = []
    convert = engine.convert_to_openvino
    monkeypatch.setattr(engine, "convert_to_openvino",
                        lambda *a: converted.append(a[1]) or convert(*a))
    image = np.random.default_rng(0).random((96, 96)).astype(np.float32)

    first = load_segmenter(models, regions=["heart"], engine="openvino").predict(image)["heart"]
    assert converted == ["heart"]
    digest = engine.weights_digest(models / "heart.npz")
    assert engine.converted_path(models / "heart.npz", digest).is_file()
    assert digest[:32] in " ".join(p.name for p in engine.engine_cache_dir().iterdir())
    again = load_segmenter(models, regions=["heart"], engine="openvino").predict(image)["heart"]
    assert converted == ["heart"] and np.array_equal(first, again)     # loaded, not converted

    keras.utils.set_random_seed(123)                                    # new weights, same name
    save_compact(build_unet(64), models / "heart.npz")
    new = load_segmenter(models, regions=["heart"], engine="openvino").predict(image)["heart"]
    assert converted == ["heart", "heart"] and not np.allclose(first, new, atol=1e-3)
    reference = load_segmenter(models, regions=["heart"], engine="keras").predict(image)["heart"]
    assert np.abs(new - reference).max() < 1e-4


def test_a_model_the_engine_cannot_take_falls_back_to_keras(tiny_model_set, monkeypatch, caplog):
    from cxr_dash import engine

    def broken(*args, **kwargs):
        raise engine.EngineError("no such device")
    monkeypatch.setattr(engine, "load_openvino", broken)
    seg = load_segmenter(tiny_model_set, regions=["heart"], engine="openvino")
    assert "no such device" in seg.fallbacks["heart"] and "using Keras" in caplog.text
    assert seg.predict(np.random.default_rng(1).random((80, 80)))["heart"].shape == (80, 80)


@SHIPPED
def test_the_bf16_engine_is_opt_in_and_close_to_float32(dataset, engines, monkeypatch):
    from cxr_dash.engine import bf16_native, default_engine

    monkeypatch.delenv("CXR_ENGINE", raising=False)
    assert default_engine() == "openvino"
    fast = engines[0]
    assert {fast.precision(r) for r in fast.regions} == {"f32"}
    half = load_segmenter(regions=["heart", "right_lung"], engine="openvino-bf16", warm_up=False)
    expected = "bf16" if bf16_native() else "f32"
    assert {half.precision(r) for r in half.regions} == {expected}
    image = dataset.load_image(CASES[1]).pixels
    a, b = half.predict(image), fast.predict(image, regions=half.regions)
    for region in half.regions:
        # Not the exact path (scripts/engine_fidelity.py has the figures), but near it.
        assert float(np.abs(a[region] - b[region]).mean()) <= 1e-3, region
        assert jaccard(a[region] >= 0.5, b[region] >= 0.5) >= 0.98, region


@SHIPPED
def test_a_run_of_calls_gives_the_single_calls_results_and_frees_its_buffers(
        dataset, engines, monkeypatch):
    from cxr_dash.occlusion import occlusion_sensitivity

    fast = engines[0]
    x = fast.prepare(dataset.load_image(CASES[0]).pixels, "right_lung")
    one_by_one = occlusion_sensitivity(fast.predictor("right_lung"), x, patch=64, stride=64)
    released = []
    monkeypatch.setattr(fast, "release_memory", lambda: released.append(True))
    with fast.run_of_calls("right_lung") as predict:
        held = occlusion_sensitivity(predict, x, patch=64, stride=64)
        assert not released                      # kept while the run goes on
    assert released == [True]
    assert held.evaluations == one_by_one.evaluations == 17
    assert np.abs(held.sensitivity - one_by_one.sensitivity).max() < 1e-5


def _resident_kb(path) -> int:
    """RSS of this process's mappings of ``path``, from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = fields[-1] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux") or tuple(
    int(v) for v in os.uname().release.split(".")[:2]) < (5, 4), reason="MADV_PAGEOUT: Linux >= 5.4")
def test_paging_out_hands_a_read_files_pages_back_and_they_read_again(tmp_path):
    import mmap

    from cxr_dash.engine import page_out

    path = tmp_path / "weights.bin"
    data = np.random.default_rng(0).integers(0, 255, 8 * 2**20, dtype=np.uint8)
    path.write_bytes(data.tobytes())
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = np.frombuffer(mapped, np.uint8)
        assert int(view.sum()) == int(data.sum())           # every page read
        before = _resident_kb(path)
        advised = page_out(path)
        assert before >= 7 * 1024 and advised >= 8 * 2**20
        assert _resident_kb(path) < before / 2
        assert np.array_equal(view, data)                    # read back from the file
        del view
