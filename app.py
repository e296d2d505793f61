"""cxr-dash: what per-region U-Nets segment on a chest radiograph, why, and how they learned it.

Run with ``streamlit run app.py``. This file is the table of contents; the
panels live in ``cxr_dash/ui``, the computation in ``cxr_dash``.
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st  # noqa: E402

from cxr_dash.quality import exposure_warnings, plausibility_warnings  # noqa: E402
from cxr_dash.ui import dataset_view, state, views  # noqa: E402

NOTICE = ("**Research use only — not for diagnosis.** Uploaded images are processed in memory "
          "and never stored.")

IMAGE_VIEWS = {
    "Overview": views.overview,
    "Compare regions": views.compare_regions,
    "Explain": views.explain_view,
    "Position or anatomy?": views.position_view,
    "Downloads": views.downloads,
}
MODEL_VIEWS = {
    "Training playback": views.playback,
    "Hyper-parameter search": views.search_view,
    "Dataset evaluation": dataset_view.dataset_evaluation,
    "Model set": views.model_card,
}


def main() -> None:
    st.set_page_config(page_title="cxr-dash", page_icon="🫁", layout="wide")
    st.title("cxr-dash · chest radiograph segmentation explorer")
    st.caption(NOTICE)
    seg, problem = state.segmenter_or_error()
    if seg is None:
        st.error(problem)
        st.stop()
    view = st.sidebar.radio("View", list(IMAGE_VIEWS) + list(MODEL_VIEWS), key="view")
    image = choose_input()
    tta = views.inference_settings(seg)
    settings = views.display_settings(seg.regions, has_truth=bool(image is not None and image.truth))
    if (message := state.input_error()) is not None:
        st.error(message + ("  \nThe previous image and its results are kept and shown below."
                            if state.current() else ""))
    if view in MODEL_VIEWS:
        MODEL_VIEWS[view](seg, settings)
        return
    if image is None:
        st.info("Upload a frontal chest radiograph (PNG, JPEG, 16-bit PNG, DICOM or JSRT .IMG) "
                "in the sidebar" + (", or pick a dataset case." if state.dataset() else "."))
        return
    ctx = build_context(seg, image, settings, tta)
    IMAGE_VIEWS[view](ctx)


def choose_input() -> state.CurrentImage | None:
    """Sidebar: an upload, or a case of CXR_DATA_DIR (with its ground truth)."""
    ds = state.dataset()
    sources = ["Upload"] + (["Dataset case"] if ds else [])
    source = st.sidebar.radio("Input", sources, horizontal=True, key="source")
    if source == "Upload":
        uploaded = st.sidebar.file_uploader(
            "Radiograph", key="upload",
            help="PNG/JPEG (8 or 16 bit), DICOM (.dcm) or JSRT raw .IMG; frontal (PA/AP) views.")
        state.handle_upload(uploaded)
    else:
        from cxr_dash.data import SHOWCASE_CASE

        cases = ds.cases_with_masks()
        default = cases.index(SHOWCASE_CASE) if SHOWCASE_CASE in cases else 0
        # A case chosen elsewhere (Dataset evaluation) arrives as the widget's state:
        # a default index beside it would make Streamlit warn of two sources.
        start = {} if "case" in st.session_state else {"index": default}
        state.handle_case(ds, st.sidebar.selectbox("Case", cases, key="case", **start))
    if (image := state.current()) is not None:
        current = st.sidebar.empty()      # above the corrections, but saying what they did
        image = views.orientation_input(views.pixel_spacing_input(image))
        current.caption(f"Current: **{image.name}** ({image.original_shape[1]} x "
                        f"{image.original_shape[0]})" + "".join(f" · {n}" for n in image.notes))
    return image


def build_context(seg, image, settings, tta: bool) -> views.Context:
    # Segmentation results depend on TTA; explanations, occlusion and position tests
    # run the plain model and keep the model set's key, so a TTA toggle spares them.
    model_key = str(seg.model_dir)
    results_key = model_key + (" +TTA" if tta else "")
    probs = state.segment(results_key, image.key, seg, image.pixels, tta)
    masks = state.masks_for(results_key, image.key, settings.threshold, True, seg, probs)
    warnings = plausibility_warnings(image.pixels, masks, probs)
    if warnings:
        st.warning("**Check this image: it may not be a frontal chest radiograph in standard "
                   "orientation.**\n\n" +
                   "\n".join(f"- {w}" for w in warnings[:-1]) + f"\n\n{warnings[-1]} "
                   "An image stored inverted or mirrored can be corrected under *Image "
                   "corrections* in the sidebar.")
    for warning in exposure_warnings(image.pixels):
        st.warning(f"**Grey scale clipped?** {warning}" + (
            " This file's display window can be ignored under *Image corrections* in the sidebar."
            if image.unwindowed is not None else ""))
    return views.Context(seg, model_key, image, probs, masks, settings, results_key)


if __name__ == "__main__":
    main()
