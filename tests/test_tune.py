"""A tiny search end to end on real cases, resumed, and handed to the trainer."""
import json

from cxr_dash.tune import kfold_split, main


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
            "--steps-per-epoch", "1", "--batch-sizes", "2", "--max-train-cases", "4",
            "--max-val-cases", "3"]
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

    from cxr_dash.train import config_from_args, parse_args
    cfg = config_from_args(parse_args(["--from-trial", str(out / "right_clavicle_best.json")]),
                           "right_clavicle")
    assert cfg.optimizer == best["params"]["optimizer"] and cfg.batch_size == best["params"]["batch_size"]
