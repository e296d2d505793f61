"""Explain: what drove each region model's prediction: gradient and Score-CAM
heatmaps (``cxr_dash.explain``) and occlusion sensitivity (``cxr_dash.occlusion``)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cxr_dash.explain import DEFAULT_LAYER, LAYERS, METHODS, explain
from cxr_dash.faithfulness import DEFAULT_FRACTION, saliency_drop
from cxr_dash.jobs import Job, JobStopped, describe_time
from cxr_dash.measure import region_at
from cxr_dash.occlusion import default_patch_and_stride, occlusion_sensitivity
from cxr_dash.regions import REGIONS
from cxr_dash.render import colour_bar, overlay_heatmap, overlay_masks

from .. import results, state
from ..context import Context
from ..results import ResultKey
from ..widgets import colour_chip, truth_outlines

BASELINES = {"black (0)": 0.0, "mean grey": "mean", "blur": "blur", "white (1)": 1.0}
# Occlusion and the long explanations run as a background job (cxr_dash.jobs). One done
# within INLINE_WAIT_S is shown at once; a longer one gets a progress bar with the time left
# and a Stop button, polled every JOB_POLL_S, and a stopped run keeps what it computed.
INLINE_WAIT_S = 1.5
JOB_POLL_S = 0.5
# The explanations that take long enough to need that (seconds to a minute on 2 cores);
# the others (one gradient, ~0.5 s a region) run at once.
BACKGROUND_METHODS = ("smoothgrad", "scorecam")
FAITHFULNESS_HELP = (f"The deletion test: the drop in the region's mean probability when the "
                     f"{DEFAULT_FRACTION:.0%} of the model's input this heatmap ranks most salient is "
                     "blurred away (structure removed, brightness kept). Larger: the heatmap found "
                     "more of what the model relies on. Compare methods on the same image and region.")


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
    picker, controls = st.columns([2, 3])
    with picker:
        _target_picker(ctx)
    with controls:
        method, layer_label, chosen, params = _explanation_controls(ctx)
        clicked = st.button("Run explanation", type="primary", disabled=not chosen)
    layer = LAYERS[layer_label]

    def key_of(region: str) -> ResultKey:
        return ResultKey(ctx.model_key, ctx.image.key, "explanation", region,
                         (method, layer, ctx.settings.threshold, tuple(sorted(params.items()))))

    # A region clicked on the image runs at once: the click says what to explain.
    if (clicked or st.session_state.pop("exp_run_now", False)) and chosen:
        todo = [(r, key_of(r)) for r in chosen if results.get(key_of(r)) is None]
        if todo and method in BACKGROUND_METHODS and _job("exp_job") is None:
            _start("exp_job", _explanation_work(ctx, small, todo, method, layer, params),
                   "explanation")
        elif todo and method not in BACKGROUND_METHODS:
            bar = st.progress(0.0, text="Explaining…")
            for i, (region, key) in enumerate(todo):
                with state.model_slot(f"the {REGIONS[region].display_name.lower()} explanation"):
                    _keep(key, explain(ctx.seg, ctx.image.pixels, region, method, layer,
                                       ctx.settings.threshold, prob=small[region], **params))
                bar.progress((i + 1) / len(todo), text=f"{REGIONS[region].display_name} done")
            bar.empty()
    _job_or_result("exp_job", _keep_explanations)
    done = [(key_of(r), result) for r in chosen if (result := results.get(key_of(r))) is not None]
    if done:
        _show_explanations(ctx, done, small)
    elif chosen:
        st.info("Click a region on the image, or choose a method, layer and regions and "
                "**Run explanation**.")
    _faithfulness_table(ctx)


def _explanation_work(ctx: Context, small, todo, method: str, layer: str, params: dict):
    """The job of explaining ``todo`` [(region, key)] one after the other; its result, the
    [(key, Explanation)] done so far, grows as it goes (a stopped job keeps them)."""
    seg, pixels, threshold = ctx.seg, ctx.image.pixels, ctx.settings.threshold

    def work(job: Job):
        job.result = []
        for i, (region, key) in enumerate(todo):
            if job.should_stop():
                break
            job.progress(i, len(todo), f"Explaining the {REGIONS[region].display_name.lower()}")
            result = explain(seg, pixels, region, method, layer, threshold, prob=small[region],
                             progress=lambda done, total, i=i: job.progress(
                                 i * total + done, len(todo) * total),
                             should_stop=job.should_stop, **params)
            job.result.append((key, result))
            if not result.complete:
                break
        job.progress(len(todo), len(todo))
        return job.result
    return work


def _keep_explanations(job: Job) -> None:
    for key, result in job.result or []:
        _keep(key, result)


def _keep(key: ResultKey, result) -> None:
    """Keep a result, replacing an earlier (stopped) one of the same key and its test."""
    st.session_state.get("faithfulness", {}).pop(key, None)
    results.keep(key, result)


def _job(slot: str) -> Job | None:
    return st.session_state.get(slot)


def _start(slot: str, work, what: str, tag=None) -> None:
    """Start a job and give it INLINE_WAIT_S to finish before the page goes on."""
    job = st.session_state[slot] = Job(work, what, tag)
    job.wait(INLINE_WAIT_S)


def _job_or_result(slot: str, keep) -> None:
    """A finished job: its result kept (``keep(job)``), its error said. A running one: its
    progress panel (time left, Stop)."""
    job = _job(slot)
    if job is None:
        return
    if not job.finished:
        _job_panel(slot)
        return
    del st.session_state[slot]
    if job.error is not None and not isinstance(job.error, JobStopped):
        state.log.error("the %s failed", job.what, exc_info=job.error)
        st.error(f"The {job.what} failed ({type(job.error).__name__}: {job.error}).")
    if job.result is not None:
        keep(job)


@st.fragment(run_every=JOB_POLL_S)
def _job_panel(slot: str) -> None:
    """A running job's progress, the time it has taken and has left, and its Stop button;
    redrawn every JOB_POLL_S. When the job ends the page reruns and shows its result."""
    job = _job(slot)
    if job is None:
        return
    if job.finished:
        st.rerun()
    if job.queued:
        st.info(state.queue_message(job.place or 1, f"the {job.what}"))
    else:
        left = describe_time(job.seconds_left())
        text = (f"{job.text or job.what.capitalize()}: {job.fraction:.0%} in {job.seconds:.0f} s"
                + (f", {left}" if left else ""))
        st.progress(job.fraction, text="Stopping…" if job.stopping else text)
    st.button("Stop", key=f"{slot}_stop", on_click=job.stop, disabled=job.stopping,
              help="Ends the run within a second; what it has computed so far is shown.")


def _target_picker(ctx: Context) -> None:
    """The radiograph with its masks: a click on a region makes it the explanation's target
    (and runs it)."""
    st.plotly_chart(target_figure(ctx), key="explain_picker", on_select=lambda: _pick_target(ctx),
                    selection_mode="points", config={"displaylogo": False, "scrollZoom": True})
    if st.session_state.pop("exp_pick_missed", False):
        st.caption(":grey[No region there: click inside a mask.]")
    else:
        st.caption("Click a region to explain it (hover names it).")


def _pick_target(ctx: Context) -> None:
    """on_select of the picker: the region clicked becomes the only one explained (a
    callback, so it runs before the regions' multiselect is drawn and may set it)."""
    points = st.session_state["explain_picker"].selection.points
    if not points:
        return
    region = region_at({r: ctx.masks[r] for r in ctx.regions if r in ctx.settings.visible},
                       ctx.probs, points[0]["x"], points[0]["y"])
    if region is None:
        st.session_state["exp_pick_missed"] = True
        return
    st.session_state["exp_regions"] = [region]
    st.session_state["exp_run_now"] = True


def target_figure(ctx: Context, side: int = 512, grid: int = 64):
    """The masks over the radiograph under a grid of invisible points (a plotly image
    cannot be clicked, points can), each naming the region there and its probability.
    Axes in pixels of the image as worked on."""
    import base64

    import plotly.graph_objects as go

    from cxr_dash.render import downsample_for_display
    from cxr_dash.report import png_bytes

    from .overview import overlay, regions_here

    visible = [r for r in ctx.regions if r in ctx.settings.visible]
    rgb = overlay(ctx, ctx.base_rgb(), visible)
    h, w = ctx.image.pixels.shape
    shown = downsample_for_display(rgb, side)
    source = "data:image/png;base64," + base64.b64encode(png_bytes(shown)).decode()
    dx, dy = w / shown.shape[1], h / shown.shape[0]
    fig = go.Figure(go.Image(source=source, x0=dx / 2, y0=dy / 2, dx=dx, dy=dy, hoverinfo="skip"))
    gh, gw = (grid, max(1, round(grid * w / h))) if h >= w else (max(1, round(grid * h / w)), grid)
    gy, gx = np.mgrid[0:gh, 0:gw]
    xs, ys = (gx.ravel() + 0.5) * w / gw, (gy.ravel() + 0.5) * h / gh
    names = regions_here(ctx, (gh, gw)).ravel()
    rows, cols = np.minimum(ys.astype(int), h - 1), np.minimum(xs.astype(int), w - 1)
    # The probability of the region named (the surest of those that hold the point).
    probability = [f"{max((ctx.probs[r][y, x] for r in visible if ctx.masks[r][y, x]), default=0):.2f}"
                   for y, x in zip(rows, cols)]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", showlegend=False,
                             marker=dict(size=max(4, side // gw), color="rgba(0,0,0,0)"),
                             customdata=np.stack([names, probability], -1),
                             hovertemplate="<b>%{customdata[0]}</b><br>probability %{customdata[1]}"
                                           "<extra></extra>"))
    fig.update_layout(height=380, margin=dict(l=0, r=0, t=0, b=0), dragmode="zoom",
                      clickmode="event+select",
                      xaxis=dict(visible=False, range=[0, w]),
                      yaxis=dict(visible=False, range=[h, 0], scaleanchor="x"))
    return fig


def _explanation_controls(ctx: Context) -> tuple[str, str, list[str], dict]:
    """Method, layer (its label), regions and the method's own parameters."""
    c1, c2 = st.columns(2)
    method = c1.selectbox("Method", list(METHODS), format_func=METHODS.get)
    labels = list(LAYERS)
    default_label = next(k for k, v in LAYERS.items() if v == DEFAULT_LAYER)
    layer_label = c2.selectbox("Layer", labels, index=labels.index(default_label),
                               disabled=method == "smoothgrad",
                               help="Gradient methods explain this layer's activations.")
    # Set here, not as a default: a click on the image sets it too (``_pick_target``).
    st.session_state["exp_regions"] = [r for r in st.session_state.get("exp_regions", [ctx.regions[0]])
                                       if r in ctx.regions]
    chosen = st.multiselect("Regions", list(ctx.regions), key="exp_regions",
                            format_func=lambda r: REGIONS[r].display_name)
    params = {}
    if method == "smoothgrad":
        p1, p2 = st.columns(2)
        params["smooth_samples"] = p1.slider("Noisy samples", 4, 48, 16, 4)
        params["smooth_noise"] = p2.slider("Noise (sd)", 0.05, 0.5, 0.15, 0.05)
    elif method == "scorecam":
        params["max_channels"] = st.slider("Activation maps used (Faster Score-CAM)", 8, 64, 32, 8)
    return method, layer_label, chosen, params


def _show_explanations(ctx: Context, done: list, small: dict[str, np.ndarray]) -> None:
    base = ctx.base_rgb()
    for col, (key, exp) in zip(st.columns(max(len(done), 2)), done):
        with col:
            st.markdown(colour_chip(exp.region), unsafe_allow_html=True)
            shown = _heat_with_outlines(ctx, base, exp.at_size(ctx.image.pixels.shape), exp.region,
                                       ctx.settings.opacity + 0.2)
            st.image(shown, width="stretch", caption=f"{exp.title} — {exp.seconds:.1f} s")
            _faithfulness_metric(_faithfulness(ctx, key, exp, small))
    _heat_legend(st.columns(3)[0], "no contribution", "largest contribution (per region)")


def _faithfulness(ctx: Context, key: ResultKey, result, small: dict[str, np.ndarray]):
    """The deletion test of a heatmap (two forward passes), once per result."""
    def compute():
        region = result.region
        with state.model_slot("the faithfulness test"):
            return saliency_drop(ctx.seg.predictor(region),
                                 ctx.seg.prepare(ctx.image.pixels, region), result.heatmap,
                                 small[region] >= ctx.settings.threshold)
    return results.faithfulness(key, compute)


def _faithfulness_metric(f, target=st) -> None:
    target.metric(f"Faithfulness: drop, top {f.fraction:.0%} removed", f"{f.drop:.3f}",
                  help=FAITHFULNESS_HELP)
    target.caption(f"Mean probability in the region {f.base_score:.3f} → {f.score:.3f}.")


def _faithfulness_table(ctx: Context) -> None:
    """Every heatmap of this image whose faithfulness is known, side by side."""
    rows = [{"region": REGIONS[r.region].display_name, "heatmap": r.title,
             "drop": f.drop, "mean probability after": f.score}
            for key, r in results.of_image(ctx.model_key, ctx.image.key)
            if (f := results.faithfulness_of(key)) is not None]
    if len(rows) < 2:
        return
    with st.expander(f"Faithfulness of the {len(rows)} heatmaps computed on this image"):
        st.dataframe(sorted(rows, key=lambda row: (row["region"], -row["drop"])), hide_index=True,
                     column_config={"drop": st.column_config.NumberColumn(
                         f"drop, top {DEFAULT_FRACTION:.0%} removed", format="%.3f",
                         help=FAITHFULNESS_HELP),
                         "mean probability after": st.column_config.NumberColumn(format="%.3f")})


def _occlusion(ctx: Context, small: dict[str, np.ndarray]) -> None:
    region = st.selectbox("Region", list(ctx.regions), key="occ_region",
                          format_func=lambda r: REGIONS[r].display_name)
    patch, stride, baseline = _occlusion_controls(ctx, region)
    key = ResultKey(ctx.model_key, ctx.image.key, "occlusion", region,
                    (patch, stride, baseline, ctx.settings.threshold))
    if st.button("Run occlusion") and _job("occ_job") is None:
        seg, x = ctx.seg, ctx.seg.prepare(ctx.image.pixels, region)
        inside = small[region] >= ctx.settings.threshold

        def work(job: Job):
            with seg.run_of_calls(region) as predict:
                return occlusion_sensitivity(
                    predict, x, inside, patch, stride, baseline,
                    progress=lambda done, total: job.progress(done, total, f"{done}/{total} patches"),
                    region=region, view=seg.view(region), should_stop=job.should_stop)
        _start("occ_job", work, "occlusion sensitivity", tag=key)
    _job_or_result("occ_job", lambda job: _keep(job.tag, job.result))
    if (result := results.get(key)) is not None:
        _show_occlusion(ctx, result, small[region] >= ctx.settings.threshold,
                        _faithfulness(ctx, key, result, small))


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


def _show_occlusion(ctx: Context, res, region_mask: np.ndarray, faithfulness) -> None:
    shown = _heat_with_outlines(ctx, ctx.base_rgb(), res.at_size(ctx.image.pixels.shape), res.region, 0.6)
    c1, c2 = st.columns([3, 2])
    image_px = res.patch * _image_rows_of_model(ctx, res.region) / ctx.seg.input_size(res.region)
    c1.image(shown, width="stretch",
             caption=f"Score drop when a {res.patch}-model-pixel patch (~{image_px:.0f} image "
                     f"pixels) is hidden, stride {res.stride}: {res.evaluations} forward "
                     f"passes, {res.seconds:.1f} s" + ("" if res.complete else
                     f" — stopped after {res.evaluations - 1} of {res.total - 1} patches (the "
                     "others are blank); run it again for the whole map"))
    _heat_legend(c1, "no drop", "largest drop")
    split = res.inside_outside(region_mask)
    c2.metric("Base score (mean probability in region)", f"{res.base_score:.3f}")
    c2.metric("Sensitivity inside the region", f"{split['inside_fraction']:.0%}",
              help="Share of the total score drop caused by patches inside the region.")
    c2.caption(f"The region is {split['region_area_fraction']:.0%} of the model's input. A "
               "share of sensitivity well above that: the model looks at the region itself; "
               "near or below it: at its context.")
    _faithfulness_metric(faithfulness, c2)


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

