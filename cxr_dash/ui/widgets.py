"""Pieces several pages draw: region colour chips, ground-truth outlines, the warnings
above an image's results."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cxr_dash.quality import exposure_warnings, plausibility_warnings
from cxr_dash.regions import REGIONS
from cxr_dash.render import overlay_masks

from . import state
from .context import Context


def colour_chip(region: str) -> str:
    """HTML: the region's colour square and its name (``unsafe_allow_html``)."""
    r = REGIONS[region]
    return chip(r.hex_colour, r.display_name)


def chip(hex_colour: str, label: str) -> str:
    # A thin grey edge: a white chip (agreement) or a pale one must show on a white page.
    return (f"<span style='display:inline-block;width:0.9em;height:0.9em;border-radius:2px;"
            f"background:{hex_colour};border:1px solid #999;margin-right:0.4em;"
            f"vertical-align:middle'></span>{label}")


def truth_outlines(ctx: Context, rgb: np.ndarray, visible) -> np.ndarray:
    """``rgb`` with the ground-truth outlines of the ``visible`` regions, when the image has
    them and the sidebar shows them."""
    if ctx.image.truth and ctx.settings.show_truth:
        # Each region's own colour, lightened: which structure an outline belongs
        # to stays readable, and it differs from the prediction drawn in full colour.
        light = {r: tuple(int(c + (255 - c) * 0.6) for c in REGIONS[r].colour) for r in visible}
        return overlay_masks(rgb, {r: ctx.image.truth[r] for r in visible if r in ctx.image.truth},
                             style="outline", colours=light)
    return rgb


def input_error() -> None:
    """The error of the input chosen in the sidebar (a rejected upload, an unreadable case)."""
    if (message := state.input_error()) is not None:
        st.error(message + ("  \nThe previous image and its results are kept and shown below."
                            if state.current() else ""))


def image_warnings(ctx: Context) -> None:
    """Above every image page: the image may not be a frontal radiograph the right way
    round, or its grey scale may be clipped (``cxr_dash.quality``)."""
    image = ctx.image
    warnings = plausibility_warnings(image.pixels, ctx.masks, ctx.probs)
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


def quality_warning(ctx: Context) -> None:
    """A warning naming the regions whose estimated Jaccard falls under the set's
    validated threshold: their masks are likely poor on this image."""
    doubtful = ctx.doubtful_regions()
    if not doubtful:
        return
    quality = ctx.quality()
    names = ", ".join(f"{REGIONS[r].display_name.lower()} ({quality[r]:.2f})" for r in doubtful)
    st.warning(f"**Likely poor masks:** {names}. Their estimated Jaccard is under "
               f"{ctx.warning_threshold:.2f}, where masks on held-out SCR cases and degraded copies "
               "of them mostly scored under 0.85 against the manual outline. Check them against the "
               "image before using their measurements.")
