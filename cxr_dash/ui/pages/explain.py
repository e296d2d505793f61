"""Explain: what drove each region model's prediction: gradient and Score-CAM
heatmaps (``cxr_dash.explain``) and occlusion sensitivity (``cxr_dash.occlusion``)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cxr_dash.explain import DEFAULT_LAYER, LAYERS, METHODS, explain
from cxr_dash.occlusion import default_patch_and_stride, model_predictor, occlusion_sensitivity
from cxr_dash.regions import REGIONS
from cxr_dash.render import colour_bar, overlay_heatmap, overlay_masks

from .. import results, state
from ..context import Context
from ..results import ResultKey
from ..widgets import colour_chip, truth_outlines

BASELINES = {"black (0)": 0.0, "mean grey": "mean", "blur": "blur", "white (1)": 1.0}


def render(ctx: Context) -> None:
    small = state.segment_small(ctx.model_key, ctx.image.key, ctx.seg, ctx.image.pixels)
    _explanations(ctx, small)
    st.divider()
    st.subheader("Occlusion sensitivity")
    _occlusion(ctx, small)


def _explanations(ctx: Context, small: dict[str, np.ndarray]) -> None:
    st.caption("Score explained: the region model's output summed over the region it predicts "
               "(Seg-Grad-CAM; its mean there for Grad-CAM++, whose exp(score) needs a bounded "
               "score). Heatmaps are normalised per image and region; outlines: the predicted "
               "region" + ("; light outlines: ground truth." if ctx.image.truth and ctx.settings.show_truth
                           else "."))
    method, layer_label, chosen, params = _explanation_controls(ctx)
    layer = LAYERS[layer_label]

    def key_of(region: str) -> ResultKey:
        return ResultKey(ctx.model_key, ctx.image.key, "explanation", region,
                         (method, layer, ctx.settings.threshold, tuple(sorted(params.items()))))

    if st.button("Run explanation", type="primary", disabled=not chosen):
        bar = st.progress(0.0, text="Explaining…")
        for i, region in enumerate(chosen):
            if results.get(key_of(region)) is None:
                with state.model_slot(f"the {REGIONS[region].display_name.lower()} explanation"):
                    result = explain(ctx.seg, ctx.image.pixels, region, method, layer,
                                     ctx.settings.threshold, prob=small[region], **params)
                results.keep(key_of(region), result)
            bar.progress((i + 1) / len(chosen), text=f"{REGIONS[region].display_name} done")
        bar.empty()
    done = [result for r in chosen if (result := results.get(key_of(r))) is not None]
    if done:
        _show_explanations(ctx, done, layer_label)
    elif chosen:
        st.info("Choose a method, layer and regions, then **Run explanation**.")


def _explanation_controls(ctx: Context) -> tuple[str, str, list[str], dict]:
    """Method, layer (its label), regions and the method's own parameters."""
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
    return method, layer_label, chosen, params


def _show_explanations(ctx: Context, done: list, layer_label: str) -> None:
    base = ctx.base_rgb()
    for col, exp in zip(st.columns(max(len(done), 2)), done):
        with col:
            st.markdown(colour_chip(exp.region), unsafe_allow_html=True)
            shown = _heat_with_outlines(ctx, base, exp.at_size(ctx.image.pixels.shape), exp.region,
                                       ctx.settings.opacity + 0.2)
            st.image(shown, width="stretch",
                     caption=f"{METHODS[exp.method]}, {layer_label if exp.layer else 'input'} "
                             f"— {exp.seconds:.1f} s")
    _heat_legend(st.columns(3)[0], "no contribution", "largest contribution (per region)")


