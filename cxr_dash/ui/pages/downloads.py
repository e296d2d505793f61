"""Downloads: the current image's masks, probability maps, explanation heatmaps, pictures
as shown and measurements as files named after the image and the region
(``<image>_<region>_mask.png``, ``<image>_<region>_gradcam.png``), and one ZIP of them all."""
from __future__ import annotations

from functools import partial

import streamlit as st

from cxr_dash.regions import REGIONS
from cxr_dash.report import json_bytes, mask_file_name, png_bytes, rows_csv, rows_json, zip_bytes

from .. import results, state
from ..context import Context


def render(ctx: Context) -> None:
    stem = file_stem(ctx.image.name)
    cropped = [n for n in ctx.image.notes if n.startswith(state.BORDER_NOTE)]
    st.caption(f"Masks at working resolution {ctx.image.pixels.shape[1]} x {ctx.image.pixels.shape[0]} "
               f"(original {ctx.image.original_shape[1]} x {ctx.image.original_shape[0]}"
               + "".join(f"; {n} from the working copy" for n in cropped) +
               f"), threshold {ctx.settings.threshold:.2f}.")
    files = state.download_files(ctx.results_key, ctx.image.key, ctx.settings.threshold, stem,
                                 ctx.masks, ctx.probs)
    heatmaps = heatmap_files(ctx, stem)
    metrics = {f"{stem}_metrics.csv": rows_csv(metrics_rows(ctx)),
               f"{stem}_metrics.json": metrics_json(ctx, heatmaps)}
    # Built when pressed (on a thread of its own, without the session: everything it
    # needs from the session is gathered here).
    st.download_button("Everything shown (ZIP)", partial(everything_zip, ctx, stem, files, heatmaps,
                                                         metrics),
                       f"{stem}_cxr-dash.zip", "application/zip", type="primary", key="dl_all",
                       on_click="ignore",
                       help="Masks, probability maps, the heatmaps computed for this image, the "
                            "overlay, the statistics with the CTR lines and the difference views "
                            "as shown (display settings applied), and the metrics as CSV and JSON.")
    c1, c2, c3 = st.columns(3)
    with c1:
        _masks(ctx, files, stem)
    with c2:
        _heatmaps(ctx, files, stem, heatmaps)
    with c3:
        _metrics(metrics, stem)


def file_stem(name: str) -> str:
    """The image's name without its extension, safe as the start of a file name."""
    stem = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].rsplit(".", 1)[0]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "radiograph"


def _masks(ctx: Context, files: dict[str, bytes], stem: str) -> None:
    st.markdown("**Masks**")
    for region in ctx.regions:
        name = mask_file_name(stem, region)
        st.download_button(f"{REGIONS[region].display_name} (PNG)", files[name], name, "image/png",
                           key=f"dl_mask_{region}", on_click="ignore")
    st.download_button("All masks (ZIP of PNGs)", files[f"{stem}_masks.zip"], f"{stem}_masks.zip",
                       "application/zip", on_click="ignore")
    st.download_button("Masks + probabilities (NPZ)", files[f"{stem}_masks.npz"],
                       f"{stem}_masks.npz", "application/octet-stream", on_click="ignore")


def heatmap_files(ctx: Context, stem: str) -> list[tuple[str, str, object]]:
    """(label, file name, (key, result)) of the explanations and occlusion maps of this
    image and model set; a name given twice (one method at two settings) gets _2, _3."""
    out, seen = [], {}
    for key, result in results.of_image(ctx.model_key, ctx.image.key):
        base = f"{stem}_{result.download_name}"
        seen[base] = seen.get(base, 0) + 1
        name = base + (f"_{seen[base]}" if seen[base] > 1 else "") + ".png"
        out.append((f"{REGIONS[result.region].display_name}: {result.title}", name, (key, result)))
    return out


def _heatmap_png(ctx: Context, key, result) -> bytes:
    return state.heatmap_png(key.token, partial(result.at_size, ctx.image.pixels.shape))


def _heatmaps(ctx: Context, files: dict[str, bytes], stem: str, heatmaps) -> None:
    """Probability maps, then the explanations and occlusion maps of this image and model
    set (over the whole image: zero outside a clavicle model's field of view)."""
    st.markdown("**Heatmaps**")
    for region in ctx.regions:
        name = state.probability_file_name(stem, region)
        st.download_button(f"{REGIONS[region].display_name} probability (PNG)", files[name], name,
                           "image/png", key=f"dl_prob_{region}", on_click="ignore")
    for label, name, (key, result) in heatmaps:
        st.download_button(f"{label} (PNG)", _heatmap_png(ctx, key, result), name, "image/png",
                           key=f"dl_exp_{key.token}", on_click="ignore")


