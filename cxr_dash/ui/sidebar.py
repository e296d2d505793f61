"""The sidebar: the input (an upload or a dataset case), its corrections, and the
model and display settings every page follows."""
from __future__ import annotations

import streamlit as st

from cxr_dash.quality import window_clips_dark_end
from cxr_dash.regions import REGIONS

from . import state
from .context import DisplaySettings


def choose_page(names: list[str]) -> str:
    return st.sidebar.radio("View", names, key="view")


def choose_input() -> state.CurrentImage | None:
    """Sidebar: an upload, or a case of CXR_DATA_DIR (with its ground truth), then the
    corrections of the image chosen; returns it as corrected."""
    ds = state.dataset()
    sources = ["Upload"] + (["Dataset case"] if ds else [])
    source = st.sidebar.radio("Input", sources, horizontal=True, key="source")
    if source == "Upload":
        _upload()
        if (upload := st.session_state.get("upload_image")) is not None:
            reference_input(upload)
    else:
        _dataset_case(ds)
    if (image := state.current()) is not None:
        current = st.sidebar.empty()      # above the corrections, but saying what they did
        image = orientation_input(pixel_spacing_input(image))
        current.caption(f"Current: **{image.name}** ({image.original_shape[1]} x "
                        f"{image.original_shape[0]})" + "".join(f" · {n}" for n in image.notes))
    return image


def _upload() -> None:
    uploaded = st.sidebar.file_uploader(
        "Radiograph", key="upload",
        help="PNG/JPEG (8 or 16 bit), DICOM (.dcm) or JSRT raw .IMG; frontal (PA/AP) views.")
    state.handle_upload(uploaded)


def reference_input(image: state.CurrentImage) -> None:
    """Sidebar, after an upload: reference masks (ground truth) for it, scored as a dataset
    case's are (Overview, Compare regions' difference view, Downloads)."""
    from cxr_dash.reference import describe_labels

    files = st.sidebar.file_uploader(
        "Reference masks (optional)", accept_multiple_files=True, key=f"reference_{image.key}",
        help="Your own ground truth for this image, at its size (or a scaled copy): a PNG or GIF "
             "per region named after it (heart.png, JPCLN001_left_lung.gif, 'right clavicle.png'), "
             f"one label image (each pixel its region's number: 0 background, {describe_labels()}), "
             "or a DICOM SEG whose segment labels name the regions.")
    ref = state.handle_reference(image, files)
    if ref is None:
        return
    for error in ref["errors"]:
        st.sidebar.error(error)
    if ref["masks"]:
        st.sidebar.caption("Reference: " + ", ".join(
            f"{REGIONS[r].display_name.lower()} ({ref['sources'][r]})" for r in REGIONS if r in ref["masks"])
            + ". Scored in *Overview*, *Compare regions* (difference view) and *Downloads*.")
    for note in ref["notes"]:
        st.sidebar.caption(note)


def _dataset_case(ds) -> None:
    from cxr_dash.data import SHOWCASE_CASE

    cases = ds.cases_with_masks()
    default = cases.index(SHOWCASE_CASE) if SHOWCASE_CASE in cases else 0
    # A case chosen elsewhere (Dataset evaluation) arrives as the widget's state:
    # a default index beside it would make Streamlit warn of two sources.
    start = {} if "case" in st.session_state else {"index": default}
    state.handle_case(ds, st.sidebar.selectbox("Case", cases, key="case", **start))


def pixel_spacing_input(image: state.CurrentImage) -> state.CurrentImage:
    """Sidebar: a pixel spacing for an upload whose file carries none (PNG, JPEG),
    so areas come out in cm²; DICOM, JSRT .IMG and dataset cases keep their own."""
    if image.spacing_mm:
        return image
    mm = st.sidebar.number_input(
        "Pixel spacing (mm), if known", min_value=0.0, max_value=5.0, value=0.0, step=0.005,
        format="%.3f", key=f"spacing_{image.key}",
        help="PNG and JPEG files do not record the pixel size. JSRT at 2048 px: 0.175 mm; "
             "the SCR PNGs at 1024 px: 0.35 mm. 0: unknown, areas in pixels.")
    return state.with_pixel_spacing(image, mm) if mm > 0 else image


