"""The dashboard's panels. Each takes a :class:`Context` and lays out results
computed in ``cxr_dash``; nothing numeric is decided here."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import streamlit as st

from cxr_dash.data import SPLIT_DESCRIPTIONS, describe_validation
from cxr_dash.preprocess import FieldOfView
from cxr_dash.quality import window_clips_dark_end
from cxr_dash.regions import REGIONS, hex_colour
from cxr_dash.render import (EXTRA_COLOUR, MISSED_COLOUR, colormap, colour_bar, display_rgb, outline_box,
                             overlay_errors, overlay_heatmap, overlay_masks, zoom_box)
from cxr_dash.report import png_bytes, rows_csv, rows_json

from . import state


@dataclass
class DisplaySettings:
    threshold: float
    opacity: float
    style: str
    visible: tuple[str, ...]
    show_truth: bool
    window: tuple[float, float] = (0.0, 1.0)
    local_contrast: bool = False


@dataclass
class Context:
    seg: object
    model_key: str
    image: state.CurrentImage
    probs: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    settings: DisplaySettings
    results_key: str              # model_key, plus whether TTA produced probs and masks

    @property
    def regions(self) -> tuple[str, ...]:
        return self.seg.regions

    def base_rgb(self) -> np.ndarray:
        """The radiograph as shown: the sidebar's display window (and CLAHE) applied."""
        return display_rgb(self.image.pixels, self.settings.window, self.settings.local_contrast)

    def measurements(self) -> list[dict]:
        return state.measurements_for(self.results_key, self.image.key, self.settings.threshold,
                                      self.image.spacing_mm, self.probs, self.masks, self.image.truth)


def colour_chip(region: str) -> str:
    r = REGIONS[region]
    return _chip(r.hex_colour, r.display_name)


def _chip(hex_colour: str, label: str) -> str:
    return (f"<span style='display:inline-block;width:0.9em;height:0.9em;border-radius:2px;"
            f"background:{hex_colour};margin-right:0.4em;vertical-align:middle'></span>{label}")


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
    if image.content is not None and crop_key not in st.session_state:
        st.session_state[crop_key] = True      # on when found: the models expect no such bands
    if image.unwindowed is not None and window_key not in st.session_state:
        # On when the file's window clips the dark end and its own range does not.
        st.session_state[window_key] = window_clips_dark_end(image.pixels, image.unwindowed)
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
        show_truth = st.checkbox("Ground-truth outlines", True, key="show_truth") if has_truth else False
        window = st.slider("Intensity window", 0.0, 1.0, (0.0, 1.0), 0.01, key="window",
                           help="Display only (window/level): stretch this band of the image's "
                                "intensities (0 and 1: its 0.5th and 99.5th percentiles, the scale "
                                "the models see) to full contrast. The models are not re-run.")
        local_contrast = st.checkbox("Local contrast (CLAHE)", False, key="clahe",
                                     help="Display only: adaptive histogram equalisation, which "
                                          "brings out lung and bone detail in washed-out films. "
                                          "The models still see the image as loaded.")
    return DisplaySettings(threshold, opacity, style, visible, show_truth, window, local_contrast)


def _truth_outlines(ctx: Context, rgb: np.ndarray, visible) -> np.ndarray:
    if ctx.image.truth and ctx.settings.show_truth:
        # Each region's own colour, lightened: which structure an outline belongs
        # to stays readable, and it differs from the prediction drawn in full colour.
        light = {r: tuple(int(c + (255 - c) * 0.6) for c in REGIONS[r].colour) for r in visible}
        return overlay_masks(rgb, {r: ctx.image.truth[r] for r in visible if r in ctx.image.truth},
                             style="outline", colours=light)
    return rgb


# Readable headers and fixed decimals for the measurement keys of ``Context.measurements``.
_MEASUREMENT_COLUMNS = {
    "name": st.column_config.TextColumn("Region"),
    "area_cm2": st.column_config.NumberColumn("Area (cm²)", format="%.2f"),
    "area_px": st.column_config.NumberColumn("Area (px)", format="%d"),
    # Short headers, the words in their help: with ground truth six columns share half the page.
    "mean_confidence": st.column_config.NumberColumn(
        "Confidence", format="%.3f", help="Mean probability inside the mask"),
    "jaccard": st.column_config.NumberColumn("Jaccard", format="%.3f"),
    "dice": st.column_config.NumberColumn("Dice", format="%.3f"),
    "mean_contour_distance_mm": st.column_config.NumberColumn(
        "MCD (mm)", format="%.2f",
        help="Mean contour distance: mean distance between predicted and true outlines"),
}


def overview(ctx: Context) -> None:
    s = ctx.settings
    visible = [r for r in ctx.regions if r in s.visible]
    base = ctx.base_rgb()
    rgb = overlay_masks(base, {r: ctx.masks[r] for r in visible}, s.opacity, s.style)
    rgb = _truth_outlines(ctx, rgb, visible)
    # With ground truth the table has three more columns: give it half the width.
    left, right = st.columns([1, 1] if ctx.image.truth else [3, 2])
    caption = f"{ctx.image.name} — patient's right on the image's left"
    if ctx.image.truth and s.show_truth:
        caption += "; light outlines: ground truth"
    if left.toggle("Inspect: zoom, pan and read values", key="inspect",
                   help="An interactive view: drag to zoom, double-click to reset; hover for the "
                        "pixel's intensity and every region's probability."):
        left.plotly_chart(_inspect_figure(ctx, rgb, base), key="inspect_figure",
                          config={"scrollZoom": True, "displaylogo": False})
        left.caption(caption)
    else:
        left.image(rgb, caption=caption, width="stretch")
    with right:
        st.markdown("<br>".join(colour_chip(r) for r in visible) or "No region shown "
                    "(sidebar: Regions shown).", unsafe_allow_html=True)
        rows = [r for r in ctx.measurements() if r["region"] in visible]
        cols = ["name", "area_cm2" if ctx.image.spacing_mm else "area_px", "mean_confidence"]
        if ctx.image.truth:
            cols += ["jaccard", "dice", "mean_contour_distance_mm"]
        st.dataframe([{k: r.get(k) for k in cols} for r in rows], hide_index=True,
                     column_config={k: _MEASUREMENT_COLUMNS[k] for k in cols})
        if not ctx.image.spacing_mm:
            st.caption("Pixel spacing unknown for this file: areas in pixels "
                       "(enter it in the sidebar if you know it).")


