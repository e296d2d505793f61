import json

import numpy as np
import pytest

from cxr_dash import ModelSetError, load_segmenter
from cxr_dash.regions import REGION_KEYS


def test_missing_model_set_says_how_to_train(tmp_path):
    with pytest.raises(ModelSetError, match="python -m cxr_dash.train"):
        load_segmenter(tmp_path)


def test_manifest_naming_a_missing_weights_file(tiny_model_set, tmp_path):
    manifest = json.loads((tiny_model_set / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelSetError, match="missing"):
        load_segmenter(tmp_path)


@pytest.mark.parametrize("dtype,shape", [(np.uint8, (300, 250)), (np.uint16, (128, 128)),
                                         (np.float64, (97, 131))])
def test_predict_returns_one_probability_map_per_region(tiny_model_set, dtype, shape):
    seg = load_segmenter(tiny_model_set)
    assert seg.regions == REGION_KEYS
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * (4000 if dtype == np.uint16 else 255)).astype(dtype)
    probs = seg.predict(image)
    assert tuple(probs) == REGION_KEYS
    for p in probs.values():
        assert p.shape == shape and p.dtype == np.float32
        assert 0.0 <= p.min() and p.max() <= 1.0


def test_loading_traces_each_model_so_the_first_predict_is_not_slow(tiny_model_set):
    # Keras builds a model's predict function on its first call (graph tracing:
    # seconds per 384 px model on a CPU); load_segmenter pays that, not predict.
    cold = load_segmenter(tiny_model_set, regions=["heart", "left_clavicle"], warm_up=False,
                          engine="keras")
    assert all(cold.model(r).predict_function is None for r in cold.regions)
    warm = load_segmenter(tiny_model_set, regions=["heart", "left_clavicle"], engine="keras")
    assert all(warm.model(r).predict_function is not None for r in warm.regions)


def test_the_fast_engine_loads_no_keras_model_until_one_is_asked_for(tiny_model_set):
    from cxr_dash.engine import OpenVinoModel

    seg = load_segmenter(tiny_model_set, regions=["heart", "left_clavicle"], engine="openvino")
    assert seg.engine == "openvino" and not seg.fallbacks and seg.ready
    assert all(isinstance(seg._runners[r], OpenVinoModel) for r in seg.regions)
    image = np.random.default_rng(4).random((100, 90)).astype(np.float32)
    seg.predict(image)
    seg.estimate_quality(image)
    assert seg._models == {}                      # predictions never built a Keras model
    lazy = load_segmenter(tiny_model_set, regions=["heart"], warm_up=False, engine="openvino")
    assert lazy.ready and lazy._models == {}


def test_predict_rejects_non_images(tiny_model_set):
    seg = load_segmenter(tiny_model_set)
    with pytest.raises(ValueError, match="2-D"):
        seg.predict(np.zeros((2, 3, 4, 5)))


