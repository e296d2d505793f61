"""The U-Net, its compact format, and training on real cases."""
import json

import numpy as np
import pytest

from cxr_dash.data import pack
from cxr_dash.model import build_unet, dequantise, load_compact, predict_probabilities, quantise, save_compact


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


def test_compact_loader_rejects_other_files(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a"):
        load_compact(build_unet(64), tmp_path / "bad.npz")


def test_a_few_steps_on_real_cases_lower_the_loss(dataset, tmp_path, monkeypatch):
    import keras

    from cxr_dash.train import make_loss

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    keras.utils.set_random_seed(0)
    arrays = pack(dataset, dataset.folds()["odd"][:4], 64)
    x = np.repeat(arrays["images"].astype(np.float32)[..., None], 3, axis=3)
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
    assert "Epochs before 3: 64 px, rmsprop" in record.describe_stages()
    assert record.training["epochs_run"] == 3 and record.training["epoch_kept"] == 3

    # Stage 3 at the same size (e.g. a low-rate polish): still its own stage.
    third = tmp_path / "third"
    train_tiny(third, 96, 1, "--init-weights", str(fine / entry["weights"]))
    record = load_record(third, read_manifest(third), "right_clavicle")
    assert [h["stage"] for h in record.history] == [1, 1, 2, 3]
    assert record.stage_starts() == [(3, 96), (4, 96)]
    assert [(s["input_size"], s["epochs"]) for s in record.stages] == [(64, 2), (96, 1)]
    assert list(record.snapshot_epochs) == [1, 2, 3, 4]