def _inspect_figure(ctx: Context, rgb: np.ndarray, base: np.ndarray, image_side: int = 1024,
                    hover_side: int = 256):
    """The overlay ``rgb`` as a zoomable image, in the original image's pixel
    coordinates, under an invisible grid that reports the intensity of ``base``
    (the windowed radiograph) and the probabilities on hover
    (coarser than the image: the values travel to the browser as JSON)."""
    import base64

    import plotly.graph_objects as go

    from cxr_dash.render import downsample_for_display

    full_h, full_w = ctx.image.original_shape[:2]
    shown = downsample_for_display(rgb, image_side)
    source = "data:image/png;base64," + base64.b64encode(png_bytes(shown)).decode()
    dx, dy = full_w / shown.shape[1], full_h / shown.shape[0]
    # Plotly centres an image's first pixel on (x0, y0): half a pixel in, its
    # edge sits on 0, where the hover grid and the axes start.
    fig = go.Figure(go.Image(source=source, x0=dx / 2, y0=dy / 2, dx=dx, dy=dy, hoverinfo="skip"))
    grey = downsample_for_display(base[..., 0], hover_side)
    h, w = grey.shape
    probs = np.stack([downsample_for_display(ctx.probs[r], hover_side) for r in ctx.regions], -1)
    xs, ys = (np.arange(w) + 0.5) * full_w / w, (np.arange(h) + 0.5) * full_h / h
    lines = "<br>".join(f"{REGIONS[r].display_name}: %{{customdata[{i}]}}%"
                        for i, r in enumerate(ctx.regions))
    fig.add_trace(go.Heatmap(z=grey, x=xs, y=ys, customdata=np.round(probs * 100).astype(int),
                             opacity=0, showscale=False, colorscale="gray",
                             hovertemplate="x %{x:.0f}, y %{y:.0f} (original pixels)<br>"
                                           "display intensity %{z}<br>" + lines + "<extra></extra>"))
    fig.update_layout(height=640, margin=dict(l=0, r=0, t=0, b=0), dragmode="zoom",
                      xaxis=dict(visible=False, range=[0, full_w]),
                      yaxis=dict(visible=False, range=[full_h, 0], scaleanchor="x"))
    return fig


def _probability_figure(prob: np.ndarray, region: str, max_side: int = 192):
    import plotly.graph_objects as go

    from cxr_dash.render import downsample_for_display

    small = downsample_for_display(prob, max_side)
    stops = np.linspace(0, 1, 11)
    scale = [[float(v), "rgb({},{},{})".format(*colormap(np.array([v]))[0])] for v in stops]
    fig = go.Figure(go.Heatmap(z=small[::-1], colorscale=scale, zmin=0, zmax=1,
                               hovertemplate="p = %{z:.3f}<extra>" + REGIONS[region].display_name
                               + "</extra>",
                               colorbar=dict(thickness=8, len=0.9, tickvals=[0, 0.5, 1],
                                             tickfont=dict(size=9))))
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), height=220,
                      xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"))
    return fig


