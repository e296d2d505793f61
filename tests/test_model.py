"""The U-Net, its compact format, and training on real cases."""
import json

import numpy as np
import pytest

from cxr_dash.data import model_inputs, pack
from cxr_dash.model import (batch_norm_statistics, build_unet, dequantise, load_compact,
                            predict_probabilities, quantise, recalibrate_batch_norm, save_compact,
                            store_batch_norm_statistics)


def test_quantisation_is_per_channel_and_close():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 64, 64)).astype(np.float32) * np.linspace(0.01, 2, 64)
    w[1, 1] *= 20          # a dominant centre tap must not coarsen the other positions
    arrays = quantise([w])
    assert arrays["q0"].dtype == np.int8 and arrays["s0"].shape == (9, 64)
    back = dequantise(arrays, 1)[0]
    # One scale per kernel position and output channel: the error stays
    # relative to that position's range, also where the centre tap is 20x larger.
    rel = np.abs(back - w).max(axis=2) / np.abs(w).max(axis=2)
    assert 0 < rel.max() <= 0.5 / 127 + 1e-6


def test_version_1_files_with_one_scale_per_output_channel_still_load():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    scale = np.abs(w.reshape(-1, 64)).max(axis=0) / 127
    q = np.round(w / scale).astype(np.int8)
    back = dequantise({"q0": q, "s0": scale.astype(np.float32)}, 1)[0]
    assert np.abs(back - w).max() <= scale.max() / 2 + 1e-6


def test_smallest_kernels_stay_float():
    """The stem and the last decoder convolutions keep full precision (cheap, and
    they carry most of the int8 disagreement on thin structures)."""
    rng = np.random.default_rng(1)
    stem, head = rng.normal(size=(7, 7, 3, 64)), rng.normal(size=(3, 3, 16, 1))
    arrays = quantise([stem, head])
    assert set(arrays) == {"f0", "f1"}
    assert np.array_equal(dequantise(arrays, 2)[0], stem.astype(np.float32))


def test_compact_file_size_and_roundtrip(tmp_path):
    model = build_unet(64)
    size = save_compact(model, tmp_path / "m.npz")
    assert model.count_params() > 24e6
    assert size < 26e6          # five of these stay under the 130 MB budget
    other = build_unet(64)
    load_compact(other, tmp_path / "m.npz")
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    a, b = predict_probabilities(model, x), predict_probabilities(other, x)
    assert np.abs(a - b).mean() < 0.01


def test_stochastic_rounding_keeps_a_move_smaller_than_half_a_step():
    """A fine-tune from a compact file starts on the int8 grid; a move of 0.3
    step is lost to nearest rounding, and kept on average by stochastic rounding
    (reproducibly for one seed)."""
    rng = np.random.default_rng(3)
    start = dequantise(quantise([rng.normal(size=(3, 3, 64, 64)).astype(np.float32)]), 1)[0]
    step = quantise([start])["s0"][:, None, :]
    grouped = start.reshape(9, -1, 64)
    # Every value but each group's largest (which sets the scale) moves by 0.3 step.
    direction = np.where(np.abs(grouped) < 126.5 * step, np.sign(grouped), 0)
    moved = start + (0.3 * direction * step).reshape(start.shape)
    nearest = dequantise(quantise([moved]), 1)[0]
    assert np.array_equal(nearest, start)                        # the move is undone
    draws = [dequantise(quantise([moved], "stochastic", seed), 1)[0] for seed in range(20)]
    shift = (np.mean(draws, axis=0) - start).reshape(9, -1, 64) / step
    move = (moved - start).reshape(9, -1, 64) / step
    assert abs(np.mean(shift[move > 0]) - 0.3) < 0.02 and abs(np.mean(shift[move < 0]) + 0.3) < 0.02
    assert np.array_equal(draws[0], dequantise(quantise([moved], "stochastic", 0), 1)[0])
    assert not np.array_equal(draws[0], draws[1])
    with pytest.raises(ValueError, match="rounding"):
        quantise([moved], "truncate")


