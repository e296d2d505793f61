"""Overview: every region's mask over the radiograph, with its area and estimated Jaccard
(and, for a dataset case, its scores against the ground truth)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cxr_dash.quality_estimate import EXPLANATION
from cxr_dash.regions import REGIONS
from cxr_dash.render import overlay_masks
from cxr_dash.report import png_bytes

from ..context import Context
from ..widgets import colour_chip, quality_warning, truth_outlines

# Readable headers and fixed decimals for the measurement keys of ``Context.measurements``.
MEASUREMENT_COLUMNS = {
    "name": st.column_config.TextColumn("Region"),
    "area_cm2": st.column_config.NumberColumn("Area (cm²)", format="%.2f"),
    "area_px": st.column_config.NumberColumn("Area (px)", format="%d"),
    # Short headers, the words in their help: with ground truth six columns share half the page.
    "estimated_jaccard": st.column_config.NumberColumn(
        "Est. Jaccard", format="%.2f", help=EXPLANATION),
    "jaccard": st.column_config.NumberColumn("Jaccard", format="%.3f"),
    "dice": st.column_config.NumberColumn("Dice", format="%.3f"),
    "mean_contour_distance_mm": st.column_config.NumberColumn(
        "MCD (mm)", format="%.2f",
        help="Mean contour distance: mean distance between predicted and true outlines"),
    "mean_contour_distance_px": st.column_config.NumberColumn(
        "MCD (px)", format="%.1f",
        help="Mean contour distance between predicted and true outlines, in pixels: the pixel "
             "spacing is unknown (enter it in the sidebar for mm)"),
}


def render(ctx: Context) -> None:
    s = ctx.settings
    visible = [r for r in ctx.regions if r in s.visible]
    base = ctx.base_rgb()
    rgb = overlay(ctx, base, visible)
    # With ground truth the table has three more columns: give it half the width.
    left, right = st.columns([1, 1] if ctx.image.truth else [3, 2])
    _image(ctx, left, rgb, base)
    with right:
        _measurements(ctx, visible)


def overlay(ctx: Context, base: np.ndarray, visible: list[str]) -> np.ndarray:
    """The shown regions' masks over ``base`` in the sidebar's style and opacity, and
    their ground-truth outlines when shown."""
    s = ctx.settings
    rgb = overlay_masks(base, {r: ctx.masks[r] for r in visible}, s.opacity, s.style)
    return truth_outlines(ctx, rgb, visible)


def _image(ctx: Context, target, rgb: np.ndarray, base: np.ndarray) -> None:
    """The overlay, still or (toggled) zoomable with values on hover."""
    caption = f"{ctx.image.name} — patient's right on the image's left"
    if ctx.image.truth and ctx.settings.show_truth:
        caption += "; light outlines: ground truth"
    if target.toggle("Inspect: zoom, pan, window and read values", key="inspect",
                     help="An interactive view: drag to zoom, scroll to zoom, shift-drag (or the "
                          "toolbar's pan) to pan, double-click to reset; hover for the region under "
                          "the pointer and every region's probability; the toolbar's box select "
                          "sets the intensity window (window/level) to the area drawn."):
        target.plotly_chart(inspect_figure(ctx, rgb, base), key="inspect_figure",
                            on_select=lambda: _window_from_selection(ctx), selection_mode="box",
                            config={"scrollZoom": True, "displaylogo": False})
        low, high = ctx.settings.window
        with target:
            c1, c2 = st.columns([3, 1])
            c1.caption(caption + f". Window: level {(low + high) / 2:.2f}, width {high - low:.2f} "
                       "(of the models' intensity scale); box-select an area (toolbar) to window "
                       "to it.")
            c2.button("Reset window", key="reset_window", disabled=(low, high) == (0.0, 1.0),
                      on_click=lambda: st.session_state.update(window=(0.0, 1.0)))
    else:
        target.image(rgb, caption=caption, width="stretch")


def _window_from_selection(ctx: Context) -> None:
    """on_select of the Inspect view: a box drawn on the image sets the sidebar's
    intensity window to that area's (a callback: it runs before the sidebar's slider
    is drawn again, so it may set the slider's value)."""
    from cxr_dash.render import window_for_area

    selection = st.session_state["inspect_figure"].selection
    if selection.box:
        xs, ys = selection.box[0]["x"], selection.box[0]["y"]
    elif selection.points:
        xs, ys = [p["x"] for p in selection.points], [p["y"] for p in selection.points]
    else:
        return
    full_h, full_w = ctx.image.original_shape[:2]
    h, w = ctx.image.pixels.shape
    # The figure's axes are the original image's pixels; the window is the working copy's.
    box = (min(ys) * h / full_h, max(ys) * h / full_h, min(xs) * w / full_w, max(xs) * w / full_w)
    st.session_state["window"] = window_for_area(ctx.image.pixels, box)