def compare_regions(ctx: Context) -> None:
    st.caption("Each region model on its own: mask overlay, probability map (hover for values), "
               "area and mean confidence inside the mask" +
               ("; against the ground truth: Jaccard, Dice, mean contour distance."
                if ctx.image.truth else "."))
    trained = ctx.seg.regions_trained_on(ctx.image.case_id) if ctx.image.case_id else []
    if trained:
        st.caption(f"{ctx.image.case_id} is a training case of the "
                   + ", ".join(REGIONS[r].display_name.lower() for r in trained)
                   + " model" + ("s" if len(trained) > 1 else "")
                   + ": scores against its ground truth show fit, not generalisation.")
    partial = [r for r in ctx.regions if not ctx.seg.view(r).is_full]
    if partial:
        st.caption("Dashed box: the part of the image a model sees — " + "; ".join(
            f"{REGIONS[r].display_name.lower()}: {ctx.seg.view(r).describe()}" for r in partial) +
            ". Outside it, its probability is 0 by construction.")
    rows = {r["region"]: r for r in ctx.measurements()}
    base = ctx.base_rgb()
    shown = [r for r in ctx.regions if r in ctx.settings.visible]
    if not shown:
        st.info("No region shown: tick some under **Regions shown** in the sidebar.")
        return
    errors = bool(ctx.image.truth) and st.radio(
        "Overlay", ["mask", "errors against ground truth"], horizontal=True, key="compare_overlay",
        help="Errors: ground truth the mask misses and mask outside the ground truth, each in "
             "its own colour, inside the ground truth's white outline.") != "mask"
    if errors:
        st.markdown(_chip(hex_colour(MISSED_COLOUR), "missed (ground truth outside the mask)") + " &nbsp; " +
                    _chip(hex_colour(EXTRA_COLOUR), "extra (mask outside the ground truth)") +
                    " &nbsp; both as shares of the ground truth's area below", unsafe_allow_html=True)
    for col, region in zip(st.columns(max(len(shown), 2)), shown):
        with col:
            st.markdown(colour_chip(region), unsafe_allow_html=True)
            if errors and region in ctx.image.truth:
                truth = ctx.image.truth[region]
                y0, y1, x0, x1 = zoom_box(base.shape, ctx.masks[region], truth)
                st.image(overlay_errors(base, ctx.masks[region], truth, max(ctx.settings.opacity, 0.5))
                         [y0:y1, x0:x1], width="stretch", caption="zoomed to the region")
            else:
                rgb = _truth_outlines(ctx, overlay_masks(base, {region: ctx.masks[region]},
                                                         ctx.settings.opacity, ctx.settings.style), [region])
                view = ctx.seg.view(region)
                if not view.is_full:
                    rgb = outline_box(rgb, view.box(rgb.shape), REGIONS[region].colour)
                st.image(rgb, width="stretch")
            st.plotly_chart(_probability_figure(ctx.probs[region], region), key=f"heat_{region}",
                            config={"displayModeBar": False}, theme=None)
            row = rows[region]
            area = (f"{row['area_cm2']:.2f} cm²" if row["area_cm2"] is not None
                    else f"{row['area_px']:,} px")
            st.metric("Area", area)
            st.metric("Mean confidence", "—" if row["mean_confidence"] is None
                      else f"{row['mean_confidence']:.3f}")
            if "jaccard" in row:
                st.metric("Jaccard", f"{row['jaccard']:.3f}")
                st.metric("Dice", f"{row['dice']:.3f}")
                mcd = row["mean_contour_distance_mm"]
                st.metric("Contour dist.", "—" if mcd != mcd else f"{mcd:.2f} mm")
                if errors:
                    st.metric("Missed", _share(row["missed_fraction"]), help="Ground truth outside the "
                              "mask, as a share of the ground truth's area")
                    st.metric("Extra", _share(row["extra_fraction"]), help="Mask outside the ground "
                              "truth, as a share of the ground truth's area")


def _share(fraction: float | None) -> str:
    return "—" if fraction is None or fraction != fraction else f"{fraction:.1%}"


def _explanations() -> dict:
    return st.session_state.setdefault("explanations", {})


def _remember(store: dict, key, value, limit: int = 40) -> None:
    """Keep a result for redisplay and download; the oldest go first, so a long
    session does not hold every heatmap it ever computed."""
    store[key] = value
    while len(store) > limit:
        store.pop(next(iter(store)))


def _occlusion_heat(result, region: str, ctx: Context) -> np.ndarray:
    """The score drops that matter (positive), scaled to [0, 1], over the whole image."""
    pos = np.clip(result.sensitivity, 0, None)
    heat = pos / pos.max() if pos.max() > 0 else pos
    return ctx.seg.to_image(heat, region, ctx.image.pixels.shape)


def _heat_with_outlines(ctx: Context, base: np.ndarray, heat: np.ndarray, region: str,
                        opacity: float) -> np.ndarray:
    """A heatmap over the radiograph, the region's predicted outline and (when shown) its
    ground-truth outline on top."""
    shown = overlay_masks(overlay_heatmap(base, heat, opacity), {region: ctx.masks[region]},
                          style="outline")
    return _truth_outlines(ctx, shown, [region])


def _heat_legend(target, low: str = "low", high: str = "high") -> None:
    """The colour bar of the overlaid heatmaps (jet), with what its ends mean."""
    target.image(colour_bar(), width="stretch")
    target.caption(f"◀ {low} · {high} ▶ (faint below 5% of the maximum, full colour from 40%)")


