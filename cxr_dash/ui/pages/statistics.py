"""Statistics: each mask's area, centroid, bounding box and widest horizontal extent, and
the cardiothoracic ratio drawn on the radiograph (``cxr_dash.measure``)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cxr_dash.measure import cardiothoracic_ratio
from cxr_dash.regions import REGIONS
from cxr_dash.render import draw_extent, outline_box

from ..context import Context
from ..widgets import colour_chip

THORAX_COLOUR = (255, 255, 255)      # the lungs have two colours; their joint width has none
CTR_NOTE = ("CTR = the heart's widest horizontal extent / the widest horizontal extent of the two "
            "lungs together, each measured along one row; the lung masks stand in for the inner "
            "margin of the ribs. Above 0.5 on a PA radiograph is the usual mark of an enlarged "
            "heart (AP views enlarge it). A measurement from predicted masks, not a diagnosis.")


def render(ctx: Context) -> None:
    visible = [r for r in ctx.regions if r in ctx.settings.visible]
    ctr = ctx.cardiothoracic_ratio()
    left, right = st.columns([1, 1])
    with left:
        c1, c2 = st.columns(2)
        boxes = c1.checkbox("Bounding boxes", False, key="stats_boxes")
        centroids = c2.checkbox("Centroids", True, key="stats_centroids")
        truth = "; light outlines: ground truth" if ctx.image.truth and ctx.settings.show_truth else ""
        st.image(statistics_overlay(ctx, visible, ctr, boxes, centroids), width="stretch",
                 caption=f"{ctx.image.name}: white line, the widest extent of both lungs together; "
                         f"line in the heart's colour, the heart's{truth}")
    with right:
        _ctr(ctx, ctr)
        st.markdown(" &nbsp; ".join(colour_chip(r) for r in visible) or "No region shown.",
                    unsafe_allow_html=True)
    _table(ctx, visible)     # the page's width: seven columns


def statistics_overlay(ctx: Context, visible: list[str], ctr, boxes: bool = False,
                       centroids: bool = True) -> np.ndarray:
    """The masks (the sidebar's style), the CTR's two lines, and optionally each region's
    bounding box and centroid."""
    from .overview import overlay

    rgb = overlay(ctx, ctx.base_rgb(), visible)
    stats = ctx.statistics()
    for region in visible:
        st_ = stats[region]
        if st_["area_px"] == 0:
            continue
        colour = REGIONS[region].colour
        if boxes:
            rgb = outline_box(rgb, (st_["bbox_y0"], st_["bbox_y1"] + 1, st_["bbox_x0"], st_["bbox_x1"] + 1),
                              colour, dash=8)
        if centroids:
            rgb = _cross(rgb, st_["centroid_x"], st_["centroid_y"], colour)
    if ctr is not None:
        rgb = draw_extent(rgb, ctr.thorax, THORAX_COLOUR)
        rgb = draw_extent(rgb, ctr.heart, REGIONS["heart"].colour)
    return rgb


def _cross(rgb: np.ndarray, x: float, y: float, colour) -> np.ndarray:
    import cv2

    out = rgb.copy()
    size = max(6, rgb.shape[0] // 80)
    for c, t in (((0, 0, 0), 4), (tuple(int(v) for v in colour), 2)):
        cv2.drawMarker(out, (int(round(x)), int(round(y))), c, cv2.MARKER_CROSS, size, t)
    return out


def _ctr(ctx: Context, ctr) -> None:
    st.markdown("**Cardiothoracic ratio**")
    if ctr is None:
        st.info("No CTR: it needs a heart and both lungs (sidebar: *Mask threshold*; the three "
                "models must each find their region).")
        return
    spacing = ctx.image.spacing_mm
    c1, c2, c3 = st.columns(3)
    c1.metric("CTR", f"{ctr.ratio:.2f}")
    c2.metric("Heart width", _length(ctr.heart.width_px, spacing))
    c3.metric("Thoracic width", _length(ctr.thorax.width_px, spacing))
    truth = ctx.image.truth or {}
    reference = cardiothoracic_ratio(truth) if truth else None
    if reference is not None:
        st.caption(f"From the ground truth: CTR {reference.ratio:.2f} "
                   f"(difference {ctr.ratio - reference.ratio:+.3f}).")
    st.caption(CTR_NOTE)


def _length(px: int, spacing: float | None) -> str:
    return f"{px * spacing:.0f} mm" if spacing else f"{px} px"


def _table(ctx: Context, visible: list[str]) -> None:
    stats = ctx.statistics()
    spacing = ctx.image.spacing_mm
    rows = []
    for region in visible:
        s = stats[region]
        empty = s["area_px"] == 0
        rows.append({
            "Region": REGIONS[region].display_name,
            "Area": s["area_cm2"] if spacing else s["area_px"],
            "Centroid x": s["centroid_x"], "Centroid y": s["centroid_y"],
            "Bounding box": None if empty else (f"x {s['bbox_x0']}–{s['bbox_x1']}, "
                                                f"y {s['bbox_y0']}–{s['bbox_y1']}"),
            "Widest extent": s["widest_mm"] if spacing else s["widest_px"],
            "at row": s["widest_row"]})
    area, length = ("cm²", "mm") if spacing else ("px", "px")
    st.dataframe(rows, hide_index=True, column_config={
        "Area": st.column_config.NumberColumn(f"Area ({area})", format="%.2f" if spacing else "%d"),
        "Centroid x": st.column_config.NumberColumn(format="%.0f"),
        "Centroid y": st.column_config.NumberColumn(format="%.0f"),
        "Widest extent": st.column_config.NumberColumn(
            f"Widest extent ({length})", format="%.1f" if spacing else "%d",
            help="The longest horizontal span of the mask along one row"),
        "at row": st.column_config.NumberColumn(format="%d")})
    h, w = ctx.image.pixels.shape
    scale = ctx.image.original_shape[0] / h
    st.caption(f"Positions in pixels of the image as worked on ({w} x {h}; x from the left edge, "
               "y from the top)" + (f"; × {scale:.2f} for the original file's pixels"
                                   if abs(scale - 1) > 1e-3 and not _cropped(ctx) else "") +
               ("" if spacing else ". Pixel spacing unknown: areas and lengths in pixels "
                "(enter it in the sidebar).") + " The metrics download has every value.")


def _cropped(ctx: Context) -> bool:
    from ..state import BORDER_NOTE

    return any(n.startswith(BORDER_NOTE) for n in ctx.image.notes)