def test_compact_loader_rejects_other_files(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a"):
        load_compact(build_unet(64), tmp_path / "bad.npz")


def _batch_norm_layers(model):
    import keras

    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def test_batch_norm_recalibration_replaces_stale_statistics():
    model = build_unet(64)
    layers = _batch_norm_layers(model)
    for layer in layers:                       # statistics that fit nothing
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 3.0, np.float32))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 50.0, np.float32))
    rng = np.random.default_rng(0)
    x = rng.random((6, 64, 64, 3), dtype=np.float32) * np.array([1.0, 0.5, 0.2], np.float32)

    assert recalibrate_batch_norm(model, x, batch_size=3) == len(layers) > 40
    # Nothing before the first layer is batch-normalised, so its moving mean is
    # the average of the two batches' means: its input's channel means over all 6.
    import keras

    first = layers[0]
    first_input = np.asarray(keras.Model(model.inputs, first.input)(x, training=False))
    np.testing.assert_allclose(np.asarray(first.moving_mean), first_input.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    assert all(layer.momentum == 0.99 for layer in layers)     # restored

    # One batch: inference with the estimated statistics is training mode on that batch.
    recalibrate_batch_norm(model, x, batch_size=6)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(model(x, training=True)),
                               atol=1e-4)


def test_recalibrated_statistics_are_stored_without_touching_the_kernels(tmp_path):
    model = build_unet(64)
    path = tmp_path / "m.npz"
    save_compact(model, path)
    with np.load(path) as z:
        before = {k: z[k] for k in z.files}
    recalibrate_batch_norm(model, np.random.default_rng(1).random((4, 64, 64, 3), dtype=np.float32))
    store_batch_norm_statistics(model, path)
    with np.load(path) as z:
        after = {k: z[k] for k in z.files}
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith(("q", "s")))
    stats = batch_norm_statistics(model)
    assert all(np.array_equal(after[f"f{i}"], v) for i, v in stats.items())
    assert not all(np.array_equal(before[f"f{i}"], v) for i, v in stats.items())
    loaded = build_unet(64)
    load_compact(loaded, path)
    assert all(np.array_equal(batch_norm_statistics(loaded)[i], v) for i, v in stats.items())


def test_a_few_steps_on_real_cases_lower_the_loss(dataset, tmp_path, monkeypatch):
    import keras

    from cxr_dash.train import make_loss

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    keras.utils.set_random_seed(0)
    arrays = pack(dataset, dataset.folds()["odd"][:4], 64)
    x = model_inputs(arrays["images"])
    y = arrays["masks"][:, 2, ..., None].astype(np.float32)   # left lung
    model = build_unet(64)
    model.compile(keras.optimizers.Adam(1e-3), loss=make_loss("bce_jaccard"))
    # One batch of the same four cases per epoch; the loss is the training-mode
    # loss (batch statistics), as batch-norm running means lag after 8 steps.
    losses = model.fit(x, y, batch_size=4, epochs=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0] - 0.05


