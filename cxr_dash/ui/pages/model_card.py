"""Model set: the manifest as a table, one row per region model: its held-out scores
beside the published ones, then how it was trained and stored."""
from __future__ import annotations

import streamlit as st

from cxr_dash.regions import REGIONS

from ..context import Context

_number = st.column_config.NumberColumn
COLUMNS = {
    "held-out Jaccard (1024)": _number(format="%.3f", help="Mean over the cases this model "
                                       "did not train on, at the masks' 1024 x 1024"),
    "target": _number(format="%.2f", help="This project's Jaccard target"),
    "human observer": _number(format="%.3f", help="Jaccard of the SCR database's second "
                              "observer against the first (van Ginneken et al. 2006)"),
    "best published": _number(format="%.3f", help="Best published Jaccard under the SCR protocol"),
    "held-out Dice": _number(format="%.3f"),
    "MCD (mm)": _number(format="%.2f", help="Mean contour distance"),
    "HD95 (mm)": _number(format="%.2f", help="95th-percentile Hausdorff distance"),
    "learning rate": _number(format="%.2e", help="Of the last training stage"),
    "int8 vs float IoU": _number(format="%.4f", help="Masks of the stored int8 model against "
                                 "the float model it came from"),
    "int8 rounding": st.column_config.TextColumn(help="Of the export the train tool kept: "
                                                 "nearest, or stochastic where that agreed better "
                                                 "(a short fine-tune)"),
}


def render(ctx: Context) -> None:
    """(Display settings do not apply.)"""
    seg = ctx.seg
    m = seg.manifest
    if m.get("label"):
        st.info(m["label"])
    st.markdown(f"**Architecture**: {m.get('architecture')} · **weights**: {m.get('weights_format')} "
                f"· folder `{seg.model_dir}`")
    st.dataframe([_row(seg, region) for region in seg.regions], hide_index=True,
                 column_config=COLUMNS)
    st.caption("Reproduce the held-out figures: `python -m cxr_dash.evaluate --models weights` "
               "(CXR_DATA_DIR set). Training: `python -m cxr_dash.train --help`.")
    with st.expander("manifest.json (set-level fields)"):
        st.json({k: v for k, v in m.items() if k != "regions"}, expanded=True)


def _row(seg, region: str) -> dict:
    """A region's manifest entry: results first (what the table is read for), how they
    were made after."""
    e = seg.entry(region)
    t, met = e.get("training", {}), e.get("metrics", {})
    held = met.get("heldout_1024", {})
    # Input size per training stage: "128 → 256" for a fine-tuned model.
    sizes = [s["input_size"] for s in t.get("earlier_stages", [])] + [e.get("input_size")]
    hp = e.get("hyperparameters", {})
    anchors = REGIONS[region].anchors
    return {
        "region": REGIONS[region].display_name,
        "held-out Jaccard (1024)": held.get("jaccard", {}).get("mean"),
        "target": anchors.target if anchors else None,
        "human observer": anchors.human_observer if anchors else None,
        "best published": anchors.best_published if anchors else None,
        "held-out Dice": held.get("dice", {}).get("mean"),
        "MCD (mm)": held.get("mean_contour_distance_mm", {}).get("mean"),
        "HD95 (mm)": held.get("hd95_mm", {}).get("mean"),
        "held-out cases": held.get("n"),
        "input px": " → ".join(map(str, sizes)), "field of view": seg.view(region).describe(),
        "optimizer": hp.get("optimizer"), "learning rate": hp.get("learning_rate"),
        "batch": hp.get("batch_size"), "fold": t.get("fold"),
        "train cases": len(t.get("cases", [])), "epochs": t.get("epochs_run"),
        "device": t.get("device"), "int8 vs float IoU": met.get("int8_vs_float_mask_iou"),
        # Exports before the choice of rounding existed all used nearest rounding.
        "int8 rounding": met.get("int8_rounding", "nearest")}