def explain_view(ctx: Context) -> None:
    from cxr_dash.explain import DEFAULT_LAYER, LAYERS, METHODS, explain
    from cxr_dash.occlusion import default_patch_and_stride, model_predictor, occlusion_sensitivity

    small = state.segment_small(ctx.model_key, ctx.image.key, ctx.seg, ctx.image.pixels)
    st.caption("Score explained: the region model's output summed over the region it predicts "
               "(Seg-Grad-CAM; its mean there for Grad-CAM++, whose exp(score) needs a bounded "
               "score). Heatmaps are normalised per image and region; outlines: the predicted "
               "region" + ("; light outlines: ground truth." if ctx.image.truth and ctx.settings.show_truth
                           else "."))
    c1, c2, c3 = st.columns([2, 2, 3])
    method = c1.selectbox("Method", list(METHODS), format_func=METHODS.get)
    labels = list(LAYERS)
    default_label = next(k for k, v in LAYERS.items() if v == DEFAULT_LAYER)
    layer_label = c2.selectbox("Layer", labels, index=labels.index(default_label),
                               disabled=method == "smoothgrad",
                               help="Gradient methods explain this layer's activations.")
    chosen = c3.multiselect("Regions", list(ctx.regions), default=[ctx.regions[0]],
                            format_func=lambda r: REGIONS[r].display_name)
    params = {}
    if method == "smoothgrad":
        p1, p2 = st.columns(2)
        params["smooth_samples"] = p1.slider("Noisy samples", 4, 48, 16, 4)
        params["smooth_noise"] = p2.slider("Noise (sd)", 0.05, 0.5, 0.15, 0.05)
    elif method == "scorecam":
        params["max_channels"] = st.slider("Activation maps used (Faster Score-CAM)", 8, 64, 32, 8)
    layer = LAYERS[layer_label]
    store = _explanations()

    def key_of(region):
        return (ctx.model_key, ctx.image.key, region, method, layer, ctx.settings.threshold,
                tuple(sorted(params.items())))

    if st.button("Run explanation", type="primary", disabled=not chosen):
        bar = st.progress(0.0, text="Explaining…")
        for i, region in enumerate(chosen):
            if key_of(region) not in store:
                _remember(store, key_of(region),
                          explain(ctx.seg, ctx.image.pixels, region, method, layer,
                                  ctx.settings.threshold, prob=small[region], **params))
            bar.progress((i + 1) / len(chosen), text=f"{REGIONS[region].display_name} done")
        bar.empty()
    base = ctx.base_rgb()
    done = [(r, store[key_of(r)]) for r in chosen if key_of(r) in store]
    if done:
        for col, (region, exp) in zip(st.columns(max(len(done), 2)), done):
            with col:
                st.markdown(colour_chip(region), unsafe_allow_html=True)
                heat = exp.at_size(ctx.image.pixels.shape)
                shown = _heat_with_outlines(ctx, base, heat, region, ctx.settings.opacity + 0.2)
                st.image(shown, width="stretch",
                         caption=f"{METHODS[method]}, {layer_label if exp.layer else 'input'} "
                                 f"— {exp.seconds:.1f} s")
        _heat_legend(st.columns(3)[0], "no contribution", "largest contribution (per region)")
    elif chosen:
        st.info("Choose a method, layer and regions, then **Run explanation**.")

    st.divider()
    st.subheader("Occlusion sensitivity")
    region = st.selectbox("Region", list(ctx.regions), key="occ_region",
                          format_func=lambda r: REGIONS[r].display_name)
    size = ctx.seg.input_size(region)
    d_patch, d_stride = default_patch_and_stride(size)
    o1, o2, o3 = st.columns(3)
    view = ctx.seg.view(region)
    y0, y1, _, _ = view.box(ctx.image.pixels.shape)
    patch = o1.slider("Patch (model pixels)", 4, size // 2, d_patch, 2,
                      help=f"The model sees {size} x {size} ({view.describe()}); one model pixel "
                           f"is {(y1 - y0) / size:.1f} image pixels here.")
    stride = o2.slider("Stride (model pixels)", 2, size // 4, d_stride, 1,
                       help="Default: 1/16 of the input side, wider for inputs above 256 px "
                            "so that a run costs about what it costs at 256 px (~20-60 s on 2 "
                            "cores); a smaller stride gives a finer map for more time.")
    baseline = o3.selectbox("Baseline", ["black (0)", "mean grey", "blur", "white (1)"])
    base_value = {"black (0)": 0.0, "mean grey": "mean", "blur": "blur", "white (1)": 1.0}[baseline]
    okey = ("occ", ctx.model_key, ctx.image.key, region, patch, stride, base_value,
            ctx.settings.threshold)
    if st.button("Run occlusion"):
        bar = st.progress(0.0, text="Occluding…")
        _remember(store, okey, occlusion_sensitivity(
            model_predictor(ctx.seg.model(region)), ctx.seg.prepare(ctx.image.pixels, region),
            small[region] >= ctx.settings.threshold, patch, stride, base_value,
            progress=lambda done, total: bar.progress(done / total, text=f"{done}/{total} patches")))
        bar.empty()
    if okey in store:
        res = store[okey]
        heat_big = _occlusion_heat(res, region, ctx)
        shown = _heat_with_outlines(ctx, base, heat_big, region, 0.6)
        c1, c2 = st.columns([3, 2])
        image_px = res.patch * (y1 - y0) / size
        c1.image(shown, width="stretch",
                 caption=f"Score drop when a {res.patch}-model-pixel patch (~{image_px:.0f} image "
                         f"pixels) is hidden, stride {res.stride}: {res.evaluations} forward "
                         f"passes, {res.seconds:.1f} s")
        _heat_legend(c1, "no drop", "largest drop")
        split = res.inside_outside(small[region] >= ctx.settings.threshold)
        c2.metric("Base score (mean probability in region)", f"{res.base_score:.3f}")
        c2.metric("Sensitivity inside the region", f"{split['inside_fraction']:.0%}",
                  help="Share of the total score drop caused by patches inside the region.")
        c2.caption(f"The region is {split['region_area_fraction']:.0%} of the model's input. A "
                   "share of sensitivity well above that: the model looks at the region itself; "
                   "near or below it: at its context.")


