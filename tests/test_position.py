"""The position tests on models whose answer is known, then on real cases."""
import numpy as np
import pytest

from cxr_dash import position as pos

S = 64


def fixed_blob(batch: np.ndarray) -> np.ndarray:
    """Draws the same blob whatever it is shown: a purely positional 'model'."""
    out = np.zeros(batch.shape[:3], np.float32)
    out[:, 20:40, 12:30] = 1.0
    return out


def bright_object(batch: np.ndarray) -> np.ndarray:
    """Segments whatever is bright, wherever it is: a purely anatomical 'model'."""
    return (batch[..., 0] > 0.6).astype(np.float32)


def scene() -> np.ndarray:
    x = np.full((S, S), 0.3, np.float32)
    x[22:38, 26:42] = 0.9   # the "organ"
    return np.repeat(x[..., None], 3, axis=2)


def test_fixed_blob_model_is_positional():
    rep = pos.run_all(fixed_blob, scene(), "heart")
    assert pos.mean_index(rep.translation) == pytest.approx(-1.0)
    assert rep.content_removal["blank"]["dice_with_original"] == 1.0
    assert rep.summary["verdict"] == "position"


def test_bright_object_model_follows_anatomy():
    rep = pos.run_all(bright_object, scene(), "heart")
    assert pos.mean_index(rep.translation) > 0.9
    assert pos.mean_index(rep.scale) > 0.5
    assert rep.content_removal["blank"]["dice_with_original"] == 0.0
    assert rep.occlusion["inside_fraction"] > rep.occlusion["region_area_fraction"]
    assert rep.summary["verdict"] == "anatomy"


def test_flip_reports_where_the_mask_goes():
    blob = pos.flip_test(fixed_blob, scene())
    assert blob["stays_on_its_side"] == 1.0 and blob["centroid_x_after"] < 0.5
    obj = pos.flip_test(bright_object, scene())
    assert obj["follows_mirrored_anatomy"] == 1.0


def test_atlas_comparison_flags_a_pull_towards_the_atlas():
    atlas = np.zeros((S, S), np.float32)
    atlas[10:30, 10:30] = 1
    truth = np.zeros((S, S), bool)
    truth[30:50, 30:50] = True                       # unusual anatomy, far from the atlas
    pulled = atlas >= 0.5                            # a model that drew the atlas anyway
    a = pos.atlas_comparison(pulled, truth, atlas)
    assert a["nearer_atlas_than_truth"] and a["model_jaccard"] == 0.0
    assert not pos.atlas_comparison(truth, truth, atlas)["nearer_atlas_than_truth"]


def test_dataset_report_on_real_cases(tiny_model_set, dataset, tmp_path, monkeypatch):
    from cxr_dash.inference import load_segmenter

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path))
    # The right clavicle's model sees a field of view: atlas, truth and inputs in its window.
    seg = load_segmenter(tiny_model_set, regions=("left_lung", "right_clavicle"))
    cases = dataset.folds()["even"][:2]
    result = pos.dataset_report(seg, dataset, cases, occlusion_cases=1)
    for region in seg.regions:
        s = result["summary"][region]
        assert s["cases"] == 2 and s["verdict"] in ("anatomy", "position", "mixed", "undetermined")
        assert 0 <= s["atlas_jaccard"] <= 1
    views = {r: seg.view(r).describe() for r in seg.regions if not seg.view(r).is_full}
    md = pos.markdown_summary(result["summary"], str(tiny_model_set), cases, views)
    assert "| Left lung |" in md and "| Right clavicle |" in md
    assert "right clavicle model sees rows 0%–50%, columns 0%–60%" in md


def test_report_cli_writes_json_figures_and_verdicts(tiny_model_set, data_dir, tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "report"
    assert pos.main(["--data", str(data_dir), "--models", str(tiny_model_set), "--out", str(out),
                     "--regions", "heart", "--cases", "2", "--occlusion-cases", "1"]) == 0
    report = json.loads((out / "position.json").read_text())
    assert len(report["cases"]) == 2 and not report["includes_training_cases"]
    s = report["summary"]["heart"]
    assert s["cases"] == 2 and 0 <= s["region_inpainted_dice"] <= 1 and 0 <= s["region_blurred_dice"] <= 1
    assert len(report["per_case"]["heart"]) == 2
    for name in ("dataset.png", "transform_curves.png", "content_removal.png"):
        assert (out / name).stat().st_size > 10_000, name
    md = (out / "summary.md").read_text()
    assert "| Heart | **" in md and "region inpainted / blurred Dice" in md and "2 held-out cases" in md


def test_report_cli_refuses_a_set_with_no_held_out_case(tmp_path, dataset, data_dir, capsys):
    from tests.conftest import make_random_model_set

    every_case = dataset.cases_with_masks()
    models = make_random_model_set(tmp_path / "all", 32, regions=("heart",), training_cases=every_case)
    with pytest.raises(SystemExit):
        pos.main(["--data", str(data_dir), "--models", str(models), "--out", str(tmp_path / "r")])
    assert "--include-training-cases" in capsys.readouterr().err


def test_shipped_heart_model_follows_the_anatomy_of_a_held_out_case(dataset):
    """On a trained model the tests must reach the answer the report gives
    (README: the heart model follows the anatomy and draws nothing on
    content-free inputs), not just run."""
    from cxr_dash.inference import load_segmenter
    from cxr_dash.manifest import DEFAULT_MODEL_DIR

    if not (DEFAULT_MODEL_DIR / "manifest.json").is_file():
        pytest.skip("no shipped weights")
    seg = load_segmenter(regions=("heart",))
    case_id = next(c for c in dataset.folds()["even"] if c not in seg.training_cases("heart"))
    x = seg.prepare(dataset.load_image(case_id).pixels, "heart")
    rep = pos.run_all(seg.predictor("heart"), x, "heart", occlusion=False)
    assert rep.summary["verdict"] == "anatomy", rep.summary
    assert pos.mean_index(rep.translation) > 0.8 and pos.mean_index(rep.scale) > 0.6
    assert rep.summary["phantom_dice"] < 0.2