def metrics_context(ctx: Context) -> dict:
    """What the metrics files say about where they came from: names, never paths."""
    return {"image": ctx.image.name, "threshold": ctx.settings.threshold,
            "pixel_spacing_mm": ctx.image.spacing_mm, "model_set": ctx.model_set_name,
            "test_time_augmentation": ctx.tta,
            "ground_truth": (None if not ctx.image.truth else
                             "SCR" if ctx.image.source == "dataset" else
                             {r: ctx.image.truth_sources.get(r) for r in ctx.image.truth}),
            "working_shape": list(ctx.image.pixels.shape),
            "original_shape": list(ctx.image.original_shape), "notes": ctx.image.notes}


def metrics_rows(ctx: Context) -> list[dict]:
    """The measurements, each region's row with its statistics (area, centroid, box, widest
    extent) beside them."""
    stats = ctx.statistics()
    return [{**row, **{k: v for k, v in stats[row["region"]].items() if k not in row}}
            for row in ctx.measurements()]


def metrics_json(ctx: Context, heatmaps) -> bytes:
    """The rows, where they came from, the CTR and the faithfulness of each heatmap."""
    ctr = ctx.cardiothoracic_ratio()
    faith = [{"region": r.region, "heatmap": r.title, "file": name, **f.as_dict()}
             for _, name, (key, r) in heatmaps if (f := results.faithfulness_of(key)) is not None]
    return rows_json(metrics_rows(ctx), **metrics_context(ctx),
                     cardiothoracic_ratio=None if ctr is None else ctr.as_dict(ctx.image.spacing_mm),
                     heatmap_faithfulness=faith)


def _metrics(metrics: dict[str, bytes], stem: str) -> None:
    st.markdown("**Region metrics**")
    st.download_button("Metrics (CSV)", metrics[f"{stem}_metrics.csv"], f"{stem}_metrics.csv",
                       "text/csv", on_click="ignore")
    st.download_button("Metrics and statistics (JSON)", metrics[f"{stem}_metrics.json"],
                       f"{stem}_metrics.json", "application/json", on_click="ignore")
    st.caption("Per region: area, estimated Jaccard, centroid, bounding box, widest extent "
               "(and, with ground truth, Jaccard, Dice, contour distances); the JSON adds the "
               "cardiothoracic ratio and each heatmap's faithfulness.")


def everything(ctx: Context, stem: str, files: dict[str, bytes], heatmaps,
               metrics: dict[str, bytes]) -> dict[str, bytes]:
    """{file name: contents} of everything the pages show for this image, as shown:
    ``files`` (:func:`state.download_files <cxr_dash.ui.state.download_files>`), the
    heatmaps (:func:`heatmap_files`), the overlay, the statistics with the CTR lines, the
    difference views, ``metrics`` and the display settings they were drawn with."""
    from . import compare, overview, statistics

    out = {k: v for k, v in files.items() if k != f"{stem}_masks.zip"}   # its PNGs are here
    for _, name, (key, result) in heatmaps:
        out[name] = _heatmap_png(ctx, key, result)
    visible = [r for r in ctx.regions if r in ctx.settings.visible]
    base = ctx.base_rgb()
    out[f"{stem}_overlay.png"] = png_bytes(overview.overlay(ctx, base, visible))
    out[f"{stem}_statistics.png"] = png_bytes(
        statistics.statistics_overlay(ctx, visible, ctx.cardiothoracic_ratio()))
    for region in ctx.regions:
        if ctx.image.truth and region in ctx.image.truth:
            out[f"{stem}_{region}_difference.png"] = png_bytes(compare.difference_view(ctx, base, region))
    out.update(metrics)
    s = ctx.settings
    out[f"{stem}_display.json"] = json_bytes({
        "opacity": s.opacity, "style": s.style, "regions_shown": list(s.visible),
        "window": list(s.window), "local_contrast": s.local_contrast,
        "ground_truth_outlines": s.show_truth})
    return out


def everything_zip(ctx: Context, stem: str, files, heatmaps, metrics) -> bytes:
    """:func:`everything` as one ZIP."""
    return zip_bytes(everything(ctx, stem, files, heatmaps, metrics))