def playback(seg, settings: DisplaySettings | None = None) -> None:
    threshold, opacity = (settings.threshold, settings.opacity + 0.2) if settings else (0.5, 0.6)
    region = st.selectbox("Region", list(seg.regions), key="pb_region",
                          format_func=lambda r: REGIONS[r].display_name)
    record = _training_record(str(seg.model_dir), region, seg)
    if record is None or not len(record.snapshot_epochs):
        st.info("This model set has no training snapshots for this region.")
        return
    n = len(record.snapshot_epochs)
    # The shown frame lives under its own key: playback advances it from the
    # fragment, which may not write to a widget's key once the widget exists.
    # The slider mirrors it while paused, and is hidden while playing.
    key, slider_key = f"pb_frame_{region}", f"pb_epoch_{region}"
    st.session_state.setdefault(key, n - 1)
    playing = st.toggle("Play", key="pb_play")
    if n > 1 and not playing:
        st.session_state[slider_key] = st.session_state[key]
        st.select_slider("Epoch", options=list(range(n)), key=slider_key,
                         format_func=lambda i: str(int(record.snapshot_epochs[i])),
                         on_change=lambda: st.session_state.update({key: st.session_state[slider_key]}),
                         help="Epochs whose validation predictions were saved.")
    case_index = 0
    if len(record.case_ids) > 1:
        case_index = st.radio("Monitor case", range(len(record.case_ids)), horizontal=True,
                              format_func=lambda i: record.case_ids[i])
    ds = state.dataset()

    @st.fragment(run_every=0.6 if playing else None)
    def frame():
        if playing:
            st.session_state[key] = (st.session_state[key] + 1) % n
        i = st.session_state[key]
        epoch = int(record.snapshot_epochs[i])
        if playing:
            st.progress((i + 1) / n, text=f"Epoch {epoch} ({i + 1} of {n} snapshots)")
        prob = record.snapshot(i, case_index)
        case_id = record.case_ids[case_index] if record.case_ids else None
        left, right = st.columns([2, 3])
        if ds is not None and case_id and case_id in ds.image_paths:
            rgb = overlay_heatmap(_monitor_case_rgb(case_id, prob.shape[0], record.field_of_view),
                                  prob, opacity)
            rgb = overlay_masks(rgb, {region: prob >= threshold}, style="outline")
            caption = f"{case_id}, epoch {epoch}: probability over the radiograph" + (
                "" if FieldOfView.parse(record.field_of_view).is_full
                else " (the model's field of view)") + f"; outline: p ≥ {threshold:.2f}"
        else:
            rgb = colormap(prob)
            caption = f"{case_id or 'monitor case'}, epoch {epoch}: probability map " \
                      "(set CXR_DATA_DIR to overlay it on the radiograph)"
        left.image(rgb, caption=caption, width="stretch")
        with right:
            _history_figure(record.history, epoch, record.stage_markers())
    frame()
    hp, study = record.hyperparameters, record.study_hyperparameters
    rows = [{"setting": k, "used": str(hp.get(k)), "study": str(study.get(k, "—"))} for k in hp]
    st.dataframe(rows, hide_index=True)
    t = record.training
    if t:
        split = SPLIT_DESCRIPTIONS.get(t.get("fold"), f"fold {t.get('fold')}")
        validation = describe_validation(t.get("cases", []), t.get("validation_cases", []))
        st.caption(f"Trained on **{split}** ({len(t.get('cases', []))} cases; {validation}), "
                   f"{t.get('epochs_run', '?')} epochs, backend {t.get('backend', '?')} on "
                   f"{t.get('device', '?')}. {record.describe_stages()} {t.get('note', '')}")
        recal = t.get("batch_norm_recalibration")
        if recal and recal.get("validation_iou_after") is not None:
            st.caption("After the last epoch, batch-norm statistics were re-estimated on "
                       f"{recal.get('cases')} training cases (augmented): validation IoU "
                       f"{recal['validation_iou_before']:.3f} → {recal['validation_iou_after']:.3f}. "
                       "The curves and snapshots show the model as it was during training.")


@st.cache_resource(max_entries=8, show_spinner=False)
def _training_record(model_key: str, region: str, _seg):
    """A region's history and snapshots (up to 5 MB compressed), read once per
    model set: the epoch slider and play/pause rerun the view many times."""
    from cxr_dash.record import load_record

    return load_record(_seg.model_dir, _seg.manifest, region)


@st.cache_data(max_entries=8, show_spinner=False)
def _monitor_case_rgb(case_id: str, size: int, field_of_view=None) -> np.ndarray:
    """The monitor case as the model saw it (its field of view), read once
    (playback redraws it every frame)."""
    from cxr_dash.preprocess import prepare_input

    pixels = state.dataset().load_image(case_id).pixels
    grey = (prepare_input(pixels, size, FieldOfView.parse(field_of_view))[..., 0] * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _history_figure(history: list[dict], epoch: int, stage_markers=()) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not history:
        st.info("No training history recorded.")
        return
    ep = [h["epoch"] for h in history]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=ep, y=[h["loss"] for h in history], name="training loss (left axis)",
                             line=dict(color="#555555")), secondary_y=False)
    fig.add_trace(go.Scatter(x=ep, y=[h.get("val_iou") for h in history], name="validation IoU",
                             line=dict(color="#1f77b4", width=2.5)), secondary_y=True)
    fig.add_trace(go.Scatter(x=ep, y=[h.get("val_dice") for h in history], name="validation Dice",
                             line=dict(color="#2ca02c", dash="dot")), secondary_y=True)
    span = max(ep) - min(ep) + 1
    # Labels of stages a few epochs apart would print over each other: each goes
    # on the lowest row whose last label has ended, its width estimated from its
    # length (about 80 characters of 10 px text across the chart).
    row_ends = [-math.inf] * 3
    for start, label in stage_markers:
        # A new stage (e.g. fine-tuning at a higher input size) restarts the
        # optimiser: the jump in loss there is the change of resolution.
        fig.add_vline(x=start - 0.5, line_color="#888", line_dash="dot")
        free = [r for r, end in enumerate(row_ends) if end <= start - 0.5]
        row = free[0] if free else min(range(len(row_ends)), key=row_ends.__getitem__)
        row_ends[row] = start - 0.5 + (len(label) + 1) * span / 80
        fig.add_annotation(x=start - 0.5, y=1.0, yref="paper", text=label, showarrow=False,
                           xanchor="left", yanchor="bottom", yshift=12 * row,
                           font=dict(size=10, color="#666"))
    rows_used = sum(end > -math.inf for end in row_ends)
    fig.add_vline(x=epoch, line_color="#d62728", line_dash="dash")
    fig.update_layout(height=352, margin=dict(l=0, r=0, t=24 + 12 * max(rows_used, 1), b=0),
                      legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="epoch")
    # The right axis (IoU / Dice) carries the grid: those are the curves read against values.
    fig.update_yaxes(title_text="loss", showgrid=False, secondary_y=False)
    fig.update_yaxes(title_text="validation IoU / Dice", range=[0, 1], tickmode="linear", dtick=0.2,
                     showgrid=True, secondary_y=True)
    st.plotly_chart(fig, key=f"hist_{epoch}")