def _occlusion(ctx: Context, small: dict[str, np.ndarray]) -> None:
    region = st.selectbox("Region", list(ctx.regions), key="occ_region",
                          format_func=lambda r: REGIONS[r].display_name)
    patch, stride, baseline = _occlusion_controls(ctx, region)
    key = ResultKey(ctx.model_key, ctx.image.key, "occlusion", region,
                    (patch, stride, baseline, ctx.settings.threshold))
    if st.button("Run occlusion"):
        bar = st.progress(0.0, text="Occluding…")
        with state.model_slot("occlusion sensitivity"):
            results.keep(key, occlusion_sensitivity(
                model_predictor(ctx.seg.model(region)), ctx.seg.prepare(ctx.image.pixels, region),
                small[region] >= ctx.settings.threshold, patch, stride, baseline,
                progress=lambda done, total: bar.progress(done / total,
                                                          text=f"{done}/{total} patches"),
                region=region, view=ctx.seg.view(region)))
        bar.empty()
    if (result := results.get(key)) is not None:
        _show_occlusion(ctx, result, small[region] >= ctx.settings.threshold)


def _image_rows_of_model(ctx: Context, region: str) -> float:
    """How many image rows the model's input side spans (its field of view's height)."""
    y0, y1, _, _ = ctx.seg.view(region).box(ctx.image.pixels.shape)
    return y1 - y0


def _occlusion_controls(ctx: Context, region: str) -> tuple[int, int, float | str]:
    """Patch and stride (model pixels) and the baseline hidden patches are filled with."""
    size = ctx.seg.input_size(region)
    d_patch, d_stride = default_patch_and_stride(size)
    o1, o2, o3 = st.columns(3)
    patch = o1.slider("Patch (model pixels)", 4, size // 2, d_patch, 2,
                      help=f"The model sees {size} x {size} ({ctx.seg.view(region).describe()}); one "
                           f"model pixel is {_image_rows_of_model(ctx, region) / size:.1f} image "
                           "pixels here.")
    stride = o2.slider("Stride (model pixels)", 2, size // 4, d_stride, 1,
                       help="Default: 1/16 of the input side, wider for inputs above 256 px "
                            "so that a run costs about what it costs at 256 px (~20-60 s on 2 "
                            "cores); a smaller stride gives a finer map for more time.")
    baseline = o3.selectbox("Baseline", list(BASELINES))
    return patch, stride, BASELINES[baseline]


def _show_occlusion(ctx: Context, res, region_mask: np.ndarray) -> None:
    shown = _heat_with_outlines(ctx, ctx.base_rgb(), res.at_size(ctx.image.pixels.shape), res.region, 0.6)
    c1, c2 = st.columns([3, 2])
    image_px = res.patch * _image_rows_of_model(ctx, res.region) / ctx.seg.input_size(res.region)
    c1.image(shown, width="stretch",
             caption=f"Score drop when a {res.patch}-model-pixel patch (~{image_px:.0f} image "
                     f"pixels) is hidden, stride {res.stride}: {res.evaluations} forward "
                     f"passes, {res.seconds:.1f} s")
    _heat_legend(c1, "no drop", "largest drop")
    split = res.inside_outside(region_mask)
    c2.metric("Base score (mean probability in region)", f"{res.base_score:.3f}")
    c2.metric("Sensitivity inside the region", f"{split['inside_fraction']:.0%}",
              help="Share of the total score drop caused by patches inside the region.")
    c2.caption(f"The region is {split['region_area_fraction']:.0%} of the model's input. A "
               "share of sensitivity well above that: the model looks at the region itself; "
               "near or below it: at its context.")


def _heat_with_outlines(ctx: Context, base: np.ndarray, heat: np.ndarray, region: str,
                       opacity: float) -> np.ndarray:
    """A heatmap over the radiograph, the region's predicted outline and (when shown) its
    ground-truth outline on top."""
    shown = overlay_masks(overlay_heatmap(base, heat, opacity), {region: ctx.masks[region]},
                          style="outline")
    return truth_outlines(ctx, shown, [region])


def _heat_legend(target, low: str = "low", high: str = "high") -> None:
    """The colour bar of the overlaid heatmaps (jet), with what its ends mean."""
    target.image(colour_bar(), width="stretch")
    target.caption(f"◀ {low} · {high} ▶ (faint below 5% of the maximum, full colour from 40%)")

