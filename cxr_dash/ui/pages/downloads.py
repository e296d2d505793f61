"""Downloads: the current image's masks, probability maps, explanation heatmaps and
measurements as files, named after the image."""
from __future__ import annotations

from functools import partial

import streamlit as st

from cxr_dash.regions import REGIONS
from cxr_dash.report import rows_csv, rows_json

from .. import results, state
from ..context import Context


def render(ctx: Context) -> None:
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
        _masks(ctx, files, stem)
    with c2:
        _heatmaps(ctx, files, stem)
    with c3:
        _metrics(ctx, stem)


def _masks(ctx: Context, files: dict[str, bytes], stem: str) -> None:
    st.markdown("**Masks**")
    for region in ctx.regions:
        st.download_button(f"{REGIONS[region].display_name} (PNG)", files[f"mask_{region}"],
                           f"{stem}_{region}.png", "image/png", key=f"dl_mask_{region}")
    st.download_button("All masks (ZIP of PNGs)", files["zip"], f"{stem}_masks.zip",
                       "application/zip")
    st.download_button("Masks + probabilities (NPZ)", files["npz"],
                       f"{stem}_masks.npz", "application/octet-stream")


def _heatmaps(ctx: Context, files: dict[str, bytes], stem: str) -> None:
    """Probability maps, then the explanations and occlusion maps of this image and model
    set (over the whole image: zero outside a clavicle model's field of view)."""
    st.markdown("**Heatmaps**")
    for region in ctx.regions:
        st.download_button(f"{REGIONS[region].display_name} probability (PNG)",
                           files[f"prob_{region}"], f"{stem}_{region}_prob.png",
                           "image/png", key=f"dl_prob_{region}")
    for key, result in results.of_image(ctx.model_key, ctx.image.key):
        name = result.download_name
        png = state.heatmap_png(key.token, partial(result.at_size, ctx.image.pixels.shape))
        st.download_button(f"{name} (PNG)", png, f"{stem}_{name}.png", "image/png",
                           key=f"dl_exp_{key.token}")


def _metrics(ctx: Context, stem: str) -> None:
    st.markdown("**Region metrics**")
    rows = ctx.measurements()
    context = {"image": ctx.image.name, "threshold": ctx.settings.threshold,
               "pixel_spacing_mm": ctx.image.spacing_mm, "model_set": ctx.results_key,
               "working_shape": list(ctx.image.pixels.shape), "notes": ctx.image.notes}
    st.download_button("Metrics (CSV)", rows_csv(rows), f"{stem}_metrics.csv", "text/csv")
    st.download_button("Metrics (JSON)", rows_json(rows, **context), f"{stem}_metrics.json",
                       "application/json")