def downloads(ctx: Context) -> None:
    stem = ctx.image.name.rsplit(".", 1)[0] or "radiograph"
    cropped = [n for n in ctx.image.notes if n.startswith(state.BORDER_NOTE)]
    st.caption(f"Masks at working resolution {ctx.image.pixels.shape[1]} x {ctx.image.pixels.shape[0]} "
               f"(original {ctx.image.original_shape[1]} x {ctx.image.original_shape[0]}"
               + "".join(f"; {n} from the working copy" for n in cropped) +
               f"), threshold {ctx.settings.threshold:.2f}.")
    files = state.download_files(ctx.results_key, ctx.image.key, ctx.settings.threshold, stem,
                                 ctx.masks, ctx.probs)
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Masks**")
        for region in ctx.regions:
            st.download_button(f"{REGIONS[region].display_name} (PNG)", files[f"mask_{region}"],
                               f"{stem}_{region}.png", "image/png", key=f"dl_mask_{region}")
        st.download_button("All masks (ZIP of PNGs)", files["zip"], f"{stem}_masks.zip",
                           "application/zip")
        st.download_button("Masks + probabilities (NPZ)", files["npz"],
                           f"{stem}_masks.npz", "application/octet-stream")
    with c2:
        st.markdown("**Heatmaps**")
        for region in ctx.regions:
            st.download_button(f"{REGIONS[region].display_name} probability (PNG)",
                               files[f"prob_{region}"], f"{stem}_{region}_prob.png",
                               "image/png", key=f"dl_prob_{region}")
        # Explanations and occlusion maps of this image and model set only,
        # over the whole image (zero outside a clavicle model's field of view).
        shape = ctx.image.pixels.shape
        for k, result in _explanations().items():
            occlusion = k[0] == "occ"
            model_key, image_key = k[1:3] if occlusion else k[0:2]
            if (model_key, image_key) != (ctx.model_key, ctx.image.key):
                continue
            if occlusion:
                _, _, _, region, patch, stride, base_value, _ = k
                name = f"occlusion_{region}_patch{patch}_stride{stride}_{base_value}"
                heat_of = partial(_occlusion_heat, result, region, ctx)
            else:
                name = f"{result.method.replace('+', 'plus')}_{result.layer or 'input'}_{result.region}"
                heat_of = partial(result.at_size, shape)
            st.download_button(f"{name} (PNG)", state.heatmap_png(repr(k), heat_of),
                               f"{stem}_{name}.png", "image/png", key=f"dl_exp_{hash(k)}")
    with c3:
        st.markdown("**Region metrics**")
        rows = ctx.measurements()
        context = {"image": ctx.image.name, "threshold": ctx.settings.threshold,
                   "pixel_spacing_mm": ctx.image.spacing_mm, "model_set": ctx.results_key,
                   "working_shape": list(ctx.image.pixels.shape), "notes": ctx.image.notes}
        st.download_button("Metrics (CSV)", rows_csv(rows), f"{stem}_metrics.csv", "text/csv")
        st.download_button("Metrics (JSON)", rows_json(rows, **context), f"{stem}_metrics.json",
                           "application/json")


def model_card(seg, settings: DisplaySettings | None = None) -> None:
    """The manifest as a table. (Display settings do not apply; taken for a uniform call.)"""
    m = seg.manifest
    if m.get("label"):
        st.info(m["label"])
    st.markdown(f"**Architecture**: {m.get('architecture')} · **weights**: {m.get('weights_format')} "
                f"· folder `{seg.model_dir}`")
    rows = []
    for region in seg.regions:
        e = seg.entry(region)
        t, met = e.get("training", {}), e.get("metrics", {})
        held = met.get("heldout_1024", {})
        # Input size per training stage: "128 → 256" for a fine-tuned model.
        sizes = [s["input_size"] for s in t.get("earlier_stages", [])] + [e.get("input_size")]
        hp = e.get("hyperparameters", {})
        # Results first: they are what the table is read for; how they were made follows.
        anchors = REGIONS[region].anchors
        rows.append({
            "region": REGIONS[region].display_name,
            "held-out Jaccard (1024)": held.get("jaccard", {}).get("mean"),
            "target": anchors.target if anchors else None,
            "human observer": anchors.human_observer if anchors else None,
            "best published": anchors.best_published if anchors else None,
            "held-out Dice": held.get("dice", {}).get("mean"),
            "MCD (mm)": held.get("mean_contour_distance_mm", {}).get("mean"),
            "HD95 (mm)": held.get("hd95_mm", {}).get("mean"),
            "held-out cases": held.get("n"),
            "input px": " → ".join(map(str, sizes)), "field of view": seg.view(region).describe(),
            "optimizer": hp.get("optimizer"), "learning rate": hp.get("learning_rate"),
            "batch": hp.get("batch_size"), "fold": t.get("fold"),
            "train cases": len(t.get("cases", [])), "epochs": t.get("epochs_run"),
            "device": t.get("device"), "int8 vs float IoU": met.get("int8_vs_float_mask_iou"),
            # Exports before the choice of rounding existed all used nearest rounding.
            "int8 rounding": met.get("int8_rounding", "nearest")})
    number = st.column_config.NumberColumn
    st.dataframe(rows, hide_index=True, column_config={
        "held-out Jaccard (1024)": number(format="%.3f", help="Mean over the cases this model "
                                          "did not train on, at the masks' 1024 x 1024"),
        "target": number(format="%.2f", help="This project's Jaccard target"),
        "human observer": number(format="%.3f", help="Jaccard of the SCR database's second "
                                 "observer against the first (van Ginneken et al. 2006)"),
        "best published": number(format="%.3f", help="Best published Jaccard under the SCR protocol"),
        "held-out Dice": number(format="%.3f"), "MCD (mm)": number(format="%.2f",
                                                                  help="Mean contour distance"),
        "HD95 (mm)": number(format="%.2f", help="95th-percentile Hausdorff distance"),
        "learning rate": number(format="%.2e", help="Of the last training stage"),
        "int8 vs float IoU": number(format="%.4f", help="Masks of the stored int8 model against "
                                    "the float model it came from"),
        "int8 rounding": st.column_config.TextColumn(help="Of the export the train tool kept: "
                                                     "nearest, or stochastic where that agreed better "
                                                     "(a short fine-tune)")})
    st.caption("Reproduce the held-out figures: `python -m cxr_dash.evaluate --models weights` "
               "(CXR_DATA_DIR set). Training: `python -m cxr_dash.train --help`.")
    with st.expander("manifest.json (set-level fields)"):
        st.json({k: v for k, v in m.items() if k != "regions"}, expanded=True)


