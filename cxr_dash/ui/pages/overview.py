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
}


def render(ctx: Context) -> None:
    s = ctx.settings
    visible = [r for r in ctx.regions if r in s.visible]
    base = ctx.base_rgb()
    rgb = overlay_masks(base, {r: ctx.masks[r] for r in visible}, s.opacity, s.style)
    rgb = truth_outlines(ctx, rgb, visible)
    # With ground truth the table has three more columns: give it half the width.
    left, right = st.columns([1, 1] if ctx.image.truth else [3, 2])
    _image(ctx, left, rgb, base)
    with right:
        _measurements(ctx, visible)


def _image(ctx: Context, target, rgb: np.ndarray, base: np.ndarray) -> None:
    """The overlay, still or (toggled) zoomable with values on hover."""
    caption = f"{ctx.image.name} — patient's right on the image's left"
    if ctx.image.truth and ctx.settings.show_truth:
        caption += "; light outlines: ground truth"
    if target.toggle("Inspect: zoom, pan and read values", key="inspect",
                     help="An interactive view: drag to zoom, double-click to reset; hover for the "
                          "pixel's intensity and every region's probability."):
        target.plotly_chart(inspect_figure(ctx, rgb, base), key="inspect_figure",
                            config={"scrollZoom": True, "displaylogo": False})
        target.caption(caption)
    else:
        target.image(rgb, caption=caption, width="stretch")


def _measurements(ctx: Context, visible: list[str]) -> None:
    st.markdown("<br>".join(colour_chip(r) for r in visible) or "No region shown "
                "(sidebar: Regions shown).", unsafe_allow_html=True)
    rows = [r for r in ctx.measurements() if r["region"] in visible]
    cols = ["name", "area_cm2" if ctx.image.spacing_mm else "area_px", "estimated_jaccard"]
    if ctx.image.truth:
        cols += ["jaccard", "dice", "mean_contour_distance_mm"]
    st.dataframe([{k: r.get(k) for k in cols} for r in rows], hide_index=True,
                 column_config={k: MEASUREMENT_COLUMNS[k] for k in cols})
    st.caption(EXPLANATION)
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
                             opacity=0, showscale=False, colorscale="gray",
                             hovertemplate="x %{x:.0f}, y %{y:.0f} (original pixels)<br>"
                                           "display intensity %{z}<br>" + lines + "<extra></extra>"))
    fig.update_layout(height=640, margin=dict(l=0, r=0, t=0, b=0), dragmode="zoom",
                      xaxis=dict(visible=False, range=[0, full_w]),
                      yaxis=dict(visible=False, range=[full_h, 0], scaleanchor="x"))
    return fig
