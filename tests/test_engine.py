"""The fast engine (OpenVINO) against the Keras models it replaces for forward passes:
the same probabilities and masks on SCR cases, and a cache keyed by the weights."""
import numpy as np
import pytest

from cxr_dash import load_segmenter
from cxr_dash.manifest import DEFAULT_MODEL_DIR

pytest.importorskip("openvino")

SHIPPED = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "manifest.json").is_file(),
                             reason="no shipped weights")
CASES = ("JPCLN002", "JPCLN034", "JPCNN010")      # held out by every region, nodule and not


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


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
