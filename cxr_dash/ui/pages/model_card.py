"""Model set: the manifest as a table, one column per region model: its held-out scores
beside the published ones, then how it was trained and stored."""
from __future__ import annotations

import streamlit as st

from cxr_dash.regions import REGIONS

from ..context import Context

# (format, what it means) of the table's fields that need either.
FIELDS = {
    "held-out Jaccard (1024)": ("%.3f", "Mean over the cases this model did not train on, at the "
                                "masks' 1024 x 1024"),
    "target": ("%.2f", "This project's Jaccard target"),
    "human observer": ("%.3f", "Jaccard of the SCR database's second observer against the first "
                       "(van Ginneken et al. 2006)"),
    "best published": ("%.3f", "Best published Jaccard under the SCR protocol"),
    "held-out Dice": ("%.3f", None),
    "Shenzhen lungs": ("%.3f", "Lungs (left | right) on 226 radiographs of another hospital, "
                       "against its lung masks (cxr-dash evaluate --external); shown for both lungs"),
    "held out how": (None, "Where the held-out figures come from: the model's own unseen cases, "
                     "or, for a model trained on every case, the same recipe trained on one fold"),
    "MCD (mm)": ("%.2f", "Mean contour distance"),
    "HD95 (mm)": ("%.2f", "95th-percentile Hausdorff distance"),
    "learning rate": ("%.2e", "Of the last training stage"),
    "int8 vs float IoU": ("%.4f", "Masks of the stored int8 model against the float model it "
                          "came from"),
    "int8 rounding": (None, "Of the export the train tool kept: nearest, or stochastic where that "
                      "agreed better (a short fine-tune)"),
}


def render(ctx: Context) -> None:
    """(Display settings do not apply.)"""
    seg = ctx.seg
    m = seg.manifest
    if m.get("label"):
        st.info(m["label"])
    st.markdown(f"**Architecture**: {m.get('architecture')} · **weights**: {m.get('weights_format')} "
                f"· folder `{seg.model_dir.name}` · **forward passes**: {seg.describe_engine()} "
                "(`CXR_ENGINE`)")
    # One column per region, one row per field: five columns fit any page, and a static
    # table wraps long values (a stage chain, a field of view) where a grid of 24
    # columns scrolled most of them out of sight.
    st.table(model_table([_row(seg, region) for region in seg.regions]))
    st.markdown("  \n".join(f"**{name}**: {what}." for name, (_, what) in FIELDS.items() if what))
    st.caption("Reproduce the held-out figures: `cxr-dash evaluate --models weights` "
               "(CXR_DATA_DIR set); the external ones: `cxr-dash evaluate --external DIR`. "
               "Training: `cxr-dash train --help`. *Hyperparameters used* are those of the "
               "model's last training stage; *the study's* are what the original study chose "
               "by cross-validation, shown for comparison.")
    with st.expander("manifest.json (set-level fields)"):
        st.json({k: v for k, v in m.items() if k != "regions"}, expanded=True)


def model_table(rows: list[dict]):
    """The rows of :func:`_row` turned on their side: a DataFrame whose index is the
    fields (in their order) and whose columns are the regions, values as text."""
    import pandas as pd

    def text(field: str, value) -> str:
        if value is None:
            return "—"
        fmt = FIELDS.get(field, (None, None))[0]
        return fmt % value if fmt and isinstance(value, (int, float)) else str(value)

    fields = [k for k in rows[0] if k != "region"]
    return pd.DataFrame({row["region"]: [text(f, row[f]) for f in fields] for row in rows},
                        index=pd.Index(fields, name="field"))


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
        "held out how": held.get("protocol", "cases this model did not train on"),
        "Shenzhen lungs": met.get("external", {}).get("shenzhen", {}).get("jaccard"),
        "preprocessing": (e.get("preprocessing") or {}).get("intensity", "percentile"),
        "augmentation": t.get("augment_preset", "standard"),
        "input px": " → ".join(map(str, sizes)), "field of view": seg.view(region).describe(),
        "optimizer": hp.get("optimizer"), "learning rate": hp.get("learning_rate"),
        "batch": hp.get("batch_size"), "fold": t.get("fold"),
        "train cases": len(t.get("cases", [])), "epochs": t.get("epochs_run"),
        "device": t.get("device"), "int8 vs float IoU": met.get("int8_vs_float_mask_iou"),
        # Exports before the choice of rounding existed all used nearest rounding.
        "int8 rounding": met.get("int8_rounding", "nearest")}