@st.cache_data(max_entries=4, show_spinner=False)
def _training_atlas(model_key: str, region: str, _seg, _ds):
    """Mean training mask of a region (needs CXR_DATA_DIR; never stored in the project)."""
    from cxr_dash.data import pack
    from cxr_dash.position import atlas_from_masks
    from cxr_dash.regions import REGION_KEYS

    cases = _seg.entry(region).get("training", {}).get("cases") or _ds.cases_with_masks()
    masks = pack(_ds, cases, _seg.input_size(region),
                 view=_seg.view(region))["masks"][:, REGION_KEYS.index(region)]
    return atlas_from_masks(masks)


def position_view(ctx: Context) -> None:
    from cxr_dash import position as pos

    st.caption("Does each model follow the anatomy when the image moves, or draw its region where "
               "it usually lies? Tests: translation, zoom, flip, content removal, occlusion inside vs "
               "outside the region and, for dataset cases, the training atlas. "
               "Dataset-wide: `python -m cxr_dash.position --out results/position`.")
    chosen = st.multiselect("Regions", list(ctx.regions), default=list(ctx.regions), key="pos_regions",
                            format_func=lambda r: REGIONS[r].display_name)
    with_occlusion = st.checkbox("Include occlusion (slower)", True, key="pos_occ")
    store = st.session_state.setdefault("position", {})
    key = (ctx.model_key, ctx.image.key, tuple(chosen), with_occlusion)
    if st.button("Run position tests", type="primary", disabled=not chosen):
        bar = st.progress(0.0, text="Testing…")
        reports = {}
        ds = state.dataset()
        for i, region in enumerate(chosen):
            atlas = truth = None
            if ctx.image.truth and ds is not None:
                atlas = _training_atlas(ctx.model_key, region, ctx.seg, ds)
                truth = ctx.seg.prepare_mask(ctx.image.truth[region], region)
            reports[region] = pos.run_all(pos.region_predictor(ctx.seg, region),
                                          ctx.seg.prepare(ctx.image.pixels, region), region, atlas,
                                          truth, occlusion=with_occlusion)
            bar.progress((i + 1) / len(chosen), text=f"{REGIONS[region].display_name} done")
        bar.empty()
        _remember(store, key, reports, limit=8)
    reports = store.get(key)
    if not reports:
        st.info("**Run position tests** for the regions chosen: about a minute per region on "
                "2 CPU cores (more at 384 px, and with occlusion).")
        return

    def number(v):
        return "n/a" if v is None or v != v else f"{v:.2f}"   # NaN: nothing predicted

    for col, (region, rep) in zip(st.columns(len(reports)), reports.items()):
        with col:
            s = rep.summary
            st.markdown(colour_chip(region), unsafe_allow_html=True)
            st.metric("Verdict", s["verdict"])
            st.metric("Anatomy-following index", f"{s['anatomy_following_index']:+.2f}",
                      help="+1: the mask follows shifted and zoomed anatomy; -1: it stays put.")
            st.metric("Content-free Dice", number(s["phantom_dice"]),
                      help="Overlap of the prediction on a blank/grey/noise input with the real one.")
            st.metric("Region-removed Dice",
                      f"{number(s['region_inpainted_dice'])} / {number(s['region_blurred_dice'])}",
                      help="Inpainted / blurred: Dice with the real prediction when only the "
                           "region is inpainted from its surroundings, or blurred away. Its "
                           "neighbours remain, so a mask drawn there comes from context (or "
                           "the blurred remnant). Evidence, not part of the verdict.")
            if rep.occlusion:
                st.metric("Occlusion enrichment", f"{rep.occlusion['enrichment']:.1f}x",
                          help="Share of occlusion sensitivity inside the region over its area share.")
            if rep.atlas:
                st.metric("Atlas vs model Jaccard",
                          f"{rep.atlas['atlas_jaccard']:.2f} / {rep.atlas['model_jaccard']:.2f}",
                          help="The atlas: the mean mask of the model's training cases.")
                if ctx.image.case_id and region in ctx.seg.regions_trained_on(ctx.image.case_id):
                    st.caption(f"{ctx.image.case_id} is one of this model's training cases: its "
                               "mask is part of the atlas, which flatters both.")
                nearer = rep.atlas["nearer_atlas_than_truth"]
                st.caption(("Prediction sits **nearer the atlas** than the ground truth does"
                            if nearer else "Prediction sits nearer the ground truth than the atlas")
                           + f" (Dice with the atlas {rep.atlas['pred_to_atlas_dice']:.2f}, truth's "
                           f"{rep.atlas['truth_to_atlas_dice']:.2f}).")
            flip = rep.flip
            st.caption(f"Horizontal flip: the new mask overlaps the mirrored mask at Dice "
                       f"{flip['follows_mirrored_anatomy']:.2f} (follows the anatomy) and the "
                       f"original one at {flip['stays_on_its_side']:.2f} (stays on its side).")
            with st.expander("Evidence"):
                st.write("\n".join(f"- {e}" for e in s["evidence"]))
    import matplotlib.pyplot as plt

    # The curves fill the width (one column per region); the bar chart is
    # drawn for ~800 px and shown at that size, so its text matches.
    for figure, width in ((pos.figure_transform_curves, "stretch"), (pos.figure_content_removal, 800)):
        fig = figure(reports)
        st.pyplot(fig, width=width)
        plt.close(fig)   # pyplot keeps every figure alive until closed
    st.caption("Laterality is partly positional by nature: a mirrored left lung looks like a right "
               "lung, so the flip test describes, it does not judge.")


