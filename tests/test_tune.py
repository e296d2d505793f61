"""A tiny search end to end on real cases, resumed, and handed to the trainer; resumes
under other settings and bad input refused before any data is read."""
import json

import pytest

from cxr_dash.tune import kfold_split, main, settings_summary


def test_kfold_split_two_folds_is_the_parity_protocol():
    ids = ["JPCLN001", "JPCLN002", "JPCLN003", "JPCNN004"]
    (train0, val0), (train1, val1) = kfold_split(ids, 2)
    assert val0 == ["JPCLN001", "JPCLN003"] and val1 == ["JPCLN002", "JPCNN004"]
    assert sorted(train0 + val0) == sorted(ids)


def test_tiny_search_runs_resumes_and_exports(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "tune"
    args = ["--region", "right_clavicle", "--folds", "2", "--trials", "1", "--data", str(dataset.root),
            "--out", str(out), "--input-size", "32", "--min-epochs", "1", "--max-epochs", "1",
            "--steps-per-epoch", "1", "--batch-sizes", "2", "--augment-copies", "2",
            "--max-train-cases", "4", "--max-val-cases", "3"]
    assert main(args) == 0
    first = json.loads((out / "right_clavicle_trials.json").read_text())
    assert len(first["trials"]) == 1
    # The study's combination was enqueued as the first trial.
    assert first["trials"][0]["optimizer"] == "rmsprop"
    assert abs(first["trials"][0]["learning_rate"] - 0.00035) < 1e-12
    assert main(args) == 0                                         # resumes the same study
    second = json.loads((out / "right_clavicle_trials.json").read_text())
    assert [t["number"] for t in second["trials"]] == [0, 1]
    best = json.loads((out / "right_clavicle_best.json").read_text())
    assert set(best["params"]) == {"optimizer", "learning_rate", "batch_size", "loss", "epochs"}
    assert "| Right clavicle |" in (out / "right_clavicle_best.md").read_text()
    # What the trials were scored under travels with them: the table, the
    # trials and the best trial name the input size and the folds.
    assert "| 32 px | 2 |" in (out / "right_clavicle_best.md").read_text()
    assert second["settings"]["input_size"] == 32 and second["settings"]["folds"] == 2
    assert best["settings"]["input_size"] == 32 and best["settings"]["augment_copies"] == 2
    # ... and the app's search view says them in words.
    words = settings_summary(second["settings"])
    for said in ("2 folds", "32 px over the region's field of view", "1 epoch ·", "batch 2",
                 "2 augmented copies", "at most 4 training cases, 3 validation cases, 1 step per epoch",
                 "re-estimated before each validation"):
        assert said in words, (said, words)
    # The study's row was measured at batch 2, not its published batch 1: said in the export.
    assert second["published_as_run"]["differs"] == {"batch_size": {"published": 1, "measured": 2}}
    assert second["published_as_run"]["value"] == second["trials"][0]["value"]

    from cxr_dash.train import config_from_args, parse_args
    trial = str(out / "right_clavicle_best.json")
    cfg = config_from_args(parse_args(["--from-trial", trial]), "right_clavicle")
    assert cfg.optimizer == best["params"]["optimizer"] and cfg.batch_size == best["params"]["batch_size"]
    assert (cfg.input_size, cfg.augment_copies, cfg.epochs) == (32, 2, 1)
    # Flags typed win over the trial.
    cfg = config_from_args(parse_args(["--from-trial", trial, "--epochs", "60", "--lr", "0.001",
                                       "--input-size", "256"]), "right_clavicle")
    assert (cfg.epochs, cfg.learning_rate, cfg.input_size) == (60, 0.001, 256)
    assert cfg.optimizer == best["params"]["optimizer"]


def test_a_reused_compiled_model_trains_as_a_new_one(dataset, tmp_path, monkeypatch):
    """The search keeps compiled models between trials and folds (under JAX
    compiling costs more than a short trial trains): a fit on a kept model,
    after another trial has trained it, must learn what a new model would."""
    import numpy as np

    from cxr_dash import train
    from cxr_dash.data import model_inputs, pack

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    arrays = pack(dataset, dataset.folds()["odd"][:6], 32)
    images, masks = arrays["images"][:4], arrays["masks"][:4, 0]
    val_x, val_y = model_inputs(arrays["images"][4:]), arrays["masks"][4:, 0].astype(bool)

    def fit(lr, seed, optimizer="sgd", models=None):
        # Momentum gives SGD a state to reset; plain SGD keeps float noise from
        # growing (Adam's first steps move by the sign of the gradient).
        cfg = train.TrainConfig(region="heart", fold="cv", input_size=32, epochs=2, optimizer=optimizer,
                                learning_rate=lr, momentum=0.9, batch_size=2, augment_copies=1,
                                steps_per_epoch=2, seed=seed).resolved()
        return train.fit_with_validation(cfg, images, masks, val_x, val_y, models=models)

    models = train.CompiledModels()
    first, _ = fit(0.05, seed=0, models=models)
    reused, history = fit(0.01, seed=1, models=models)       # another rate and initialisation
    assert reused is first and (models.built, models.reused) == (1, 1)
    new, expected = fit(0.01, seed=1)
    assert [r["loss"] for r in history] == pytest.approx([r["loss"] for r in expected], rel=1e-4)
    assert [r["val_iou"] for r in history] == pytest.approx([r["val_iou"] for r in expected], abs=1e-3)
    for kept, fresh in zip(reused.get_weights(), new.get_weights()):
        np.testing.assert_allclose(kept, fresh, atol=1e-4)
    # Another optimiser is another compiled step: a model of its own.
    other, _ = fit(0.001, seed=0, optimizer="adam", models=models)
    assert other is not first and (models.built, models.reused) == (2, 1)


def fake_trial(study):
    import optuna

    dists = {"optimizer": optuna.distributions.CategoricalDistribution(["sgd", "rmsprop", "adam"]),
             "batch_size": optuna.distributions.CategoricalDistribution([2])}
    study.add_trial(optuna.trial.create_trial(params={"optimizer": "sgd", "batch_size": 2},
                                              distributions=dists, value=0.5))


def test_resuming_under_other_settings_stops_before_the_data_is_read(tmp_path, monkeypatch, capsys):
    import cxr_dash.tune as tune

    out = tmp_path / "tune"
    base = ["--region", "heart", "--out", str(out), "--input-size", "32", "--batch-sizes", "2"]
    study = tune.open_study("heart", out)
    assert tune.adopt_search_settings(study, tune.search_settings("heart", tune.parse_args(base))) == []
    fake_trial(study)

    def no_data(*_):
        raise AssertionError("the data was opened before the settings were checked")

    monkeypatch.setattr(tune, "open_dataset", no_data)
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--input-size", "64", "--batch-sizes", "2", "4", "--folds", "3"])
    message = capsys.readouterr().err.split("error:", 1)[1]        # not the usage lines
    assert exit_info.value.code == 2
    for said in ("--input-size 32 (now: --input-size 64)", "--batch-sizes 2 (now: --batch-sizes 2 4)",
                 "--folds 2 (now: --folds 3)", "another --out"):
        assert said in message
    assert "--lr" not in message and len(study.trials) == 1

    # The ranges only bound the draws: a resume may change them, and they are kept.
    settings = tune.search_settings("heart", tune.parse_args([*base, "--max-epochs", "20"]))
    assert tune.adopt_search_settings(study, settings) == []
    assert "--max-epochs 10 -> 20" in capsys.readouterr().err
    assert tune.open_study("heart", out).user_attrs["search_settings"]["max_epochs"] == 20


def test_a_study_from_before_settings_were_stored_is_checked_on_its_choices(tmp_path, capsys):
    import cxr_dash.tune as tune

    study = tune.open_study("heart", tmp_path)
    fake_trial(study)                                  # no stored settings: an older study
    settings = tune.search_settings("heart", tune.parse_args(["--region", "heart", "--batch-sizes", "4"]))
    assert tune.adopt_search_settings(study, settings) == ["--batch-sizes 2 (now: --batch-sizes 4)"]
    assert "cannot be checked" in capsys.readouterr().err
    settings["batch_sizes"] = [2]
    assert tune.adopt_search_settings(study, settings) == []
    assert study.user_attrs["search_settings"] == settings    # checked from now on


def test_a_resumed_study_does_not_replay_its_first_random_draws(tmp_path):
    from cxr_dash.tune import open_study

    for _ in range(2):
        open_study("heart", tmp_path).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    drawn = [t.params["x"] for t in open_study("heart", tmp_path).trials]
    assert len(set(drawn)) == 4, drawn


@pytest.mark.parametrize("argv, message", [
    (["--region", "spleen"], "unknown region 'spleen'"),
    (["--region", "heart", "--data", "/no/such/folder"], "data folder /no/such/folder does not exist"),
    (["--region", "heart", "--folds", "1"], "at least 2 folds"),
    (["--region", "heart", "--input-size", "100"], "multiple of 32"),
    (["--region", "heart", "--batch-sizes", "0"], "argument --batch-sizes"),
    (["--region", "heart", "--min-epochs", "5", "--max-epochs", "2"], "--min-epochs 5"),
])
def test_bad_values_stop_the_search_with_a_usage_error(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
