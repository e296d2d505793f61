"""cxr-dash: what per-region U-Nets segment on a chest radiograph, why, and how they learned it.

Run with ``streamlit run app.py``. This file is the table of contents; the
pages live in ``cxr_dash/ui/pages`` (one module each, ``render(ctx)``), the
sidebar in ``cxr_dash/ui/sidebar.py``, the computation in ``cxr_dash``.
"""
from __future__ import annotations

import streamlit as st

from cxr_dash.errors import ImageReadError
from cxr_dash.ui import sidebar, state, widgets
from cxr_dash.ui.context import Context
from cxr_dash.ui.pages import (compare, dataset_evaluation, downloads, explain, model_card, overview,
                               playback, position, search, statistics)

NOTICE = ("**Research use only — not for diagnosis.** Uploaded images are processed in memory "
          "and never stored.")

# Pages of the current image, then pages of the model set (their context has no image).
IMAGE_PAGES = {
    "Overview": overview.render,
    "Compare regions": compare.render,
    "Statistics": statistics.render,
    "Explain": explain.render,
    "Position or anatomy?": position.render,
    "Downloads": downloads.render,
}
MODEL_PAGES = {
    "Training playback": playback.render,
    "Hyper-parameter search": search.render,
    "Dataset evaluation": dataset_evaluation.render,
    "Model set": model_card.render,
}


def main() -> None:
    st.set_page_config(page_title="cxr-dash", page_icon="🫁", layout="wide")
    st.title("cxr-dash · chest radiograph segmentation explorer")
    st.caption(NOTICE)
    seg, problem = state.segmenter_or_error()
    if seg is None:
        st.error(problem)
        st.stop()
    page = sidebar.choose_page(list(IMAGE_PAGES) + list(MODEL_PAGES))
    image = sidebar.choose_input()
    tta = sidebar.inference_settings(seg)
    settings = sidebar.display_settings(seg.regions, has_truth=bool(image is not None and image.truth))
    widgets.input_error()
    if page in MODEL_PAGES:
        MODEL_PAGES[page](Context.for_model(seg, settings))
    elif image is None:
        st.info("Upload a frontal chest radiograph (PNG, JPEG, 16-bit PNG, DICOM or JSRT .IMG) "
                "in the sidebar" + (", or pick a dataset case." if state.dataset() else "."))
    elif (problem := state.models_ready(seg)) is not None:   # loading: a progress bar
        st.error(problem)
    else:
        try:
            ctx = Context.for_image(seg, settings, image, tta)
        except ImageReadError as exc:   # e.g. corrected into an image the models cannot take
            st.error(str(exc))
            st.stop()
        widgets.image_warnings(ctx)
        IMAGE_PAGES[page](ctx)


if __name__ == "__main__":
    main()