def search_view(seg, settings: DisplaySettings | None = None) -> None:
    """A tuning study's trials. (Display settings do not apply; taken for a uniform call.)"""
    import os

    import plotly.express as px

    from cxr_dash.manifest import PROJECT_ROOT
    from cxr_dash.tune import load_exports, settings_summary

    folders = [os.environ.get("CXR_TUNE_DIR") or "results/tune", str(PROJECT_ROOT / "results" / "tune"),
               str(PROJECT_ROOT / "weights" / "search")]
    exports: dict = {}
    for folder in folders:
        for region, payload in load_exports(folder).items():
            exports.setdefault(region, payload)
    if not exports:
        st.info("No hyper-parameter search found (looked in "
                + ", ".join(f"`{f}`" for f in dict.fromkeys(folders)) + "). Run "
                "`python -m cxr_dash.tune --region heart --folds 2 --trials 20`.")
        return
    region = st.selectbox("Region", [r for r in seg.regions if r in exports] or list(exports),
                          format_func=lambda r: REGIONS[r].display_name, key="search_region")
    payload = exports[region]
    trials = [t for t in payload["trials"] if t.get("learning_rate") is not None]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    st.caption(f"Study `{payload['study']}`: {len(trials)} trials, {len(done)} complete, "
               f"{sum(t['state'] == 'PRUNED' for t in trials)} pruned; exported {payload['exported']}.  \n"
               f"Trials scored under: {settings_summary(payload.get('settings'))}.")
    as_run = next((t for t in trials if t.get("source") == "study table"), None)
    points = [{**t, "trial": "complete" if t["state"] == "COMPLETE" else "pruned (last IoU)"}
              for t in trials if t.get("value") is not None]
    if not points:
        st.info("No trial of this study has reported an IoU yet.")
    else:
        # Pruned trials too (open markers, at the last IoU they reached): they show
        # where the search stopped looking, which a plot of finished trials hides.
        fig = px.scatter(points, x="learning_rate", y="value", color="optimizer", log_x=True,
                         symbol="trial", symbol_map={"complete": "circle",
                                                     "pruned (last IoU)": "circle-open"},
                         color_discrete_map={"sgd": "#1f77b4", "rmsprop": "#ff7f0e", "adam": "#2ca02c"},
                         hover_data=["number", "batch_size", "loss", "epochs"],
                         labels={"learning_rate": "learning rate", "value": "mean IoU over folds"})
        if as_run and as_run.get("value") is not None:
            fig.add_annotation(x=np.log10(as_run["learning_rate"]), y=as_run["value"],
                               text="study's combination", showarrow=True, arrowhead=2, ax=40, ay=-30)
        fig.update_traces(marker=dict(size=10, line=dict(width=1.5)))
        fig.update_xaxes(dtick=1, minor=dict(ticks="outside", showgrid=False), tickformat=".0e")
        fig.update_layout(height=380, margin=dict(l=0, r=0, t=10, b=0))
        st.plotly_chart(fig, key="search_scatter")
    best, published = payload.get("best"), payload.get("published", {})
    keys = ("optimizer", "learning_rate", "batch_size", "loss", "epochs")
    # The study trained every region with BCE + Jaccard (its table lists no loss).
    rows = [{"": "published (study)", **{k: published.get(k) for k in keys},
             "loss": published.get("loss", "bce_jaccard"), "mean IoU": None}]
    if as_run:
        # The search space may not hold the published value (batch 1 among 4, 8, 16):
        # the enqueued trial then ran the nearest one, and its IoU belongs to that.
        rows.append({"": f"study's combination as run (trial {as_run['number']})",
                     **{k: as_run.get(k) for k in keys}, "mean IoU": as_run.get("value")})
    if best:
        rows.append({"": f"best found (trial {best.get('number')})", **{k: best.get(k) for k in keys},
                     "mean IoU": best.get("value")})
    text = ("optimizer", "loss")     # numbers stay numbers (empty cell when unknown)
    st.dataframe([{k: ("—" if v is None and k in text else v) for k, v in row.items()} for row in rows],
                 hide_index=True, column_config={
                     "learning_rate": st.column_config.NumberColumn("learning rate", format="%.2e"),
                     "batch_size": st.column_config.NumberColumn("batch"),
                     "mean IoU": st.column_config.NumberColumn(format="%.3f")})
