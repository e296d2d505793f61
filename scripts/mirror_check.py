"""How often the app's mirror warning fires: on SCR cases as they are, and mirrored.

    CXR_DATA_DIR=... python scripts/mirror_check.py [--models weights] [--cases N]

The lung models follow the anatomy, so a left-right mirrored radiograph
passes the side check; `quality.plausibility_warnings` flags it from the
heart's position instead (README, *What the app does*). This runs the heart
and lung models on every case (or the first N) as stored and mirrored, the
way the app does (threshold 0.5, largest component), and counts the cases
whose warnings say "mirrored". The first count is false alarms, the second
detections. Both sets of cases count, including the ones the models trained
on: the rule was read off the reference masks of all 200 cases.
"""
from __future__ import annotations

import sys

REGIONS = ("heart", "left_lung", "right_lung")   # all the mirror check reads


def main(argv=None):
    from cxr_dash.cli import measurement_setup
    from cxr_dash.quality import plausibility_warnings

    args, seg, dataset = measurement_setup(__doc__.splitlines()[0], argv, "only the first N cases",
                                           default_cases=None, regions=REGIONS)
    cases = dataset.cases_with_masks()[:args.cases]
    flagged = {"as stored": [], "mirrored": []}
    for i, case_id in enumerate(cases, 1):
        image = dataset.load_image(case_id).pixels
        for how, pixels in (("as stored", image), ("mirrored", image[:, ::-1])):
            probs = seg.predict(pixels)
            warnings = plausibility_warnings(pixels, seg.masks(probs), probs)
            if any("mirrored" in w for w in warnings):
                flagged[how].append(case_id)
        print(f"{i}/{len(cases)} {case_id}: " + ", ".join(f"{k} {len(v)}" for k, v in flagged.items()),
              file=sys.stderr, flush=True)
    print(f"mirror warning on {len(cases)} cases: as stored {len(flagged['as stored'])} "
          f"(false alarms: {', '.join(flagged['as stored']) or 'none'}), "
          f"mirrored {len(flagged['mirrored'])}")
    missed = sorted(set(cases) - set(flagged["mirrored"]))
    print(f"mirrored and not flagged: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    main()
