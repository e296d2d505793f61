"""The dashboard through Streamlit's AppTest: real uploads, every view, bad input."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cxr_dash.regions import REGION_KEYS
from cxr_dash.ui.pages.compare import DIFFERENCE

APP = str(Path(__file__).resolve().parent.parent / "app.py")
VIEWS = ["Overview", "Compare regions", "Statistics", "Explain", "Position or anatomy?", "Downloads",
         "Training playback", "Hyper-parameter search", "Dataset evaluation", "Model set"]


@pytest.fixture
def app(tiny_model_set, monkeypatch):
    monkeypatch.setenv("CXR_MODEL_DIR", str(tiny_model_set))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    return at


def upload(at, name, data, mime="application/octet-stream"):
    at.sidebar.file_uploader(key="upload").set_value((name, data, mime))
    at.run()
    assert not at.exception, at.exception


def current_name(at) -> str:
    return " ".join(c.value for c in at.sidebar.caption if c.value.startswith("Current:"))


def real_png(data_dir, case="JPCLN034"):
    return (data_dir / "images" / f"{case}.png").read_bytes()


def test_without_a_model_set_the_app_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_MODEL_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert any("python -m cxr_dash.train" in e.value for e in at.error)


def test_upload_a_real_case_and_render_every_view(app, data_dir):
    assert "research use only" in app.caption[0].value.lower()
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    assert "JPCLN034.png" in current_name(app)
    assert len(app.get("image")) >= 1
    for view in VIEWS:
        app.sidebar.radio(key="view").set_value(view)
        app.run()
        assert not app.exception, (view, app.exception)
        assert not app.error, (view, [e.value for e in app.error])
        if view == "Training playback":      # the earlier stage of a fine-tuned model is named
            assert any("Earlier stages: epochs before 3: 32 px, adam" in c.value for c in app.caption)
            # The heart sees the whole radiograph ([0, 1, 0, 1] in its manifest entry).
            monitor = [c for image in app.get("image") for c in image.captions
                       if "probability over the radiograph" in c]
            assert monitor and not any("field of view" in c for c in monitor)
            assert any("Trained on **the odd fold** (" in c.value and "no validation cases" in c.value
                       for c in app.caption)


def test_playback_plays_and_pauses_on_the_chosen_epoch(app):
    app.sidebar.radio(key="view").set_value("Training playback").run()
    app.select_slider(key="pb_epoch_heart").set_value(0).run()
    assert any("epoch 1:" in c for image in app.get("image") for c in image.captions)
    app.toggle(key="pb_play").set_value(True).run()      # once crashed: frame written to a widget key
    assert not app.exception, app.exception
    assert not app.select_slider                          # hidden while playing
    assert any("Epoch 2 (2 of 3 snapshots)" in p.text for p in app.get("progress"))
    app.toggle(key="pb_play").set_value(False).run()
    assert not app.exception, app.exception
    assert app.select_slider(key="pb_epoch_heart").value == 1   # paused where it was shown


def test_display_sliders_do_not_rerun_the_models(app, data_dir, tiny_model_set):
    from cxr_dash.ui import state

    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    seg = state.get_segmenter(str(tiny_model_set))
    calls = []
    original = seg.predict
    seg.predict = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        app.sidebar.slider[0].set_value(0.3).run()      # threshold
        app.sidebar.slider[1].set_value(0.8).run()      # opacity
        app.sidebar.radio(key="mask_style").set_value("outline").run()
        app.sidebar.checkbox(key="show_heart").uncheck().run()
        app.sidebar.slider(key="window").set_value((0.2, 0.8)).run()   # display window/level
        app.sidebar.checkbox(key="clahe").check().run()                # display-only CLAHE
        app.toggle(key="inspect").set_value(True).run()                # zoomable view
        assert not app.exception, app.exception
        assert len(app.get("plotly_chart")) == 1
        assert calls == []
        # Test-time augmentation is a model setting: it re-runs the models, once.
        app.sidebar.checkbox(key="tta").check().run()
        app.sidebar.slider[0].set_value(0.4).run()
        assert not app.exception and not app.error
        assert len(calls) == 1
    finally:
        seg.predict = original


def test_explain_and_occlusion_run_from_the_ui(app, data_dir):
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    app.sidebar.radio(key="view").set_value("Explain").run()
    app.button[0].click().run()                           # Run explanation (Grad-CAM)
    assert not app.exception
    captions = [c for image in app.get("image") for c in image.captions]
    assert any(c.startswith("Grad-CAM") for c in captions), captions
    app.slider[0].set_value(16).run()                     # occlusion patch
    app.slider[1].set_value(16).run()                     # stride
    app.button[1].click().run()                           # Run occlusion
    assert not app.exception
    if "occ_job" in app.session_state:                    # not done within INLINE_WAIT_S: a busy CPU
        assert app.session_state["occ_job"].wait(300)
        app.run()
    assert any("Sensitivity inside" in m.label for m in app.metric)
    faithfulness = [m for m in app.metric if m.label.startswith("Faithfulness")]
    assert len(faithfulness) == 2 and all(float(m.value) == float(m.value) for m in faithfulness)
    app.sidebar.radio(key="view").set_value("Downloads").run()
    heatmaps = [b.proto.label for b in app.get("download_button") if "(PNG)" in b.proto.label]
    assert "Heart: Grad-CAM, decoder stage 2 (1/8) (PNG)" in heatmaps
    assert "Heart: Occlusion, patch 16, stride 16, black patches (PNG)" in heatmaps
    # Another image: its downloads offer no heatmap computed on the previous one.
    upload(app, "JPCLN002.png", real_png(data_dir, "JPCLN002"), "image/png")
    heatmaps = [b.proto.label for b in app.get("download_button") if "(PNG)" in b.proto.label]
    assert heatmaps and not any("Grad-CAM" in label or "Occlusion" in label for label in heatmaps)


@pytest.mark.parametrize("name,data,message", [
    ("notes.txt", b"this is not an image", "not a supported image"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "corrupt"),
    ("empty.dcm", b"", "empty"),
])
def test_bad_uploads_show_a_message_and_keep_the_previous_image(app, data_dir, name, data, message):
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    upload(app, name, data)
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert "previous image" in app.error[0].value
    assert "JPCLN034.png" in current_name(app)   # still the current image
    assert len(app.get("image")) >= 1                          # its results still shown
    # The message stays while the rejected file stays in the uploader.
    app.sidebar.slider[1].set_value(0.8).run()                 # opacity
    assert any(message in e.value for e in app.error), "error gone after a slider moved"
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    assert not app.error


def test_huge_upload_is_refused(app):
    from tests.test_imaging import png_claiming_size

    upload(app, "huge.png", png_claiming_size(12000, 12000), "image/png")
    assert any("too large" in e.value for e in app.error)


def test_entered_pixel_spacing_turns_areas_into_square_centimetres(app, data_dir):
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")   # a PNG does not record it
    in_pixels = app.dataframe[0].value
    assert "area_px" in in_pixels.columns and "area_cm2" not in in_pixels.columns
    spacing = app.sidebar.number_input[0]
    assert spacing.label.startswith("Pixel spacing")
    spacing.set_value(0.35).run()
    assert not app.exception, app.exception
    in_cm2 = app.dataframe[0].value
    # 1024 px upload: the working resolution is the original, 0.35 mm per pixel
    expected = [round(px * 0.35 ** 2 / 100, 2) for px in in_pixels["area_px"]]
    assert list(in_cm2["area_cm2"]) == pytest.approx(expected, abs=0.01)
    assert any(a > 0 for a in expected)


def test_sixteen_bit_png_upload(app, data_dir):
    img = np.asarray(Image.open(io.BytesIO(real_png(data_dir))), np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    upload(app, "case16.png", buf.getvalue(), "image/png")
    assert not app.error
    assert "case16.png" in current_name(app)


def test_an_export_with_a_clipped_dark_tail_is_flagged(app, data_dir):
    def flagged() -> bool:
        return any("Grey scale clipped?" in w.value for w in app.warning)

    upload(app, "JPCLN074.png", real_png(data_dir, "JPCLN074"), "image/png")
    assert not flagged()
    pixels = np.array(Image.open(io.BytesIO(real_png(data_dir, "JPCLN074")))).astype(np.float32)
    lo = np.percentile(pixels, 5)       # the darkest 5% clipped to black, as a narrow window does
    clipped = np.clip((pixels - lo) / (pixels.max() - lo) * 255, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(clipped).save(buffer, format="PNG")
    upload(app, "clipped.png", buffer.getvalue(), "image/png")
    assert flagged() and "clipped.png" in current_name(app)


def test_a_dicom_window_that_clips_the_lungs_is_ignored_and_can_be_kept(app, data_dir):
    from tests.test_imaging import make_dicom

    def clipped_warnings() -> list[str]:
        return [w.value for w in app.warning if "Grey scale clipped?" in w.value]

    pixels = np.array(Image.open(io.BytesIO(real_png(data_dir, "JPCLN074")))).astype(np.uint16) * 16
    lo, hi = np.percentile(pixels, [5, 100])          # a window that clips the darkest 5%
    upload(app, "narrow.dcm", make_dicom(pixels, window=((lo + hi) / 2, hi - lo)))
    assert any(e.label == "Image corrections: DICOM window ignored" for e in app.sidebar.expander)
    assert "full range used" in current_name(app) and not clipped_warnings()
    box = next(c.key for c in app.sidebar.checkbox if c.key.startswith("nowindow_"))
    app.sidebar.checkbox(key=box).uncheck().run()      # the file's window, as it asks
    assert not app.exception
    (warning,) = clipped_warnings()
    assert "display window can be ignored" in warning
    # A window that leaves the dark end alone stays applied, and nothing is said.
    upload(app, "wide.dcm", make_dicom(pixels, window=(hi / 2, hi * 1.2)))
    assert "DICOM window / VOI LUT applied" in current_name(app) and not clipped_warnings()
    assert not any("DICOM window ignored" in e.label for e in app.sidebar.expander)


def test_a_padded_upload_is_cropped_to_its_content_and_can_be_kept_whole(app, data_dir):
    pixels = np.array(Image.open(io.BytesIO(real_png(data_dir))))
    buffer = io.BytesIO()
    Image.fromarray(np.pad(pixels, ((200, 200), (0, 0)))).save(buffer, format="PNG")   # letterboxed
    upload(app, "padded.png", buffer.getvalue(), "image/png")
    assert any(e.label == "Image corrections: border cropped" for e in app.sidebar.expander)
    crop = next(c for c in app.sidebar.checkbox if c.key.startswith("crop_"))
    assert crop.value and "top" in crop.label and "bottom" in crop.label and "left" not in crop.label
    app.sidebar.radio(key="view").set_value("Downloads").run()
    # 1024 x 1424 is worked on at 736 x 1024; its 144-px bands are cropped for every view.
    (caption,) = [c.value for c in app.caption if c.value.startswith("Masks at working resolution")]
    assert caption.startswith("Masks at working resolution 736 x 7") and "border cropped" in caption
    app.sidebar.checkbox(key=crop.key).uncheck().run()
    assert not app.exception and not app.error
    (caption,) = [c.value for c in app.caption if c.value.startswith("Masks at working resolution")]
    assert caption.startswith("Masks at working resolution 736 x 1024") and "cropped" not in caption


def test_dataset_evaluation_scores_held_out_cases_and_opens_the_worst(app):
    app.sidebar.radio(key="view").set_value("Dataset evaluation").run()
    assert not app.exception
    app.number_input(key="eval_limit").set_value(2).run()
    app.button(key="eval_run").click().run()
    assert not app.exception and not app.error
    (table,) = [m.value for m in app.markdown if m.value.startswith("| region | Jaccard")]
    assert table.count("| 2 |") == 5                  # two held-out cases for each of the five
    assert len(app.get("plotly_chart")) == 1
    assert {b.proto.label for b in app.get("download_button")} >= {"Per-case scores (CSV)",
                                                                   "Summary and per-case scores (JSON)"}
    worst = app.dataframe[0].value
    assert len(worst) == 10 and list(worst["Jaccard"][:2]) == sorted(worst["Jaccard"][:2])
    last = app.selectbox(key="eval_case").options[-1]
    app.selectbox(key="eval_case").set_value(last).run()
    case = worst["Case"].iloc[-1]
    app.button(key="eval_open").click().run()
    assert not app.exception and not [w.value for w in app.warning if "Session State" in w.value]
    assert app.sidebar.radio(key="view").value == "Compare regions"
    assert f"**{case}**" in current_name(app)
    assert len([m for m in app.metric if m.label == "Missed"]) == 5     # the error overlay is on


def test_dataset_case_is_scored_against_ground_truth(app, data_dir):
    app.sidebar.radio(key="source").set_value("Dataset case").run()
    assert not app.exception
    app.sidebar.radio(key="view").set_value("Compare regions").run()
    assert not app.exception
    assert any(m.label == "Jaccard" for m in app.metric)
    assert not any(m.label == "Missed" for m in app.metric)
    app.radio(key="compare_overlay").set_value(DIFFERENCE).run()
    assert not app.exception
    missed = [m.value for m in app.metric if m.label == "Missed"]
    assert len(missed) == 5 and all(v.endswith("%") for v in missed)


def test_a_training_case_is_flagged_where_its_scores_are_shown(tmp_path, monkeypatch, data_dir):
    from tests.conftest import make_random_model_set

    models = make_random_model_set(tmp_path / "set", 64, regions=("heart", "left_lung"),
                                   training_cases=("JPCLN034",))
    monkeypatch.setenv("CXR_MODEL_DIR", str(models))
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.sidebar.radio(key="source").set_value("Dataset case").run()
    at.sidebar.radio(key="view").set_value("Compare regions").run()
    assert not at.exception, at.exception
    flagged = [c.value for c in at.caption if "is a training case" in c.value]
    assert flagged == ["JPCLN034 is a training case of the heart, left lung models: scores "
                       "against its ground truth show fit, not generalisation."]
    at.sidebar.radio(key="view").set_value("Position or anatomy?").run()
    at.multiselect(key="pos_regions").set_value(["heart"]).run()
    at.checkbox(key="pos_occ").uncheck().run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("JPCLN034 is one of this model's training cases" in c.value for c in at.caption)
    assert any("nearer the" in c.value for c in at.caption)          # the per-case atlas test
    at.sidebar.radio(key="view").set_value("Compare regions").run()
    at.sidebar.selectbox(key="case").set_value("JPCLN002").run()
    assert not at.exception and not [c for c in at.caption if "is a training case" in c.value]
    assert any(m.label == "Jaccard" for m in at.metric)


def test_position_view_runs_the_tests_on_the_current_image(app, data_dir):
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    app.sidebar.radio(key="view").set_value("Position or anatomy?").run()
    app.multiselect(key="pos_regions").set_value(["left_lung"]).run()
    app.checkbox(key="pos_occ").uncheck().run()
    app.button[0].click().run()
    assert not app.exception, app.exception
    labels = [m.label for m in app.metric]
    assert {"Verdict", "Anatomy-following index", "Content-free Dice", "Region-removed Dice"} <= set(labels)


def test_search_view_shows_an_exported_study(app, tmp_path, monkeypatch):
    import optuna

    from cxr_dash.tune import export, open_study

    study = open_study("heart", tmp_path)
    dists = {"optimizer": optuna.distributions.CategoricalDistribution(["sgd", "rmsprop", "adam"]),
             "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "batch_size": optuna.distributions.CategoricalDistribution([1, 8]),
             "loss": optuna.distributions.CategoricalDistribution(["bce_jaccard"]),
             "epochs": optuna.distributions.IntDistribution(1, 10)}
    for i, (opt, lr, value) in enumerate([("sgd", 0.07879, 0.80), ("adam", 1e-3, 0.86)]):
        study.add_trial(optuna.trial.create_trial(
            params={"optimizer": opt, "learning_rate": lr, "batch_size": 1, "loss": "bce_jaccard",
                    "epochs": 5}, distributions=dists, value=value,
            user_attrs={"source": "study table"} if i == 0 else {}))
    export(study, "heart", tmp_path)
    monkeypatch.setenv("CXR_TUNE_DIR", str(tmp_path))
    app.sidebar.radio(key="view").set_value("Hyper-parameter search").run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert list(table[""]) == ["published (study)", "study's combination as run (trial 0)",
                               "best found (trial 1)"]
    assert list(table["mean IoU"])[1:] == [0.80, 0.86] and table["batch_size"][0] == 1
    # Trials added by hand carry no search settings: the view says so rather than guess.
    assert any("Trials scored under: not stored" in c.value for c in app.caption)
    # Why a search's best IoU sits far below a shipped model's Jaccard: another run.
    assert any(c.value.startswith("**Why the best trial scores 0.860") and
               "Other size, schedule and data" in c.value for c in app.caption)


def test_search_view_of_a_study_without_any_iou_yet(app, tmp_path, monkeypatch):
    import optuna

    from cxr_dash.tune import export, open_study

    study = open_study("heart", tmp_path)
    study.add_trial(optuna.trial.create_trial(   # failed: a learning rate, no value
        params={"learning_rate": 0.01},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)},
        state=optuna.trial.TrialState.FAIL))
    export(study, "heart", tmp_path)
    monkeypatch.setenv("CXR_TUNE_DIR", str(tmp_path))
    app.sidebar.radio(key="view").set_value("Hyper-parameter search").run()
    assert not app.exception, app.exception
    assert any("No trial of this study has reported an IoU yet" in i.value for i in app.info)


def test_switching_between_upload_and_dataset_case_shows_the_chosen_source(app, data_dir):
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    app.sidebar.radio(key="source").set_value("Dataset case").run()
    assert "**JPCLN034**" in current_name(app)           # the dataset case, not the upload
    app.sidebar.radio(key="source").set_value("Upload").run()
    assert not app.exception
    assert "JPCLN034.png" in current_name(app)


def test_a_mirrored_or_inverted_radiograph_is_flagged_and_can_be_corrected(data_dir, monkeypatch):
    # The shipped models, not a tiny set: the warning rests on what real models draw.
    monkeypatch.delenv("CXR_MODEL_DIR", raising=False)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()

    def warned() -> bool:
        return any("Check this image" in w.value for w in at.warning)

    upload(at, "JPCLN034.png", real_png(data_dir), "image/png")
    assert not warned()
    pixels = np.array(Image.open(io.BytesIO(real_png(data_dir))))
    for name, wrong_way, correction, says in [
            ("mirrored", pixels[:, ::-1], "mirror_", "mirrored left to right"),
            ("inverted", 255 - pixels, "invert_", "Check this image")]:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(wrong_way)).save(buffer, format="PNG")
        upload(at, f"JPCLN034-{name}.png", buffer.getvalue(), "image/png")
        assert any(says in w.value for w in at.warning), name
        # Corrected in the sidebar: the models see the image the right way round again.
        box = next(c.key for c in at.sidebar.checkbox if c.key.startswith(correction))
        at.sidebar.checkbox(key=box).check()
        at.run()
        assert not at.exception
        assert not warned(), name
        assert any(e.label == f"Image corrections: {name}" for e in at.sidebar.expander)


# --- Hardening: synthetic bad inputs keep what is shown; the queue; the server's defaults -----

def synthetic_png(side=256, seed=0) -> bytes:
    """A chest-like synthetic image (two dark fields on a gradient, noise): no real pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] / side
    image = 150 + 60 * yy - sum(90 * np.exp(-(((xx - cx) / 0.15) ** 2 + ((yy - 0.5) / 0.25) ** 2))
                                for cx in (0.3, 0.7))
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def encoded(array, fmt="PNG", **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _bad_inputs():
    """(id, name, builder, message regex): each bad input kind, built when its test runs."""
    from tests import test_imaging as t

    grad = lambda: t.gradient(dtype=np.uint16, high=4000)      # noqa: E731
    tiff = lambda: encoded(t.gradient(256, 256), "TIFF")       # noqa: E731
    rgb16 = lambda: t.png_16bit(np.stack([t.gradient(128, 128, np.uint16, 60000)] * 3, axis=2))  # noqa: E731
    frames_bad = b"\x28\x00\x08\x00IS\x02\x007 "
    return [
        ("png-bomb-16bit-rgba", "bomb.png", t.bomb_png,
         r"7999 x 7999 pixels \(64\.0 megapixels\) is too large"),
        ("png-over-decoded-bytes", "wide.png", lambda: t.png_header_claiming(5900, 5900),
         r"266 MB once decoded"),
        ("dicom-columns-mismatch", "cols.dcm",
         lambda: t.edit_dicom(t.make_dicom(grad()), Columns=40), r"picture would come out scrambled"),
        ("dicom-rows-too-many", "rows.dcm",
         lambda: t.edit_dicom(t.make_dicom(grad()), Rows=80), r"truncated, or its Rows / Columns"),
        ("dicom-frames-mismatch", "frames.dcm",
         lambda: t.edit_dicom(t.make_dicom(grad()), NumberOfFrames=3), r"says 3 frames of 48 x 64"),
        ("dicom-over-pixel-limit", "big.dcm",
         lambda: t.edit_dicom(t.make_dicom(grad()), Rows=7000, Columns=7000),
         r"7000 x 7000 pixels \(49\.0 megapixels\) is too large"),
        ("dicom-damaged-jpeg-ls", "jls.dcm",
         lambda: t.make_dicom(grad(), compressed=("1.2.840.10008.1.2.4.80", b"\xff\xd8" + bytes(300))),
         r"pixel data cannot be decoded: the file is truncated or damaged"),
        ("dicom-malformed-frames", "nf.dcm",
         lambda: t.edit_dicom(t.make_dicom(grad()), NumberOfFrames=7).replace(
             frames_bad, frames_bad[:-2] + b"x "), r"header is malformed: its NumberOfFrames"),
        ("dicom-no-size", "nosize.dcm", lambda: t.edit_dicom(t.make_dicom(grad()), Rows=0),
         r"gives no image size"),
        ("strip", "strip.png", lambda: encoded(t.gradient(100, 600)), r"is a strip \(1:6\)"),
        ("too-small-to-segment", "small.png", lambda: encoded(t.gradient(40, 40)),
         r"40 x 40 pixels is too small to segment"),
        ("uniform", "flat.png", lambda: encoded(np.full((128, 128), 90, np.uint8)), r"uniform"),
        ("truncated-tiff", "cut.tif", lambda: tiff()[: len(tiff()) // 2], r"truncated or corrupt"),
        ("truncated-16bit-colour-png", "cut16.png", lambda: rgb16()[: len(rgb16()) // 2],
         r"16-bit colour PNG is truncated or corrupt"),
    ]


def _shown(at) -> tuple:
    """What the page shows of the current image: its name, images, measurements table."""
    return (current_name(at), len(at.get("image")), at.dataframe[0].value.to_dict())


@pytest.mark.parametrize("kind,name,build,message", _bad_inputs(), ids=[b[0] for b in _bad_inputs()])
def test_a_synthetic_bad_upload_is_explained_and_nothing_shown_is_lost(app, kind, name, build, message):
    import re

    from tests.test_imaging import assert_clean

    upload(app, "synthetic.png", synthetic_png(), "image/png")
    before = _shown(app)
    assert "synthetic.png" in before[0] and before[1] >= 1 and not app.error
    upload(app, name, build())
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    assert errors[0].startswith(name + ":") and "previous image" in errors[0]
    assert_clean(errors[0])
    assert _shown(app) == before                  # the previous image and its results, unchanged


def test_an_unexpected_decoder_failure_is_logged_and_shown_in_words(app, monkeypatch, caplog):
    import logging

    from cxr_dash.ui import state
    from tests.test_imaging import assert_clean

    upload(app, "synthetic.png", synthetic_png(), "image/png")
    before = _shown(app)

    def broken(data, name):
        raise AttributeError("'NoneType' object has no attribute 'GetBuffer' (gdcm)")

    monkeypatch.setattr(state, "read_image", broken)
    with caplog.at_level(logging.ERROR, logger="cxr_dash.ui.state"):
        upload(app, "odd.dcm", b"DICM" * 40)
    (error,) = [e.value for e in app.error]
    assert error.startswith("odd.dcm: the file could not be read (an unexpected error, recorded in "
                            "the server's log)")
    assert_clean(error)
    assert _shown(app) == before
    assert any("GetBuffer" in (r.exc_text or "") for r in caplog.records)


@pytest.mark.parametrize("name,build,note", [
    ("cine.gif", lambda: _frames("GIF"), "first of 3 frames used (an animated GIF)"),
    ("pages.tif", lambda: _frames("TIFF"), "first of 3 frames used (a multi-page TIFF)"),
    ("cine.dcm", lambda: _multiframe_dicom(), "first of 4 frames used (a multi-frame DICOM)"),
    ("glass.png", lambda: _transparent_png(), "transparent image composited onto black"),
])
def test_frames_and_transparency_are_used_and_said(app, name, build, note):
    upload(app, name, build())
    assert not app.error, [e.value for e in app.error]
    assert name in current_name(app) and note in current_name(app)
    assert len(app.get("image")) >= 1


def _frames(fmt):
    first = np.array(Image.open(io.BytesIO(synthetic_png(128))))
    images = [Image.fromarray(a) for a in (first, 255 - first, first)]
    buffer = io.BytesIO()
    images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def _multiframe_dicom():
    from tests.test_imaging import multiframe_dicom

    first = np.array(Image.open(io.BytesIO(synthetic_png(128)))).astype(np.uint16) * 16
    return multiframe_dicom(np.stack([first + 10 * i for i in range(4)]), rle=True)


def _transparent_png():
    grey = np.array(Image.open(io.BytesIO(synthetic_png(128))))
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :16] = 0
    return encoded(np.dstack([grey, grey, grey, alpha]))


def test_a_session_waits_for_a_free_model_slot_and_is_told_its_place(app, monkeypatch):
    import threading

    from cxr_dash.concurrency import MODEL_GATE
    from cxr_dash.ui import state

    told = []
    message = state.queue_message
    monkeypatch.setattr(state, "queue_message", lambda place, what: told.append((place, what))
                        or message(place, what))
    holding, release = threading.Barrier(MODEL_GATE.slots + 1), threading.Event()

    def hold():
        with MODEL_GATE.slot():
            holding.wait(10)
            release.wait(30)

    holders = [threading.Thread(target=hold) for _ in range(MODEL_GATE.slots)]
    for h in holders:
        h.start()
    holding.wait(10)                                 # every slot taken by "other sessions"
    threading.Timer(3.0, release.set).start()
    upload(app, "synthetic.png", synthetic_png(), "image/png")
    for h in holders:
        h.join(10)
    assert told and told[0] == (1, "reading the upload")
    assert "1st in the queue" in message(1, "x") and f"{MODEL_GATE.slots} model run" in message(1, "x")
    assert not app.error and "synthetic.png" in current_name(app) and len(app.get("image")) >= 1
    assert MODEL_GATE.running == 0 and MODEL_GATE.waiting == 0


def test_the_server_defaults_keep_it_local_quiet_and_terse():
    import tomllib

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"          # this machine only
    assert config["client"]["showErrorDetails"] == "none"       # no tracebacks for users
    assert config["browser"]["gatherUsageStats"] is False
    # Set by hand, so a headless start does not ask checkip.amazonaws.com for an external IP.
    assert config["browser"]["serverAddress"]


# --- Your own ground truth, the display, statistics, downloads -------------------------------

@pytest.fixture
def phantom(app, tiny_model_set, request):
    """The app with a drawn radiograph whose masks the models get exactly right: ``predict``
    answers with the phantom's own masks (a seed per test: a new image, uncached)."""
    from cxr_dash.ui import state
    from tests.phantom import chest_phantom

    import zlib

    image, truth = chest_phantom(256, seed=zlib.crc32(request.node.name.encode()))
    seg = state.get_segmenter(str(tiny_model_set))
    original = seg.predict

    def predict(pixels, regions=None, **kwargs):
        return {r: np.where(truth[r], 0.95, 0.05).astype(np.float32) if r in truth
                else np.full(pixels.shape, 0.05, np.float32) for r in (regions or seg.regions)}

    seg.predict = predict
    try:
        yield app, image, truth
    finally:
        seg.predict = original


def reference_uploader(at):
    return next(f for f in at.sidebar.file_uploader if f.key.startswith("reference_"))


def test_a_reference_mask_for_an_upload_is_scored_and_shown_as_a_difference_view(phantom, monkeypatch):
    import cv2

    from cxr_dash.metrics import jaccard
    from cxr_dash.ui.pages import compare
    from tests.phantom import png

    app, image, truth = phantom
    upload(app, "mine.png", png(image), "image/png")
    assert "jaccard" not in app.dataframe[0].value.columns          # no ground truth yet
    # The reference: the heart drawn a little smaller than the model's mask, at twice the
    # image's size (a scaled copy is accepted).
    reference = cv2.erode(truth["heart"].astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    big = cv2.resize(reference.astype(np.uint8), (512, 512), interpolation=cv2.INTER_NEAREST)
    reference_uploader(app).set_value([("mine_heart.png", png(big > 0), "image/png")])
    app.run()
    assert not app.exception, app.exception
    assert any(c.value.startswith("Reference: heart (mine_heart.png)") for c in app.sidebar.caption)
    table = app.dataframe[0].value.set_index("name")
    expected = jaccard(truth["heart"], reference)
    assert table.loc["Heart", "jaccard"] == pytest.approx(expected, abs=1e-3) and expected < 0.95
    assert table["jaccard"].notna().sum() == 1                       # only the heart has a reference
    assert "mean_contour_distance_px" in table.columns               # no pixel spacing: in pixels
    app.sidebar.number_input[0].set_value(0.7).run()                 # known now: in mm
    assert "mean_contour_distance_mm" in app.dataframe[0].value.columns
    # The difference view (Compare regions) draws this reference against the mask.
    drawn = []
    monkeypatch.setattr(compare, "overlay_errors",
                        lambda base, mask, t, opacity: drawn.append((mask, t)) or base.copy())
    app.sidebar.radio(key="view").set_value("Compare regions").run()
    app.radio(key="compare_overlay").set_value(DIFFERENCE).run()
    assert not app.exception, app.exception
    assert any("agreement" in m.value and "missed" in m.value for m in app.markdown)
    (mask, t), = drawn
    assert np.array_equal(t, reference) and np.array_equal(mask, truth["heart"])
    assert [m.value for m in app.metric if m.label == "Jaccard"] == [f"{expected:.3f}"]
    assert len([m for m in app.metric if m.label == "Missed"]) == 1
    assert any("zoomed to the region" in c for im in app.get("image") for c in im.captions)


def test_a_bad_reference_file_is_named_and_the_good_ones_still_count(phantom):
    from tests.phantom import png

    app, image, truth = phantom
    upload(app, "mine.png", png(image), "image/png")
    reference_uploader(app).set_value([("left_lung.png", png(truth["left_lung"]), "image/png"),
                                       ("heart.png", png(truth["heart"][:200]), "image/png"),
                                       ("JPCLN001.png", png(truth["heart"]), "image/png")])
    app.run()
    assert not app.exception, app.exception
    errors = [e.value for e in app.sidebar.error]
    assert any(e.startswith("heart.png: the mask is 256 x 200 pixels") for e in errors)
    assert any(e.startswith("JPCLN001.png: a single mask") for e in errors)
    table = app.dataframe[0].value.set_index("name")
    assert table.loc["Left lung", "jaccard"] == 1.0 and table["jaccard"].notna().sum() == 1


def test_outline_mode_and_a_hidden_region_change_what_is_drawn(phantom, monkeypatch):
    from cxr_dash.ui.pages import overview
    from tests.phantom import png

    app, image, truth = phantom
    drawn = []
    original = overview.overlay_masks
    monkeypatch.setattr(overview, "overlay_masks",
                        lambda base, masks, opacity, style, **kw: drawn.append((set(masks), style))
                        or original(base, masks, opacity, style, **kw))
    upload(app, "mine.png", png(image), "image/png")
    assert drawn[-1] == (set(REGION_KEYS), "fill")
    app.sidebar.radio(key="mask_style").set_value("outline").run()
    app.sidebar.checkbox(key="show_left_lung").uncheck().run()
    assert not app.exception, app.exception
    assert drawn[-1] == (set(REGION_KEYS) - {"left_lung"}, "outline")
    assert "Left lung" not in list(app.dataframe[0].value["name"])      # nor in its table
    assert not any("Left lung" in m.value for m in app.markdown)         # nor in the legend
    app.toggle(key="inspect").set_value(True).run()                      # the zoomable view too
    assert not app.exception and drawn[-1] == (set(REGION_KEYS) - {"left_lung"}, "outline")


def test_statistics_give_each_region_its_figures_and_the_cardiothoracic_ratio(phantom):
    from cxr_dash.measure import cardiothoracic_ratio, region_statistics
    from tests.phantom import png

    app, image, truth = phantom
    upload(app, "mine.png", png(image), "image/png")
    app.sidebar.number_input[0].set_value(1.4).run()                      # 256 px of a 36 cm film
    app.sidebar.radio(key="view").set_value("Statistics").run()
    assert not app.exception, app.exception
    ctr = cardiothoracic_ratio(truth)
    assert 0.3 < ctr.ratio < 0.7
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["CTR"] == f"{ctr.ratio:.2f}"
    assert metrics["Heart width"] == f"{ctr.heart.width_px * 1.4:.0f} mm"
    table = app.dataframe[0].value.set_index("Region")
    stats = region_statistics({"heart": truth["heart"]}, 1.4)["heart"]
    assert table.loc["Heart", "Area"] == stats["area_cm2"]
    assert table.loc["Heart", "Centroid x"] == stats["centroid_x"]
    assert table.loc["Heart", "Widest extent"] == stats["widest_mm"]
    assert any("widest extent of both lungs" in c for im in app.get("image") for c in im.captions)


def test_downloads_are_named_for_people_and_one_zip_holds_everything(phantom, monkeypatch):
    import json
    import zipfile

    import streamlit

    from tests.phantom import png

    app, image, truth = phantom
    offered = {}
    original = streamlit.download_button

    def record(label, data, file_name=None, *args, **kwargs):
        offered[file_name] = data
        return original(label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", record)
    upload(app, "My scan.png", png(image), "image/png")
    reference_uploader(app).set_value([("heart.png", png(truth["heart"]), "image/png")])
    app.run()
    app.sidebar.radio(key="view").set_value("Explain").run()
    app.button[0].click().run()                                         # Grad-CAM of the heart
    app.sidebar.radio(key="view").set_value("Downloads").run()
    assert not app.exception, app.exception
    assert {"My_scan_heart_mask.png", "My_scan_left_lung_mask.png", "My_scan_heart_probability.png",
            "My_scan_heart_gradcam.png", "My_scan_metrics.json", "My_scan_cxr-dash.zip"} <= set(offered)
    metrics = json.loads(offered["My_scan_metrics.json"])
    assert metrics["model_set"] == Path(app_model_dir()).name       # a name, not a path

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []
    assert not [s for s in strings(metrics) if s.startswith("/") or app_model_dir() in s]
    assert metrics["ground_truth"] == {"heart": "heart.png"}
    assert metrics["cardiothoracic_ratio"]["ratio"] > 0
    heart = next(r for r in metrics["regions"] if r["region"] == "heart")
    assert heart["jaccard"] == 1.0 and heart["widest_px"] > 0 and "centroid_x" in heart
    assert metrics["heatmap_faithfulness"][0]["file"] == "My_scan_heart_gradcam.png"
    with zipfile.ZipFile(io.BytesIO(offered["My_scan_cxr-dash.zip"]())) as z:   # built on a click
        names = set(z.namelist())
    assert {"My_scan_overlay.png", "My_scan_statistics.png", "My_scan_heart_difference.png",
            "My_scan_heart_gradcam.png", "My_scan_right_lung_mask.png", "My_scan_metrics.csv",
            "My_scan_metrics.json", "My_scan_masks.npz", "My_scan_display.json"} <= names


def app_model_dir() -> str:
    import os

    return os.environ["CXR_MODEL_DIR"]


def test_the_model_set_table_keeps_every_field_in_view(app):
    app.sidebar.radio(key="view").set_value("Model set").run()
    assert not app.exception, app.exception
    table = app.table[0].value
    assert list(table.columns) == ["Heart", "Left clavicle", "Left lung", "Right clavicle", "Right lung"]
    assert {"held-out Jaccard (1024)", "Shenzhen lungs", "held out how", "preprocessing",
            "augmentation", "input px", "field of view", "int8 rounding"} <= set(table.index)
    # Which engine drew the masks: float32 OpenVINO unless the server opted into bfloat16.
    text = " ".join(m.value for m in app.markdown)
    assert "forward passes**: OpenVINO, float32" in text or "forward passes**: Keras" in text, text


def test_the_model_set_page_says_when_masks_come_from_bfloat16(tiny_model_set, monkeypatch):
    monkeypatch.setenv("CXR_MODEL_DIR", str(tiny_model_set))
    monkeypatch.setenv("CXR_ENGINE", "openvino-bf16")
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.sidebar.radio(key="view").set_value("Model set").run()
    assert not at.exception, at.exception
    assert "OpenVINO, bfloat16" in " ".join(m.value for m in at.markdown)


def test_occlusion_stops_midway_keeps_its_partial_map_and_the_page_stays_usable(
        app, data_dir, tiny_model_set, monkeypatch):
    import time

    from cxr_dash.ui import state
    from cxr_dash.ui.pages import explain as page

    monkeypatch.setattr(page, "INLINE_WAIT_S", 0.0)     # every run goes to the background
    seg = state.get_segmenter(str(tiny_model_set))
    fast = seg.predictor

    def slow(region):                                    # ~0.2 s a batch: a run of seconds
        return lambda batch: time.sleep(0.2) or fast(region)(batch)
    monkeypatch.setattr(seg, "predictor", slow)
    upload(app, "JPCLN034.png", real_png(data_dir), "image/png")
    app.sidebar.radio(key="view").set_value("Explain").run()
    app.slider[0].set_value(4).run()                     # occlusion patch
    app.slider[1].set_value(2).run()                     # stride: 961 patches, 61 batches
    app.button[1].click().run()                          # Run occlusion
    assert not app.exception, app.exception
    job = app.session_state["occ_job"]
    assert not job.finished and any("patches" in p.text or "Occlusion" in p.text
                                    for p in app.get("progress"))
    deadline = time.time() + 60
    while job.done < 3 * 16 and time.time() < deadline:
        time.sleep(0.05)
    assert 0 < job.done < job.total and job.seconds_left() > 0
    app.button(key="occ_job_stop").click().run()         # Stop
    assert job.wait(5) and job.ended - job.stop_requested < 1.0   # ended within a second
    app.run()
    assert not app.exception, app.exception
    captions = [c for image in app.get("image") for c in image.captions]
    assert any("stopped after" in c and "of 961 patches" in c for c in captions), captions
    assert any("Sensitivity inside" in m.label for m in app.metric)
    result = job.result
    assert not result.complete and 0 < result.evaluations - 1 < 961 and result.heatmap.max() == 1.0
    assert "occ_job" not in app.session_state
    # The page goes on: an explanation runs, and occlusion can run again in full.
    monkeypatch.setattr(page, "INLINE_WAIT_S", 30.0)
    app.button[0].click().run()                          # Run explanation (Grad-CAM)
    assert not app.exception, app.exception
    assert any(c.startswith("Grad-CAM") for image in app.get("image") for c in image.captions)
    app.slider[1].set_value(16).run()
    app.button[1].click().run()
    assert not app.exception and not app.error
    captions = [c for image in app.get("image") for c in image.captions]
    assert any("Score drop" in c and "stopped" not in c for c in captions), captions


def test_an_unknown_engine_setting_is_named_on_the_page(tiny_model_set, monkeypatch):
    monkeypatch.setenv("CXR_MODEL_DIR", str(tiny_model_set))
    monkeypatch.setenv("CXR_ENGINE", "turbo")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    shown = " ".join(e.value for e in at.error)
    assert "CXR_ENGINE='turbo'" in shown and "openvino-bf16" in shown, shown
