"""Position or anatomy? Whether each model follows the anatomy when the image moves, or
draws its region where it usually lies (``cxr_dash.position``), on the current image."""
from __future__ import annotations

import streamlit as st

from cxr_dash import position as pos
from cxr_dash.regions import REGIONS

from .. import state
from ..context import Context
from ..widgets import colour_chip

KEPT = 8        # position reports kept per session


def render(ctx: Context) -> None:
    st.caption("Does each model follow the anatomy when the image moves, or draw its region where "
               "it usually lies? Tests: translation, zoom, flip, content removal, occlusion inside vs "
               "outside the region and, for dataset cases, the training atlas. "
               "Dataset-wide: `python -m cxr_dash.position --out results/position`.")
    chosen = st.multiselect("Regions", list(ctx.regions), default=list(ctx.regions), key="pos_regions",
                            format_func=lambda r: REGIONS[r].display_name)
    with_occlusion = st.checkbox("Include occlusion (slower)", True, key="pos_occ")
    store = st.session_state.setdefault("position", {})
    key = (ctx.model_key, ctx.image.key, tuple(chosen), with_occlusion)
    if st.button("Run position tests", type="primary", disabled=not chosen):
        state.remember(store, key, _run_tests(ctx, chosen, with_occlusion), KEPT)
    reports = store.get(key)
    if not reports:
        st.info("**Run position tests** for the regions chosen: about a minute per region on "
                "2 CPU cores (more at 384 px, and with occlusion).")
        return
    for col, (region, rep) in zip(st.columns(len(reports)), reports.items()):
        with col:
            _report(ctx, region, rep)
    _figures(reports)


def _run_tests(ctx: Context, chosen: list[str], with_occlusion: bool) -> dict:
    """{region: PositionReport}; with a dataset case, also its training atlas test."""
    bar = st.progress(0.0, text="Testing…")
    reports = {}
    ds = state.dataset()
    for i, region in enumerate(chosen):
        atlas = truth = None
        if ctx.image.truth and ds is not None:
            atlas = _training_atlas(ctx.model_key, region, ctx.seg, ds)
            truth = ctx.seg.prepare_mask(ctx.image.truth[region], region)
        with (state.model_slot(f"the {REGIONS[region].display_name.lower()} position tests"),
              ctx.seg.run_of_calls(region) as predict):
            reports[region] = pos.run_all(predict, ctx.seg.prepare(ctx.image.pixels, region),
                                          region, atlas, truth, occlusion=with_occlusion)
        bar.progress((i + 1) / len(chosen), text=f"{REGIONS[region].display_name} done")
    bar.empty()
    return reports


def _number(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.2f}"   # NaN: nothing predicted


def _report(ctx: Context, region: str, rep) -> None:
    """One region's column: verdict, indices, atlas and flip tests, evidence."""
    s = rep.summary
    st.markdown(colour_chip(region), unsafe_allow_html=True)
    st.metric("Verdict", s["verdict"])
    st.metric("Anatomy-following index", f"{s['anatomy_following_index']:+.2f}",
              help="+1: the mask follows shifted and zoomed anatomy; -1: it stays put.")
    st.metric("Content-free Dice", _number(s["phantom_dice"]),
              help="Overlap of the prediction on a blank/grey/noise input with the real one.")
    st.metric("Region-removed Dice",
              f"{_number(s['region_inpainted_dice'])} / {_number(s['region_blurred_dice'])}",
              help="Inpainted / blurred: Dice with the real prediction when only the "
                   "region is inpainted from its surroundings, or blurred away. Its "
                   "neighbours remain, so a mask drawn there comes from context (or "
                   "the blurred remnant). Evidence, not part of the verdict.")
    if rep.occlusion:
        st.metric("Occlusion enrichment", f"{rep.occlusion['enrichment']:.1f}x",
                  help="Share of occlusion sensitivity inside the region over its area share.")
    if rep.atlas:
        _atlas(ctx, region, rep.atlas)
    flip = rep.flip
    st.caption(f"Horizontal flip: the new mask overlaps the mirrored mask at Dice "
               f"{flip['follows_mirrored_anatomy']:.2f} (follows the anatomy) and the "
               f"original one at {flip['stays_on_its_side']:.2f} (stays on its side).")
    with st.expander("Evidence"):
        st.write("\n".join(f"- {e}" for e in s["evidence"]))


def _atlas(ctx: Context, region: str, atlas: dict) -> None:
    st.metric("Atlas vs model Jaccard", f"{atlas['atlas_jaccard']:.2f} / {atlas['model_jaccard']:.2f}",
              help="The atlas: the mean mask of the model's training cases.")
    if ctx.image.case_id and region in ctx.seg.regions_trained_on(ctx.image.case_id):
        st.caption(f"{ctx.image.case_id} is one of this model's training cases: its "
                   "mask is part of the atlas, which flatters both.")
    nearer = atlas["nearer_atlas_than_truth"]
    st.caption(("Prediction sits **nearer the atlas** than the ground truth does"
                if nearer else "Prediction sits nearer the ground truth than the atlas")
               + f" (Dice with the atlas {atlas['pred_to_atlas_dice']:.2f}, truth's "
               f"{atlas['truth_to_atlas_dice']:.2f}).")


def _figures(reports: dict) -> None:
    import matplotlib.pyplot as plt

    # The curves fill the width (one column per region); the bar chart is
    # drawn for ~800 px and shown at that size, so its text matches.
    for figure, width in ((pos.figure_transform_curves, "stretch"), (pos.figure_content_removal, 800)):
        fig = figure(reports)
        st.pyplot(fig, width=width)
        plt.close(fig)   # pyplot keeps every figure alive until closed
    st.caption("Laterality is partly positional by nature: a mirrored left lung looks like a right "
               "lung, so the flip test describes, it does not judge.")


@st.cache_data(max_entries=4, show_spinner=False)
def _training_atlas(model_key: str, region: str, _seg, _ds):
    """Mean training mask of a region (needs CXR_DATA_DIR; never stored in the project)."""
    from cxr_dash.data import pack
    from cxr_dash.position import atlas_from_masks
    from cxr_dash.regions import REGION_KEYS

    cases = _seg.entry(region).get("training", {}).get("cases") or _ds.cases_with_masks()
    masks = pack(_ds, cases, _seg.input_size(region),
                 view=_seg.view(region))["masks"][:, REGION_KEYS.index(region)]
    return atlas_from_masks(masks)
