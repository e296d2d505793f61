"""The training tool's command line: --from-trial against typed flags, and bad input as usage errors."""
import json

import pytest

from cxr_dash.train import config_from_args, main, parse_args


def write_trial(folder, region="heart", settings=True, **params):
    trial = {"region": region,
             "params": {"optimizer": "adam", "learning_rate": 0.002, "batch_size": 8,
                        "loss": "bce_dice", "epochs": 7, **params},
             "mean_iou": 0.8}
    if settings:   # as tune exports it now: the settings the trial was scored under
        trial["settings"] = {"folds": 2, "input_size": 64, "augment_copies": 1,
                             "field_of_view": [0.0, 1.0, 0.0, 1.0], "steps_per_epoch": None}
    path = folder / f"{region}_best.json"
    path.write_text(json.dumps(trial))
    return path


def usage_error(capsys, argv, run=parse_args) -> str:
    """The message of the argparse error ``argv`` must raise (exit status 2, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_typed_flags_win_over_the_trial_and_the_trial_over_the_defaults(tmp_path):
    trial = write_trial(tmp_path)
    cfg = config_from_args(parse_args(["--region", "heart", "--epochs", "60", "--lr", "0.001",
                                       "--input-size", "128", "--from-trial", str(trial)]), "heart")
    assert (cfg.epochs, cfg.learning_rate, cfg.input_size) == (60, 0.001, 128)     # typed
    assert (cfg.optimizer, cfg.batch_size, cfg.loss) == ("adam", 8, "bce_dice")    # the trial's
    assert cfg.augment_copies == 1 and cfg.field_of_view == [0.0, 1.0, 0.0, 1.0]   # scored under

    cfg = config_from_args(parse_args(["--from-trial", str(trial)]), "heart")
    assert (cfg.epochs, cfg.learning_rate, cfg.input_size, cfg.augment_copies) == (7, 0.002, 64, 1)

    # No trial: TrainConfig's defaults and, once resolved, the registry's.
    cfg = config_from_args(parse_args(["--region", "heart"]), "heart").resolved()
    assert (cfg.epochs, cfg.input_size, cfg.augment_copies, cfg.loss) == (50, 256, 5, "bce_jaccard")
    assert (cfg.optimizer, cfg.learning_rate, cfg.batch_size) == ("sgd", 0.07879, 1)
    assert cfg.augment.band_probability == 0.0                                     # no bands unless asked

    cfg = config_from_args(parse_args(["--region", "heart", "--band-augment", "0.5"]), "heart")
    assert cfg.augment.band_probability == 0.5 and cfg.augment.rotation_deg == 10.0


def test_an_older_best_file_without_settings_still_loads(tmp_path):
    trial = write_trial(tmp_path, settings=False)
    args = parse_args(["--from-trial", str(trial)])
    assert args.region == "heart"                          # the trial's region, not all
    cfg = config_from_args(args, "heart")
    assert (cfg.optimizer, cfg.epochs) == ("adam", 7)
    assert (cfg.input_size, cfg.augment_copies) == (256, 5)
    # A bare dict of parameters, as the first exports wrote, with the region typed.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"optimizer": "rmsprop", "batch_size": 2}))
    cfg = config_from_args(parse_args(["--region", "left_lung", "--from-trial", str(bare)]), "left_lung")
    assert (cfg.optimizer, cfg.batch_size) == ("rmsprop", 2)


def test_a_trial_for_another_region_or_for_all_is_refused(tmp_path, capsys):
    trial = str(write_trial(tmp_path, region="heart"))
    assert "for heart, not left_lung" in usage_error(capsys, ["--region", "left_lung", "--from-trial", trial])
    assert "not all" in usage_error(capsys, ["--region", "all", "--from-trial", trial])
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"optimizer": "adam"}))
    assert "names no region" in usage_error(capsys, ["--from-trial", str(bare)])
    assert "cannot read" in usage_error(capsys, ["--from-trial", str(tmp_path / "missing.json")])


@pytest.mark.parametrize("content, message", [
    ("not json", "is not JSON"),
    (json.dumps({"region": "heart", "params": {"batch_size": "8"}}), "batch_size must be"),
    (json.dumps({"region": "heart", "params": {"optimizer": "adagrad"}}), "optimizer must be one of"),
    (json.dumps({"region": "spleen", "params": {}}), "unknown region"),
    (json.dumps({"region": "heart", "params": {}, "settings": {"input_size": 100}}), "multiple of 32"),
])
def test_a_malformed_trial_file_is_a_usage_error(tmp_path, capsys, content, message):
    path = tmp_path / "trial.json"
    path.write_text(content)
    assert message in usage_error(capsys, ["--from-trial", str(path)])


@pytest.mark.parametrize("argv, message", [
    (["--region", "spleen"], "unknown region 'spleen'"),
    (["--data", "/no/such/folder"], "data folder /no/such/folder does not exist"),
    (["--field-of-view", "0.5", "0.2", "0", "1"], "top < bottom"),
    (["--field-of-view", "0", "0.5", "0"], "argument --field-of-view"),
    (["--field-of-view", "0", "half", "0", "1"], "argument --field-of-view"),
    (["--input-size", "100"], "multiple of 32"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--band-augment", "1.5"], "expected a number from 0 to 1"),
])
def test_bad_values_stop_the_tool_with_a_usage_error(data_dir, capsys, argv, message):
    # main, not parse_args: before they were checked, each failed with a
    # traceback only after the data folder was opened.
    assert message in usage_error(capsys, ["--data", str(data_dir), *argv], run=main)