def test_train_tool_writes_a_model_set(dataset, tmp_path, monkeypatch):
    from cxr_dash.manifest import read_manifest
    from cxr_dash.train import main

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path / "cache"))

    def train_tiny(out, size, epochs, *extra):
        """The right clavicle on 6 real cases, a few steps: the tool end to end."""
        rc = main(["--region", "right_clavicle", "--data", str(dataset.root), "--out", str(out),
                   "--input-size", str(size), "--epochs", str(epochs), "--steps-per-epoch", "2",
                   "--batch-size", "2", "--max-train-cases", "6", "--max-val-cases", "6", "--quiet",
                   *extra])
        assert rc == 0

    out = tmp_path / "set"
    train_tiny(out, 64, 2)
    entry = read_manifest(out)["regions"]["right_clavicle"]
    assert entry["hyperparameters"]["optimizer"] == "rmsprop"            # the study's default
    assert entry["hyperparameters"]["learning_rate"] == pytest.approx(0.00035)
    # The registry's field of view for the clavicle, recorded where the app reads it.
    assert entry["field_of_view"] == [0.0, 0.5, 0.0, 0.6] == entry["hyperparameters"]["field_of_view"]
    assert all(int(c[-3:]) % 2 == 1 for c in entry["training"]["cases"])
    assert all(int(c[-3:]) % 2 == 0 for c in entry["training"]["validation_cases"])
    history = json.loads((out / entry["history"]).read_text())
    assert [h["epoch"] for h in history] == [1, 2] and {"loss", "val_iou", "val_dice"} <= set(history[0])
    with np.load(out / entry["snapshots"]) as z:
        assert z["probs"].dtype == np.uint8 and z["probs"].shape[:2] == (2, 4)
        assert z["case_ids"][0] == "JPCLN104"            # the study's monitor case leads the panel
    assert (out / entry["weights"]).stat().st_size < 26e6
    # Both int8 roundings were tried on the validation cases; the better one is the only file left.
    metrics = entry["metrics"]
    by_rounding = metrics["int8_vs_float_mask_iou_by_rounding"]
    assert set(by_rounding) == {"nearest", "stochastic"}
    assert metrics["int8_vs_float_mask_iou"] == max(by_rounding.values()) == by_rounding[metrics["int8_rounding"]]
    assert sorted(p.name for p in out.glob("right_clavicle*.npz")) == ["right_clavicle.npz",
                                                                       "right_clavicle_snapshots.npz"]
    recalibration = entry["training"]["batch_norm_recalibration"]
    assert recalibration["cases"] == 6 and 0 <= recalibration["validation_iou_before"] <= 1
    assert recalibration["validation_iou_after"] == entry["metrics"]["validation_at_input_size"]["jaccard"]

    # The same for a set trained before: re-estimated in place, kernels kept.
    from cxr_dash.recalibrate import main as recalibrate_main

    redo = tmp_path / "redo"
    train_tiny(redo, 64, 1, "--no-bn-recalibration")
    assert read_manifest(redo)["regions"]["right_clavicle"]["training"]["batch_norm_recalibration"] is None
    with np.load(redo / entry["weights"]) as z:
        kernels = {k: z[k] for k in z.files if k.startswith("q")}
    assert recalibrate_main(["--models", str(redo), "--region", "right_clavicle",
                             "--data", str(dataset.root)]) == 0
    redone = read_manifest(redo)["regions"]["right_clavicle"]
    assert redone["training"]["batch_norm_recalibration"]["applied_after_training"]
    assert redone["metrics"]["validation_at_input_size"]["jaccard"] == \
        redone["training"]["batch_norm_recalibration"]["validation_iou_after"]
    with np.load(redo / entry["weights"]) as z:
        assert all(np.array_equal(z[k], v) for k, v in kernels.items())

    # Stage 2: fine-tuned at a larger input from those weights. Playback must
    # show the whole run: stage-1 epochs first, snapshots resized, sizes tagged.
    from cxr_dash.record import load_record

    fine = tmp_path / "fine"
    train_tiny(fine, 96, 1, "--init-weights", str(out / entry["weights"]))
    manifest = read_manifest(fine)
    record = load_record(fine, manifest, "right_clavicle")
    assert [(h["epoch"], h["input_size"]) for h in record.history] == [(1, 64), (2, 64), (3, 96)]
    assert record.history[0]["loss"] == history[0]["loss"]
    assert list(record.snapshot_epochs) == [1, 2, 3] and record.snapshots.shape[1:] == (4, 96, 96)
    assert record.stage_starts() == [(3, 96)]
    assert record.stages[0]["input_size"] == 64 and record.stages[0]["epochs"] == 2
    assert "Earlier stages: epochs before 3: 64 px, rmsprop" in record.describe_stages()
    assert record.training["epochs_run"] == 3 and record.training["epoch_kept"] == 3

    # Stage 3 at the same size (e.g. a low-rate polish): still its own stage.
    third = tmp_path / "third"
    train_tiny(third, 96, 1, "--init-weights", str(fine / entry["weights"]))
    record = load_record(third, read_manifest(third), "right_clavicle")
    assert [h["stage"] for h in record.history] == [1, 1, 2, 3]
    assert record.stage_starts() == [(3, 96), (4, 96)]
    assert record.stage_markers() == [(3, "96 px"), (4, "96 px")]     # same training cases
    assert [(s["input_size"], s["epochs"]) for s in record.stages] == [(64, 2), (96, 1)]
    assert list(record.snapshot_epochs) == [1, 2, 3, 4]

    # Stage 4 on another training split validates on other cases: playback keeps
    # the panel cases both splits share, from the first epoch on.
    wider = tmp_path / "wider"
    train_tiny(wider, 96, 1, "--fold", "odd+half-even", "--init-weights", str(third / entry["weights"]))
    record = load_record(wider, read_manifest(wider), "right_clavicle")
    training = record.training
    assert training["fold"] == "odd+half-even" and "JPCLN002" in training["cases"]
    assert not set(training["cases"]) & set(training["validation_cases"])
    assert record.case_ids == ["JPCLN104", "JPCLN034", "JPCLN004"]
    assert list(record.snapshot_epochs) == [1, 2, 3, 4, 5] and record.snapshots.shape[1] == 3
    # The curves mark where the training cases changed (and with them the validation cases).
    n_wider = len(training["cases"])
    assert [s["fold"] for s in record.stages] == ["odd"] * 3
    assert record.stage_markers() == [(3, "96 px"), (4, "96 px"), (5, f"96 px · {n_wider} cases")]
    assert "96 px, rmsprop lr 0.00035, the odd fold" in record.describe_stages()