def _measurements(ctx: Context, visible: list[str]) -> None:
    st.markdown("<br>".join(colour_chip(r) for r in visible) or "No region shown "
                "(sidebar: Regions shown).", unsafe_allow_html=True)
    rows = [r for r in ctx.measurements() if r["region"] in visible]
    cols = ["name", "area_cm2" if ctx.image.spacing_mm else "area_px", "estimated_jaccard"]
    if ctx.image.truth:
        cols += ["jaccard", "dice", "mean_contour_distance_mm" if ctx.image.spacing_mm
                 else "mean_contour_distance_px"]
    st.dataframe([{k: r.get(k) for k in cols} for r in rows], hide_index=True,
                 column_config={k: MEASUREMENT_COLUMNS[k] for k in cols})
    st.caption(EXPLANATION)
    if ctx.image.truth:
        scored = [r for r in visible if r in ctx.image.truth]
        st.caption("Jaccard, Dice and contour distance against the "
                   + ("SCR ground truth" if ctx.image.source == "dataset" else "reference masks")
                   + (f" ({', '.join(REGIONS[r].display_name.lower() for r in scored)})" if scored else "")
                   + "; *Compare regions* shows the difference view.")
    quality_warning(ctx)
    if not ctx.image.spacing_mm:
        st.caption("Pixel spacing unknown for this file: areas in pixels "
                   "(enter it in the sidebar if you know it).")


def inspect_figure(ctx: Context, rgb: np.ndarray, base: np.ndarray, image_side: int = 1024,
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
                             text=regions_here(ctx, (h, w)), opacity=0, showscale=False,
                             colorscale="gray",
                             hovertemplate="<b>%{text}</b><br>x %{x:.0f}, y %{y:.0f} (original "
                                           "pixels)<br>display intensity %{z}<br>" + lines
                                           + "<extra></extra>"))
    # Box selection (the window from an area) needs a trace that can be selected; a
    # heatmap cannot. A coarse grid of invisible points, no hover of its own.
    gy, gx = np.mgrid[0:32, 0:32]
    fig.add_trace(go.Scatter(x=((gx.ravel() + 0.5) * full_w / 32), y=((gy.ravel() + 0.5) * full_h / 32),
                             mode="markers", marker=dict(size=1, opacity=0), hoverinfo="skip",
                             showlegend=False))
    fig.update_layout(height=640, margin=dict(l=0, r=0, t=0, b=0), dragmode="zoom",
                      xaxis=dict(visible=False, range=[0, full_w]),
                      yaxis=dict(visible=False, range=[full_h, 0], scaleanchor="x"))
    return fig


def regions_here(ctx: Context, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) strings: the shown regions whose mask holds each cell of a hover grid of
    ``shape`` ("Heart", "Left clavicle + Left lung", "no region")."""
    import cv2

    shown = [r for r in ctx.regions if r in ctx.settings.visible]
    inside = [cv2.resize(ctx.masks[r].astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
              for r in shown]
    codes = sum((m.astype(np.int64) << i for i, m in enumerate(inside)), np.zeros(shape, np.int64))
    text = np.full(shape, "no region", dtype=object)
    for code in np.unique(codes[codes > 0]):
        text[codes == code] = " + ".join(REGIONS[r].display_name for i, r in enumerate(shown)
                                         if code >> i & 1)
    return text
