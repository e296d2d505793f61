"""Hyper-parameter search: a tuning study's trials (``python -m cxr_dash.tune``), the
published combination beside the best one found."""
from __future__ import annotations

import os

import numpy as np
import streamlit as st

from cxr_dash.regions import REGIONS

from ..context import Context

SETTINGS = ("optimizer", "learning_rate", "batch_size", "loss", "epochs")


def render(ctx: Context) -> None:
    from cxr_dash.tune import settings_summary

    exports, folders = _exports()
    if not exports:
        st.info("No hyper-parameter search found (looked in "
                + ", ".join(f"`{f}`" for f in dict.fromkeys(folders)) + "). Run "
                "`python -m cxr_dash.tune --region heart --folds 2 --trials 20`.")
        return
    region = st.selectbox("Region", [r for r in ctx.seg.regions if r in exports] or list(exports),
                          format_func=lambda r: REGIONS[r].display_name, key="search_region")
    payload = exports[region]
    trials = [t for t in payload["trials"] if t.get("learning_rate") is not None]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    st.caption(f"Study `{payload['study']}`: {len(trials)} trials, {len(done)} complete, "
               f"{sum(t['state'] == 'PRUNED' for t in trials)} pruned; exported {payload['exported']}.  \n"
               f"Trials scored under: {settings_summary(payload.get('settings'))}.")
    as_run = next((t for t in trials if t.get("source") == "study table"), None)
    points = [{**t, "trial": "complete" if t["state"] == "COMPLETE" else "pruned (last IoU)"}
              for t in trials if t.get("value") is not None]
    if not points:
        st.info("No trial of this study has reported an IoU yet.")
    else:
        st.plotly_chart(_trials_figure(points, as_run), key="search_scatter")
    _settings_table(payload, as_run)
    _beside_the_shipped_model(ctx, region, payload)


def _beside_the_shipped_model(ctx: Context, region: str, payload: dict) -> None:
    """Why the search's best IoU sits far below the shipped model's held-out Jaccard."""
    best = (payload.get("best") or {}).get("value")
    if best is None or region not in ctx.seg.regions:
        return
    entry = ctx.seg.entry(region)
    training = entry.get("training", {})
    shipped = entry.get("metrics", {}).get("heldout_1024", {}).get("jaccard", {}).get("mean")
    settings = payload.get("settings") or {}
    trial = payload["best"]
    sizes = [s.get("input_size") for s in training.get("earlier_stages", [])] + [entry.get("input_size")]
    searched = (f"{settings['input_size']} px inputs" if settings.get("input_size")
                else "at the search's own input size, not stored for this study")
    cases = (f", at most {settings['max_train_cases']} training cases per fold"
             if settings.get("max_train_cases") else "")
    text = (f"**Why the best trial scores {best:.3f}"
            + (f" and the shipped model {shipped:.3f}" if shipped is not None else "") + ".** "
            f"Each trial was a short run ({trial.get('epochs', '?')} epochs, {searched}{cases}) "
            "scored by mean IoU over the search's validation folds, a ranking of settings that "
            "costs minutes a trial. The shipped model is another run altogether: "
            f"{training.get('epochs_run', '?')} epochs in stages of "
            f"{' → '.join(str(x) for x in sizes if x)} px, on "
            f"{len(training.get('cases', [])) or '?'} cases, scored by Jaccard at 1024 px on cases "
            "it did not train on. Other size, schedule and data: compare trials with each other, "
            "not with the shipped figure.")
    st.caption(text)


def _exports() -> tuple[dict, list[str]]:
    """({region: exported study}, the folders looked in): ``$CXR_TUNE_DIR`` (or
    results/tune), then the project's results/tune and weights/search."""
    from cxr_dash.manifest import PROJECT_ROOT
    from cxr_dash.tune import load_exports

    folders = [os.environ.get("CXR_TUNE_DIR") or "results/tune", str(PROJECT_ROOT / "results" / "tune"),
               str(PROJECT_ROOT / "weights" / "search")]
    exports: dict = {}
    for folder in folders:
        for region, payload in load_exports(folder).items():
            exports.setdefault(region, payload)
    return exports, folders


def _trials_figure(points: list[dict], as_run: dict | None):
    """Mean IoU over learning rate, by optimiser. Pruned trials too (open markers, at the
    last IoU they reached): they show where the search stopped looking, which a plot of
    finished trials hides."""
    import plotly.express as px

    fig = px.scatter(points, x="learning_rate", y="value", color="optimizer", log_x=True,
                     symbol="trial", symbol_map={"complete": "circle",
                                                 "pruned (last IoU)": "circle-open"},
                     color_discrete_map={"sgd": "#1f77b4", "rmsprop": "#ff7f0e", "adam": "#2ca02c"},
                     hover_data=["number", "batch_size", "loss", "epochs"],
                     labels={"learning_rate": "learning rate", "value": "mean IoU over folds"})
    if as_run and as_run.get("value") is not None:
        fig.add_annotation(x=np.log10(as_run["learning_rate"]), y=as_run["value"],
                           text="study's combination", showarrow=True, arrowhead=2, ax=40, ay=-30)
    fig.update_traces(marker=dict(size=10, line=dict(width=1.5)))
    fig.update_xaxes(dtick=1, minor=dict(ticks="outside", showgrid=False), tickformat=".0e")
    fig.update_layout(height=380, margin=dict(l=0, r=0, t=10, b=0))
    return fig


def _settings_table(payload: dict, as_run: dict | None) -> None:
    """The published settings, the study's combination as run and the best trial found."""
    best, published = payload.get("best"), payload.get("published", {})
    # The study trained every region with BCE + Jaccard (its table lists no loss).
    rows = [{"": "published (study)", **{k: published.get(k) for k in SETTINGS},
             "loss": published.get("loss", "bce_jaccard"), "mean IoU": None}]
    if as_run:
        # The search space may not hold the published value (batch 1 among 4, 8, 16):
        # the enqueued trial then ran the nearest one, and its IoU belongs to that.
        rows.append({"": f"study's combination as run (trial {as_run['number']})",
                     **{k: as_run.get(k) for k in SETTINGS}, "mean IoU": as_run.get("value")})
    if best:
        rows.append({"": f"best found (trial {best.get('number')})", **{k: best.get(k) for k in SETTINGS},
                     "mean IoU": best.get("value")})
    text = ("optimizer", "loss")     # numbers stay numbers (empty cell when unknown)
    st.dataframe([{k: ("—" if v is None and k in text else v) for k, v in row.items()} for row in rows],
                 hide_index=True, column_config={
                     "learning_rate": st.column_config.NumberColumn("learning rate", format="%.2e"),
                     "batch_size": st.column_config.NumberColumn("batch"),
                     "mean IoU": st.column_config.NumberColumn(format="%.3f")})