def test_statistics_re_estimated_before_every_validation_when_asked(dataset, tmp_path, monkeypatch):
    """The learning curve must judge the weights: with recalibrate_bn_each_epoch
    every validation pass runs right after a re-estimation on augmented training
    cases (one copy each); without it, none does."""
    import cxr_dash.train as train

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    arrays = pack(dataset, dataset.folds()["odd"][:4], 32)
    images, masks = arrays["images"], arrays["masks"][:, 0]
    val_x = model_inputs(images)
    calls = []
    real_recalibrate, real_predict = train.recalibrate_batch_norm, train.predict_probabilities

    def spy_recalibrate(model, x, *a, **k):
        calls.append(("recalibrate", len(x)))
        before = batch_norm_statistics(model)
        out = real_recalibrate(model, x, *a, **k)
        assert any(not np.array_equal(v, batch_norm_statistics(model)[i]) for i, v in before.items())
        return out

    def spy_predict(model, x, *a, **k):
        calls.append(("validate", len(x)))
        return real_predict(model, x, *a, **k)

    monkeypatch.setattr(train, "recalibrate_batch_norm", spy_recalibrate)
    monkeypatch.setattr(train, "predict_probabilities", spy_predict)
    for each_epoch, expected in ((True, [("recalibrate", 4), ("validate", 4)] * 2),
                                 (False, [("validate", 4)] * 2)):
        calls.clear()
        cfg = train.TrainConfig(region="heart", input_size=32, epochs=2, optimizer="adam",
                                learning_rate=1e-3, batch_size=2, augment_copies=1,
                                steps_per_epoch=1, recalibrate_bn_each_epoch=each_epoch).resolved()
        _, history = train.fit_with_validation(cfg, images, masks, val_x, masks.astype(bool))
        assert calls == expected and len(history) == 2


def test_a_runs_batches_do_not_depend_on_the_order_they_are_asked_for(dataset, tmp_path, monkeypatch):
    """Worker threads, and Keras looking ahead at a new model's first batch, ask
    for batches in no fixed order: each batch is drawn from (seed, epoch, batch)."""
    from cxr_dash.train import TrainConfig, augmented_batches

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    arrays = pack(dataset, dataset.folds()["odd"][:3], 32)
    images, masks = arrays["images"], arrays["masks"][:, 0]
    cfg = TrainConfig(region="heart", input_size=32, batch_size=2, augment_copies=2, seed=5).resolved()
    in_order, reversed_order = augmented_batches(images, masks, cfg), augmented_batches(images, masks, cfg)
    assert len(in_order) == 3                                    # 3 cases x 2 copies, batch 2
    first = [in_order[i] for i in range(3)]
    second = [reversed_order[i] for i in (2, 1, 0, 1)][::-1][1:]  # asked backwards, one twice
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    in_order.on_epoch_end()                                      # a new epoch draws anew
    assert not np.array_equal(in_order[0][0], first[0][0])
