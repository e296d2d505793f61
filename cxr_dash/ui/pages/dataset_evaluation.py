"""Dataset evaluation: each region model scored on the dataset cases it did not train
on, as ``python -m cxr_dash.evaluate`` scores them, its worst cases one click away."""
from __future__ import annotations

import numpy as np
import streamlit as st

from cxr_dash.evaluate import evaluate_segmenter, heldout_by_region, markdown_table, summarise_rows, worst_cases
from cxr_dash.regions import REGIONS
from cxr_dash.report import json_bytes, rows_csv

from .. import state
from ..context import Context
from . import compare


def render(ctx: Context) -> None:
    """(Display settings do not apply: the scores use the CLI's threshold, 0.5.)"""
    seg = ctx.seg
    ds = state.dataset()
    if ds is None:
        st.info("Set `CXR_DATA_DIR` to an SCR-style dataset (images and masks) to score the "
                "models on it here.")
        return
    available = ds.cases_with_masks()
    selection = heldout_by_region(seg, available)
    if not any(selection.values()):
        st.info("Every case of this dataset is a training case of every model: nothing is held out.")
        return
    _caption(seg, selection)
    limit = int(st.number_input("Cases per region (0: every held-out case)", 0, len(available), 0,
                                key="eval_limit"))
    store = st.session_state.setdefault("dataset_evaluation", {})
    key = (ctx.model_key, limit)
    if st.button("Evaluate", type="primary", key="eval_run"):
        bar = st.progress(0.0, text="Scoring…")
        with state.model_slot("the dataset evaluation"):
            store[key] = evaluate_segmenter(
                seg, ds, {r: cases[: limit or None] for r, cases in selection.items()},
                progress=lambda i, n, case: bar.progress(i / n, text=f"{case} ({i} of {n})"))
        bar.empty()
    rows = store.get(key)
    if rows is None:
        st.info("Press **Evaluate** to score the held-out cases (results stay for this session).")
        return
    _scores(seg, rows)
    _worst_cases(rows)


def _caption(seg, selection: dict[str, list[str]]) -> None:
    every = [r for r, cases in selection.items() if not cases]
    if every:
        st.caption(", ".join(REGIONS[r].display_name for r in every) + ": trained on every case "
                   "here, so none is held out; their held-out figures come from the same recipe "
                   "trained on one fold (*Model set*, column *held out how*).")
    st.caption(
        "Each region's model on the cases of `CXR_DATA_DIR` it did not train on ("
        + ", ".join(f"{REGIONS[r].display_name.lower()} {len(c)}" for r, c in selection.items() if c)
        + "): Jaccard, Dice and contour distances at the masks' resolution, threshold 0.5, largest "
        f"component, test-time augmentation {'on' if seg.default_tta else 'off'} (the set's default). "
        f"The same figures as `python -m cxr_dash.evaluate --models {seg.model_dir}`; about a second "
        "per case here.")


def _scores(seg, rows: dict[str, list[dict]]) -> None:
    """The summary table, its downloads and the per-case Jaccard plot."""
    summary = summarise_rows(rows)
    st.markdown(markdown_table(summary))
    per_case = [{"region": region, **row} for region, rs in rows.items() for row in rs]
    left, right = st.columns(2)
    left.download_button("Per-case scores (CSV)", rows_csv(per_case), "evaluation_per_case.csv",
                         "text/csv", key="eval_csv")
    # The evaluate tool's evaluation.json layout, so either file feeds the same analysis.
    right.download_button("Summary and per-case scores (JSON)", json_bytes(
        {"protocol": "cases: heldout", "model_sets": [str(seg.model_dir)], "threshold": 0.5,
         "test_time_augmentation": seg.default_tta, "summary": summary, "per_case": rows}),
        "evaluation.json", "application/json", key="eval_json")
    st.plotly_chart(_jaccard_figure(rows), key="eval_jaccard", theme=None)


def _worst_cases(rows: dict[str, list[dict]]) -> None:
    """The worst cases per region, one of them a click from Compare regions."""
    worst = worst_cases(rows)
    st.markdown("**Worst cases per region**")
    st.dataframe([{"Region": REGIONS[w["region"]].display_name, "Case": w["case"],
                   "Jaccard": w["jaccard"], "Missed (% of truth)": 100 * w["missed_fraction"],
                   "Added (% of truth)": 100 * w["extra_fraction"], "HD95 (mm)": w["hd95_mm"]}
                  for w in worst], hide_index=True,
                 column_config={k: st.column_config.NumberColumn(format=f) for k, f in (
                     ("Jaccard", "%.3f"), ("Missed (% of truth)", "%.1f"),
                     ("Added (% of truth)", "%.1f"), ("HD95 (mm)", "%.2f"))})
    labels = {f"{REGIONS[w['region']].display_name} · {w['case']} ({w['jaccard']:.3f})": w for w in worst}
    chosen = labels[st.selectbox("Case to inspect", list(labels), key="eval_case")]
    st.button("Open in Compare regions, errors shown", key="eval_open", on_click=_open_case,
              args=(chosen["case"],))


def _open_case(case_id: str) -> None:
    # A callback runs before the next rerun builds the sidebar, so these become the
    # widgets' values there: the case, its view and the error overlay.
    st.session_state.update({"source": "Dataset case", "case": case_id, "view": "Compare regions",
                             "compare_overlay": compare.DIFFERENCE})


def _jaccard_figure(rows: dict[str, list[dict]]):
    """Per-case Jaccard by region, each point a case (hover: its id)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for region, rs in rows.items():
        r = REGIONS[region]
        fig.add_trace(go.Box(
            y=[row["jaccard"] for row in rs], name=r.display_name, text=[row["case"] for row in rs],
            boxpoints="all", jitter=0.4, pointpos=0, marker=dict(color=r.hex_colour, size=5),
            line=dict(color=r.hex_colour), hovertemplate="%{text}: %{y:.3f}<extra></extra>"))
    lowest = min((row["jaccard"] for rs in rows.values() for row in rs), default=0.0)
    fig.update_layout(height=380, margin=dict(l=60, r=10, t=40, b=30), showlegend=False,
                      yaxis=dict(title="Jaccard", range=[max(0.0, float(np.floor(lowest * 10) / 10)), 1.0]),
                      title="Per-case Jaccard (each point a held-out case)")
    return fig
