"""The dashboard through Streamlit's AppTest: real uploads, every view, bad input."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
VIEWS = ["Overview", "Compare regions", "Explain", "Position or anatomy?", "Downloads", "Training playback", "Hyper-parameter search", "Model set"]


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
        assert not app.exception
        assert calls == []
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
    assert any("Sensitivity inside" in m.label for m in app.metric)


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


def test_huge_upload_is_refused(app):
    from tests.test_imaging import png_claiming_size

    upload(app, "huge.png", png_claiming_size(12000, 12000), "image/png")
    assert any("too large" in e.value for e in app.error)


def test_sixteen_bit_png_upload(app, data_dir):
    img = np.asarray(Image.open(io.BytesIO(real_png(data_dir))), np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    upload(app, "case16.png", buf.getvalue(), "image/png")
    assert not app.error
    assert "case16.png" in current_name(app)


def test_dataset_case_is_scored_against_ground_truth(app, data_dir):
    app.sidebar.radio(key="source").set_value("Dataset case").run()
    assert not app.exception
    app.sidebar.radio(key="view").set_value("Compare regions").run()
    assert not app.exception
    assert any(m.label == "Jaccard" for m in app.metric)
