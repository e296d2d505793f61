"""Compare regions: each region model on its own, side by side: its mask (or, against
the ground truth, its errors), its probability map and its figures."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cxr_dash.quality_estimate import EXPLANATION
from cxr_dash.regions import REGIONS, hex_colour
from cxr_dash.render import (AGREEMENT_COLOUR, EXTRA_COLOUR, MISSED_COLOUR, colormap, outline_box,
                             overlay_errors, overlay_masks, zoom_box)

from ..context import Context
from ..widgets import chip, colour_chip, quality_warning, truth_outlines


DIFFERENCE = "difference view (agreement, missed, extra)"


def render(ctx: Context) -> None:
    _captions(ctx)
    rows = {r["region"]: r for r in ctx.measurements()}
    base = ctx.base_rgb()
    shown = [r for r in ctx.regions if r in ctx.settings.visible]
    if not shown:
        st.info("No region shown: tick some under **Regions shown** in the sidebar.")
        return
    errors = bool(ctx.image.truth) and st.radio(
        "Overlay", ["mask", DIFFERENCE], horizontal=True, key="compare_overlay",
        help="The difference view: where mask and ground truth agree, the ground truth the mask "
             "misses and the mask outside the ground truth, each in its own colour.") != "mask"
    if errors:
        st.markdown(chip(hex_colour(AGREEMENT_COLOUR), "agreement") + " &nbsp; " +
                    chip(hex_colour(MISSED_COLOUR), "missed (ground truth outside the mask)") + " &nbsp; " +
                    chip(hex_colour(EXTRA_COLOUR), "extra (mask outside the ground truth)") +
                    " &nbsp; missed and extra as shares of the ground truth's area below",
                    unsafe_allow_html=True)
    for col, region in zip(st.columns(max(len(shown), 2)), shown):
        with col:
            st.markdown(colour_chip(region), unsafe_allow_html=True)
            _region_image(ctx, base, region, errors)
            st.plotly_chart(probability_figure(ctx.probs[region], region), key=f"heat_{region}",
                            config={"displayModeBar": False}, theme=None)
            _region_metrics(rows[region], errors)


def _captions(ctx: Context) -> None:
    quality_warning(ctx)
    """What the page shows; which models trained on this case; which see part of the image."""
    st.caption("Each region model on its own: mask overlay, probability map (hover for values), "
               "area and estimated Jaccard" +
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


def _region_image(ctx: Context, base: np.ndarray, region: str, errors: bool) -> None:
    """The region's errors against the ground truth (zoomed to it), or its mask over the
    radiograph, boxed by the model's field of view where that is part of the image."""
    if errors and region in ctx.image.truth:
        st.image(difference_view(ctx, base, region), width="stretch", caption="zoomed to the region")
        return
    if errors:
        st.caption("No ground truth for this region: its mask is shown.")
    rgb = truth_outlines(ctx, overlay_masks(base, {region: ctx.masks[region]},
                                            ctx.settings.opacity, ctx.settings.style), [region])
    view = ctx.seg.view(region)
    if not view.is_full:
        rgb = outline_box(rgb, view.box(rgb.shape), REGIONS[region].colour)
    st.image(rgb, width="stretch")


def difference_view(ctx: Context, base: np.ndarray, region: str) -> np.ndarray:
    """Agreement, missed and extra pixels of a region against its ground truth, zoomed to both."""
    truth = ctx.image.truth[region]
    y0, y1, x0, x1 = zoom_box(base.shape, ctx.masks[region], truth)
    return overlay_errors(base, ctx.masks[region], truth, max(ctx.settings.opacity, 0.5))[y0:y1, x0:x1]


def _region_metrics(row: dict, errors: bool) -> None:
    area = (f"{row['area_cm2']:.2f} cm²" if row["area_cm2"] is not None
            else f"{row['area_px']:,} px")
    st.metric("Area", area)
    estimate = row.get("estimated_jaccard")
    st.metric("Estimated Jaccard", "—" if estimate is None else f"{estimate:.2f}",
              help=EXPLANATION)
    if row.get("quality_warning"):
        st.caption(":warning: likely a poor mask: check it against the image")
    if "jaccard" not in row:
        return
    st.metric("Jaccard", f"{row['jaccard']:.3f}")
    st.metric("Dice", f"{row['dice']:.3f}")
    mm = "mean_contour_distance_mm" in row
    mcd = row["mean_contour_distance_mm" if mm else "mean_contour_distance_px"]
    st.metric("Contour dist.", "—" if mcd is None or mcd != mcd else
              (f"{mcd:.2f} mm" if mm else f"{mcd:.1f} px"),
              help=None if mm else "In pixels: the pixel spacing is unknown (sidebar)")
    if errors:
        st.metric("Missed", _share(row["missed_fraction"]), help="Ground truth outside the "
                  "mask, as a share of the ground truth's area")
        st.metric("Extra", _share(row["extra_fraction"]), help="Mask outside the ground "
                  "truth, as a share of the ground truth's area")


def _share(fraction: float | None) -> str:
    return "—" if fraction is None or fraction != fraction else f"{fraction:.1%}"


def probability_figure(prob: np.ndarray, region: str, max_side: int = 192):
    """A region's probability map as a small heatmap, values on hover."""
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