def orientation_input(image: state.CurrentImage) -> state.CurrentImage:
    """Sidebar: correct an image stored the wrong way round, or framed in wide uniform
    bands, before the models see it."""
    crop_key, window_key = f"crop_{image.key}", f"nowindow_{image.key}"
    _default_corrections(image, crop_key, window_key)
    # The label says what is on, so a collapsed expander does not hide a correction.
    on = [what for what, key in (("DICOM window ignored", window_key), ("inverted", f"invert_{image.key}"),
                                 ("mirrored", f"mirror_{image.key}"), ("border cropped", crop_key))
          if st.session_state.get(key)]
    with st.sidebar.expander("Image corrections" + (f": {', '.join(on)}" if on else ""), expanded=bool(on)):
        crop = False
        if image.content is not None:
            crop = st.checkbox(f"Crop uniform border ({state.describe_border(image)})", key=crop_key,
                               help="Wide flat bands along the edges (padding, a letterbox, a scan's "
                                    "margin) shrink the anatomy the models saw filling the frame; "
                                    "cropping them is on when found. Masks, heatmaps and downloads "
                                    "then follow the cropped image.")
        ignore_window = False
        if image.unwindowed is not None:
            ignore_window = st.checkbox(
                "Ignore the DICOM display window", key=window_key,
                help="The file's window / VOI LUT is applied when the file is read. A narrow one "
                     "clips the darkest lung to flat black, where the models find no lung; the "
                     "file's full range keeps it. On when the window clips and the full range "
                     "does not (the sidebar's intensity window still sets the display).")
        invert = st.checkbox("Invert grey scale", False, key=f"invert_{image.key}",
                             help="For an image whose lungs are bright and bones dark (e.g. a "
                                  "MONOCHROME1 file exported without its inversion).")
        mirror = st.checkbox("Mirror left ↔ right", False, key=f"mirror_{image.key}",
                             help="For an image stored flipped: the patient's right must be on the "
                                  "image's left. Masks, heatmaps and downloads then follow the "
                                  "mirrored image, not the file.")
    return state.corrected(image, invert, mirror, crop, ignore_window)


def _default_corrections(image: state.CurrentImage, crop_key: str, window_key: str) -> None:
    """Corrections that start on for a new image: the border crop where bands were found,
    ignoring a DICOM window that clips the dark end where the file's own range does not."""
    if image.content is not None and crop_key not in st.session_state:
        st.session_state[crop_key] = True      # on when found: the models expect no such bands
    if image.unwindowed is not None and window_key not in st.session_state:
        st.session_state[window_key] = window_clips_dark_end(image.pixels, image.unwindowed)


def inference_settings(seg) -> bool:
    """Sidebar: whether to average four sub-pixel-shifted grids (re-runs the models)."""
    return st.sidebar.checkbox(
        "Test-time augmentation", value=seg.default_tta, key="tta",
        help="Average each model over 4 grids shifted by a quarter model pixel (4x the "
             "compute; no flips, laterality is part of the task). Default: the model set's.")


def display_settings(regions, has_truth: bool = True) -> DisplaySettings:
    with st.sidebar.expander("Display", expanded=True):
        threshold = st.slider("Mask threshold", 0.05, 0.95, 0.5, 0.05,
                              help="Probability above which a pixel belongs to the region.")
        opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.4, 0.05)
        style = st.radio("Mask style", ["fill", "outline", "both"], horizontal=True, key="mask_style")
        st.caption("Regions shown")
        visible = tuple(r for r in regions
                        if st.checkbox(REGIONS[r].display_name, True, key=f"show_{r}"))
        show_truth = st.checkbox("Ground-truth outlines", True, key="show_truth",
                                 help="The reference masks' outlines, in each region's colour "
                                      "lightened.") if has_truth else False
        window = st.slider("Intensity window", 0.0, 1.0, (0.0, 1.0), 0.01, key="window",
                           help="Display only (window/level): stretch this band of the image's "
                                "intensities (0 and 1: its 0.5th and 99.5th percentiles, the scale "
                                "the models see) to full contrast. The models are not re-run. On "
                                "the image itself: Overview, Inspect, box-select an area.")
        local_contrast = st.checkbox("Local contrast (CLAHE)", False, key="clahe",
                                     help="Display only: adaptive histogram equalisation, which "
                                          "brings out lung and bone detail in washed-out films. "
                                          "The models still see the image as loaded.")
    return DisplaySettings(threshold, opacity, style, visible, show_truth, window, local_contrast)
