import pytest

from cxr_dash.regions import REGION_KEYS, REGIONS, get_region


def test_registry_holds_the_five_scr_structures_in_api_order():
    assert REGION_KEYS == ("heart", "left_clavicle", "left_lung", "right_clavicle", "right_lung")


def test_defaults_are_the_study_table():
    table = {"heart": ("sgd", 0.07879), "left_clavicle": ("sgd", 0.1), "left_lung": ("sgd", 0.00358),
             "right_clavicle": ("rmsprop", 0.00035), "right_lung": ("sgd", 0.00139)}
    for key, (opt, lr) in table.items():
        hp = REGIONS[key].study
        assert (hp.optimizer, hp.learning_rate, hp.batch_size) == (opt, lr, 1)


def test_colours_are_distinct_and_counterparts_are_symmetric():
    assert len({r.colour for r in REGIONS.values()}) == 5
    for r in REGIONS.values():
        if r.counterpart:
            assert REGIONS[r.counterpart].counterpart == r.key


@pytest.mark.parametrize("spelling", ["left lung", "Left-Lung", "left_lung"])
def test_region_lookup_accepts_scr_folder_spellings(spelling):
    assert get_region(spelling).key == "left_lung"


def test_unknown_region_is_refused():
    with pytest.raises(KeyError, match="unknown region"):
        get_region("spleen")


def test_each_region_is_judged_against_the_issue_s_anchors():
    # Lungs / heart / clavicles: human observer, best published (SCR protocol), target.
    expected = {"lung": (0.946, 0.961, 0.96), "heart": (0.878, 0.906, 0.91),
                "clavicle": (0.896, 0.868, 0.90)}
    for r in REGIONS.values():
        a = r.anchors
        assert (a.human_observer, a.best_published, a.target) == expected[r.key.split("_")[-1]]


def test_evaluation_table_puts_the_anchors_beside_each_result():
    from cxr_dash.evaluate import markdown_table

    stat = {"mean": 0.9, "sd": 0.01, "n": 3}
    keys = ("jaccard", "dice", "mean_contour_distance_mm", "hd95_mm", "jaccard_raw")
    errors = {"missed_fraction": {"mean": 0.052, "sd": 0.01, "n": 3},
              "extra_fraction": {"mean": 0.031, "sd": 0.01, "n": 3}}
    table = markdown_table({"heart": {**{k: stat for k in keys}, **errors},
                            "right_clavicle": {**{k: stat for k in keys}, **errors}})
    header, _, heart, clavicle = table.strip().splitlines()
    assert "human observer" in header and "best published" in header
    assert "| 5.2 / 3.1 |" in heart
    assert heart.endswith("| 3 | 0.91 | 0.878 | 0.906 |")
    assert clavicle.endswith("| 3 | 0.90 | 0.896 | 0.868 |")