def test_evaluate_tool_on_real_cases(tiny_model_set, dataset, tmp_path):
    from cxr_dash.evaluate import main

    out = tmp_path / "eval"
    assert main(["--models", str(tiny_model_set), "--data", str(dataset.root), "--cases", "even",
                 "--limit", "2", "--out", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert set(result["summary"]) == set(REGION_KEYS)
    rows = result["per_case"]["heart"]
    assert [r["case"] for r in rows] == ["JPCLN002", "JPCLN004"]
    assert all(0 <= r["jaccard"] <= 1 for r in rows)
    assert "| Heart |" in (out / "evaluation.md").read_text()

    # Case for case against another set: score on the cases that set held out.
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((tiny_model_set / "manifest.json").read_text())
    kept_out = ["JPCLN004", "JPCNN010"]
    manifest["regions"]["heart"]["training"] = {
        "cases": [c for c in dataset.cases_with_masks() if c not in kept_out]}
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main(["--models", str(tiny_model_set), "--data", str(dataset.root), "--heldout-of",
                 str(other), "--region", "heart", "--out", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert [r["case"] for r in result["per_case"]["heart"]] == kept_out
    assert result["protocol"] == f"cases held out by {other}"


def test_one_piece_keeps_the_main_structure_drops_islands_and_fills_holes():
    from cxr_dash.inference import one_piece, to_mask

    prob = np.full((60, 60), 0.1, np.float32)
    prob[5:40, 5:40] = 0.9            # the structure
    prob[20:24, 20:24] = 0.2          # a hole in it
    prob[50:55, 50:55] = 0.8          # a detached island
    out = one_piece(prob)
    assert np.array_equal(out >= 0.5, to_mask(prob))
    assert out[50:55, 50:55].max() == 0 and out[20:24, 20:24].min() == 0.5
    untouched = np.ones_like(prob, bool)
    untouched[50:55, 50:55] = untouched[20:24, 20:24] = False
    assert np.array_equal(out[untouched], prob[untouched])
    flat = np.full((8, 8), 0.3, np.float32)       # nothing reaches the threshold: unchanged
    assert np.array_equal(one_piece(flat), flat)


def test_to_mask_inside_the_bounding_box_equals_the_whole_image_computation():
    from cxr_dash.inference import to_mask
    from cxr_dash.metrics import fill_holes, largest_component

    rng = np.random.default_rng(7)
    for trial in range(30):
        prob = np.zeros((90, 120), np.float32)
        for _ in range(rng.integers(1, 5)):            # blobs, some touching the border
            y, x, r = rng.integers(0, 90), rng.integers(0, 120), rng.integers(3, 25)
            yy, xx = np.ogrid[:90, :120]
            prob[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = 0.9
        prob[rng.random(prob.shape) < 0.05] = 0.2      # pinholes and speckle
        prob[rng.random(prob.shape) < 0.01] = 0.7
        assert np.array_equal(to_mask(prob), fill_holes(largest_component(prob >= 0.5))), trial


def test_predict_returns_maps_whose_mask_is_the_evaluated_one(tiny_model_set):
    from cxr_dash.inference import to_mask

    seg = load_segmenter(tiny_model_set, regions=["heart", "left_lung"])
    image = np.random.default_rng(3).random((150, 130)).astype(np.float32)
    raw, post = seg.predict(image, one_piece_at=None), seg.predict(image)
    for region in seg.regions:
        assert np.array_equal(post[region] >= 0.5, to_mask(raw[region]))
    assert any(not np.array_equal(raw[r], post[r]) for r in seg.regions), \
        "a random-weight model's speckled output should have islands to remove"


def test_a_region_with_a_field_of_view_predicts_inside_it_only(tiny_model_set):
    from cxr_dash.regions import REGIONS

    seg = load_segmenter(tiny_model_set)
    view = seg.view("left_clavicle")
    assert view.as_list() == list(REGIONS["left_clavicle"].field_of_view)
    assert seg.view("heart").is_full
    image = np.random.default_rng(1).random((240, 240)).astype(np.float32)  # non-square: test_preprocess
    prob = seg.predict(image, ["left_clavicle"], one_piece_at=None)["left_clavicle"]
    y0, y1, x0, x1 = view.box(image.shape)
    assert prob[y1:].max() == 0 and prob[:, :x0].max() == 0
    assert prob[y0:y1, x0:x1].min() > 0          # a sigmoid is never exactly 0
    assert seg.prepare(image, "left_clavicle").shape == (64, 64, 3)
    truth = np.zeros(image.shape, bool)
    truth[y0:y1, x0:x1] = True
    assert seg.prepare_mask(truth, "left_clavicle").all()


def test_test_time_augmentation_keeps_shapes_and_follows_the_set_default(tiny_model_set, tmp_path):
    from cxr_dash.inference import shift_image

    yy, xx = np.mgrid[:120, :90]
    blob = np.exp(-((yy - 50) ** 2 + (xx - 40) ** 2) / 200.0).astype(np.float32)
    moved = shift_image(blob, 3, -2)                     # (dy, dx): down 3, left 2
    assert np.unravel_index(moved.argmax(), moved.shape) == (53, 38)
    assert np.abs(shift_image(moved, -3, 2) - blob).max() < 0.01
    assert np.abs(shift_image(shift_image(blob, 2.5, -1.5), -2.5, 1.5) - blob).max() < 0.02
    image = np.random.default_rng(2).random((120, 90)).astype(np.float32)
    seg = load_segmenter(tiny_model_set, regions=["heart", "left_clavicle"])
    assert not seg.default_tta
    plain, averaged = seg.predict(image), seg.predict(image, tta=True)
    for region in seg.regions:
        assert averaged[region].shape == image.shape and averaged[region].dtype == np.float32
        assert 0 <= averaged[region].min() and averaged[region].max() <= 1
        assert not np.array_equal(plain[region], averaged[region])
    manifest = json.loads((tiny_model_set / "manifest.json").read_text())
    manifest["test_time_augmentation"] = True
    for f in tiny_model_set.iterdir():
        if f.name != "manifest.json":
            (tmp_path / f.name).symlink_to(f)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    seg_tta = load_segmenter(tmp_path, regions=["heart"])
    assert seg_tta.default_tta
    assert np.allclose(seg_tta.predict(image)["heart"], averaged["heart"], atol=1e-5)


def copy_model_set(source, target, region="heart"):
    """A one-region copy of a model set whose files the test may damage."""
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["regions"] = {region: manifest["regions"][region]}
    (target / "manifest.json").write_text(json.dumps(manifest))
    (target / f"{region}.npz").write_bytes((source / f"{region}.npz").read_bytes())
    return manifest


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_middle_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,message", [
    (truncate, r"heart\.npz: .*truncated"),
    (lambda path: path.write_bytes(b"not a zip"), r"heart\.npz: .*truncated"),
    (flip_middle_bytes, r"heart\.npz: the heart weights cannot be loaded"),
])
def test_damaged_weights_file_raises_model_set_error_naming_it(tiny_model_set, tmp_path,
                                                                damage, message):
    copy_model_set(tiny_model_set, tmp_path)
    damage(tmp_path / "heart.npz")
    with pytest.raises(ModelSetError, match=message):
        load_segmenter(tmp_path)


@pytest.mark.parametrize("edit,message", [
    (lambda entry: entry.pop("input_size"), "input_size.*found None"),
    (lambda entry: entry.update(input_size=100), "multiple of 32.*found 100"),
    (lambda entry: entry.update(input_size="big"), "input_size.*found 'big'"),
    (lambda entry: entry.pop("weights"), "names no weights file"),
    (lambda entry: entry.update(field_of_view=[0, 1]), "field_of_view is invalid"),
])
def test_broken_manifest_entry_raises_model_set_error_naming_it(tiny_model_set, tmp_path,
                                                                 edit, message):
    manifest = copy_model_set(tiny_model_set, tmp_path)
    edit(manifest["regions"]["heart"])
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelSetError, match=r"manifest\.json: .*" + message):
        load_segmenter(tmp_path)


def test_predict_refuses_nan_inf_and_complex_images(tiny_model_set):
    from cxr_dash.errors import ImageReadError

    seg = load_segmenter(tiny_model_set, regions=["heart"])
    image = np.random.default_rng(3).random((80, 80)).astype(np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        spoilt = image.copy()
        spoilt[10, 10:13] = bad
        with pytest.raises(ImageReadError, match="3 non-numeric"):
            seg.predict(spoilt)
        with pytest.raises(ValueError, match="NaN/inf"):    # ImageReadError is a ValueError
            seg.predict_at_input_size(spoilt)
    with pytest.raises(ImageReadError, match="real-valued"):
        seg.predict(image + 1j)
    assert np.isfinite(seg.predict(image)["heart"]).all()


def test_evaluate_warns_when_the_kept_epoch_was_chosen_on_the_scored_cases(dataset, tmp_path):
    from cxr_dash.evaluate import checkpoint_chosen_on, main
    from tests.conftest import make_random_model_set

    models = make_random_model_set(tmp_path / "set", 32, regions=("heart",))
    manifest = json.loads((models / "manifest.json").read_text())
    training = manifest["regions"]["heart"]["training"]
    training.update(restore_best=True, validation_cases=["JPCLN002", "JPCLN006"])
    (models / "manifest.json").write_text(json.dumps(manifest))
    assert checkpoint_chosen_on(manifest["regions"]["heart"], ["JPCLN002", "JPCLN004"]) == ["JPCLN002"]
    assert checkpoint_chosen_on({"training": {**training, "restore_best": False}}, ["JPCLN002"]) == []

    out = tmp_path / "eval"
    assert main(["--models", str(models), "--data", str(dataset.root), "--cases", "even",
                 "--limit", "2", "--out", str(out)]) == 0
    assert json.loads((out / "evaluation.json").read_text())["checkpoint_chosen_on_scored_cases"] == {"heart": 1}
    assert "Caution: the heart model kept its epoch of best validation IoU, chosen on 1 of" in \
        (out / "evaluation.md").read_text()


@pytest.mark.parametrize("tool,argv,message", [
    ("evaluate", ["--region", "spleen"], "spleen"),
    ("evaluate", ["--models", "no/such/set"], "no/such/set"),
    ("position", ["--regions", "spleen"], "spleen"),
    ("position", ["--models", "no/such/set"], "no/such/set"),
])
def test_tools_refuse_bad_arguments_with_a_usage_message(dataset, tool, argv, message, capsys):
    import importlib

    main = importlib.import_module(f"cxr_dash.{tool}").main
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(dataset.root), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("image,message", [
    (np.ones((1, 1), np.float32), r"1 x 1 pixels is too small to segment; the models need at least 64"),
    (np.linspace(0, 1, 5 * 4000).reshape(5, 4000), r"4000 x 5 pixels is too small to segment"),
    (np.linspace(0, 1, 63 * 200).reshape(63, 200), r"200 x 63 pixels is too small"),
    (np.linspace(0, 1, 100 * 500).reshape(100, 500), r"500 x 100 pixels is a strip \(1:5\)"),
    (np.zeros((128, 128), bool), r"boolean array \(a mask\?\), not a radiograph"),
    (np.full((128, 128), 7, np.uint8), r"the image is uniform \(every pixel is 7\): nothing to segment"),
    (np.zeros((128, 128), np.float32), r"uniform \(every pixel is 0\)"),
    (np.random.default_rng(0).random((3, 128, 128)), r"shape \(3, 128, 128\): a stack of 3 images "
                                                      r"\(or channels first\)\? Pass one 2-D image"),
    (np.random.default_rng(0).random((10, 96, 96)), r"a stack of 10 images"),
    (np.random.default_rng(0).random((2, 96, 96, 3)), r"a batch of 2\? Pass the images one at a time"),
    (np.array([[1, 2], [3, 4]], dtype=object), r"real-valued"),
], ids=["1x1", "5x4000", "63x200", "aspect-1:5", "boolean", "constant", "all-zero", "stack-3",
        "stack-10", "batch", "object"])
def test_predict_refuses_what_it_would_only_turn_into_empty_maps(tiny_model_set, image, message):
    from cxr_dash.errors import ImageReadError

    seg = load_segmenter(tiny_model_set, regions=["heart"])
    for entry in (seg.predict, seg.predict_at_input_size):
        with pytest.raises(ImageReadError, match=message):
            entry(image)


def test_predict_still_takes_the_extremes_it_allows(tiny_model_set):
    seg = load_segmenter(tiny_model_set, regions=["heart"])
    rng = np.random.default_rng(1)
    for shape in ((64, 64), (64, 256), (256, 64), (96, 96, 3), (96, 96, 4), (96, 96, 1)):
        assert seg.predict(rng.random(shape).astype(np.float32))["heart"].shape == shape[:2]
