"""Training playback: a region model's validation predictions epoch by epoch (the
snapshots its training saved), beside its loss and validation curves."""
from __future__ import annotations

import math
import time

import numpy as np
import streamlit as st

from cxr_dash.data import SPLIT_DESCRIPTIONS, describe_validation
from cxr_dash.preprocess import FieldOfView
from cxr_dash.regions import REGIONS
from cxr_dash.render import colormap, overlay_heatmap, overlay_masks

from .. import state
from ..context import Context

FRAME_SECONDS = 0.6     # per snapshot at an even pace, and the clock's tick while playing
# Time-lapse factors offered for "as recorded"; the default plays the run in about this long.
SPEEDS = (20, 50, 100, 200, 500, 1000, 2000, 5000)
RUN_SECONDS = 30
HYPERPARAMETERS_NOTE = ("*Hyperparameters used* are the settings this model's last training "
                        "stage ran with (from its manifest); *the study's* are what the original "
                        "study chose for this region by Bayesian optimisation, shown beside them "
                        "for comparison.")


def render(ctx: Context) -> None:
    seg = ctx.seg
    region = st.selectbox("Region", list(seg.regions), key="pb_region",
                          format_func=lambda r: REGIONS[r].display_name)
    record = _training_record(ctx.model_key, region, seg)
    if record is None or not len(record.snapshot_epochs):
        st.info("This model set has no training snapshots for this region.")
        return
    playing, case_index, clock = _controls(record, region)
    _player(record, region, case_index, playing, clock, ctx.settings.threshold,
            ctx.settings.opacity + 0.2)
    hp, study = record.hyperparameters, record.study_hyperparameters
    rows = [{"setting": k, "hyperparameters used": str(hp.get(k)),
             "study's hyperparameters": str(study.get(k, "—"))} for k in hp]
    st.caption(HYPERPARAMETERS_NOTE)
    st.dataframe(rows, hide_index=True)
    if record.training:
        _training_captions(record)


def _frame_key(region: str) -> str:
    return f"pb_frame_{region}"


def _controls(record, region: str) -> tuple[bool, int, tuple[np.ndarray, float]]:
    """Play / pause and its pace, the epoch slider (while paused) and the monitor case;
    returns (playing, monitor case, (the snapshots' times, playback seconds per second))."""
    n = len(record.snapshot_epochs)
    # The shown frame lives under its own key: playback advances it from the
    # fragment, which may not write to a widget's key once the widget exists.
    # The slider mirrors it while paused, and is hidden while playing.
    key, slider_key = _frame_key(region), f"pb_epoch_{region}"
    st.session_state.setdefault(key, n - 1)
    c1, c2 = st.columns([1, 3])
    with c1:
        playing = st.toggle("Play", key="pb_play")
    with c2:
        clock = _pace(record)
    if not playing:
        st.session_state.pop(_clock_key(region), None)
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
    return playing, case_index, clock


def _pace(record) -> tuple[np.ndarray, float]:
    """(each snapshot's time, time-lapse factor): as recorded where the history has each
    epoch's seconds (a snapshot stays up as long as its epochs took, sped up), else one
    snapshot every FRAME_SECONDS."""
    times = record.snapshot_times()
    n = len(record.snapshot_epochs)
    if times is None or n < 2 or times[-1] <= 0:
        st.caption(f"One snapshot every {FRAME_SECONDS} s (no epoch times recorded).")
        return np.arange(n, dtype=np.float64) * FRAME_SECONDS, 1.0
    total = float(times[-1])
    default = min(SPEEDS, key=lambda v: abs(total / v - RUN_SECONDS))
    speed = st.select_slider(
        "Speed, as recorded", SPEEDS, value=default, key="pb_speed",
        format_func=lambda v: f"×{v}",
        help="Each snapshot stays on screen for as long as training took to reach the next, "
             "sped up by this factor (per-epoch times from the training record).")
    st.caption(f"×{speed}: {_duration(total)} of training from the first snapshot to the last "
               f"plays in {_duration(total / speed)}.")
    return times, float(speed)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _clock_key(region: str) -> str:
    return f"pb_clock_{region}"


def _advance(region: str, n: int, clock: tuple[np.ndarray, float]) -> int:
    """The frame due now: playback started (at the frame after the one shown, so Play
    moves at once) on a wall clock, its position the training seconds reached; past the
    last snapshot it starts over. Wall time, not a count of ticks: a slow rerun delays a
    frame, it does not slow the run down."""
    from cxr_dash.record import frame_at

    times, speed = clock
    key, now = _frame_key(region), time.monotonic()
    started = st.session_state.get(_clock_key(region))
    if started is None:
        start_frame = (st.session_state[key] + 1) % n
        started = st.session_state[_clock_key(region)] = (now, float(times[start_frame]))
    wall, position = started
    position += (now - wall) * speed
    if position > times[-1] + FRAME_SECONDS * speed:        # the last frame shown, then again
        st.session_state[_clock_key(region)] = (now, float(times[0]))
        position = float(times[0])
    return frame_at(times, position)


def _player(record, region: str, case_index: int, playing: bool, clock, threshold: float,
            opacity: float) -> None:
    """The frame shown (advancing by itself while playing) beside the training curves."""
    key, n = _frame_key(region), len(record.snapshot_epochs)
    ds = state.dataset()

    @st.fragment(run_every=FRAME_SECONDS / 2 if playing else None)
    def frame():
        if playing:
            st.session_state[key] = _advance(region, n, clock)
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


def _training_captions(record) -> None:
    """How the model was trained: split, cases, epochs, backend, stages, recalibration."""
    t = record.training
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
    model set: the epoch slider and play/pause rerun the page many times."""
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
    rows_used = _stage_labels(fig, stage_markers, span=max(ep) - min(ep) + 1)
    fig.add_vline(x=epoch, line_color="#d62728", line_dash="dash")
    fig.update_layout(height=352, margin=dict(l=0, r=0, t=24 + 12 * max(rows_used, 1), b=0),
                      legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="epoch")
    # The right axis (IoU / Dice) carries the grid: those are the curves read against values.
    fig.update_yaxes(title_text="loss", showgrid=False, secondary_y=False)
    fig.update_yaxes(title_text="validation IoU / Dice", range=[0, 1], tickmode="linear", dtick=0.2,
                     showgrid=True, secondary_y=True)
    st.plotly_chart(fig, key=f"hist_{epoch}")


def _stage_labels(fig, stage_markers, span: int, rows: int = 3) -> int:
    """A dotted line and a label where each training stage starts; returns the label rows used.

    Labels of stages a few epochs apart would print over each other: each goes
    on the lowest row whose last label has ended, its width estimated from its
    length (about 80 characters of 10 px text across the chart)."""
    row_ends = [-math.inf] * rows
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
    return sum(end > -math.inf for end in row_ends)
