"""The per-region quality estimate: its features on hand-made maps, the
regression, and on the shipped set a degraded radiograph estimated lower
than the clean one."""
import numpy as np
import pytest

from cxr_dash.manifest import DEFAULT_MODEL_DIR
from cxr_dash.quality_estimate import (FEATURES, QUALITY_FILE, QualityModel, fit_ridge,
                                       perturbed_size, shape_features)


def _disk(side=256, r=60, cx=128, cy=128):
    yy, xx = np.mgrid[:side, :side]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.float32)


def test_a_solid_smooth_mask_scores_solid_and_smooth():
    f = shape_features(_disk() * 0.98)
    assert f["solidity"] > 0.97 and f["roughness"] < 1.1      # a pixel staircase: ~1.05
    assert f["outside_largest"] == 0 and f["hole_share"] == 0 and f["empty"] == 0
    assert f["uncertain_share"] == 0


def test_fragments_holes_and_uncertainty_are_seen():
    prob = _disk() * 0.95
    prob[120:136, 120:136] = 0.0                     # a hole
    prob += _disk(r=12, cx=230, cy=30) * 0.95        # a detached piece
    prob[60:200, 60:70] = 0.55                       # an uncertain band
    f = shape_features(prob)
    assert f["outside_largest"] > 0.02 and f["hole_share"] > 0.01 and f["uncertain_share"] > 0.05
    ragged = _disk()
    ragged[::4, :] *= (np.arange(256) % 8 < 4)       # a jagged edge
    assert shape_features(ragged)["roughness"] > shape_features(_disk())["roughness"]
    assert shape_features(np.zeros((256, 256), np.float32))["empty"] == 1


def test_the_ridge_regression_follows_its_feature_and_stays_in_range():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 2.0, size=(200, len(FEATURES)))      # features are shares, ratios: >= 0
    jaccard = 1 / (1 + np.exp(-(0.5 + 1.2 * x[:, 0])))
    model = QualityModel({"heart": fit_ridge(x, jaccard)}, {})
    est = np.array([model.estimate("heart", row) for row in x])
    assert np.corrcoef(est, jaccard)[0, 1] > 0.95 and 0 < est.min() and est.max() < 1
    assert perturbed_size(256) == 192 and perturbed_size(384) == 256 and perturbed_size(512) == 352


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / QUALITY_FILE).is_file(), reason="no fitted estimate shipped")
def test_a_squashed_or_blacked_out_radiograph_is_estimated_lower(dataset):
    import cv2

    from cxr_dash import load_segmenter
    from cxr_dash.metrics import jaccard

    seg = load_segmenter()
    trained = set().union(*(seg.training_cases(r) for r in ("heart", "left_clavicle")))
    case = dataset.load_case(next(c for c in dataset.cases_with_masks() if c not in trained))
    clean = seg.estimate_quality(case.image)
    assert all(0 <= q <= 1 for q in clean.values())
    assert min(clean["left_lung"], clean["right_lung"]) > 0.85
    squashed = cv2.resize(case.image, (case.image.shape[1], case.image.shape[0] // 2),
                          interpolation=cv2.INTER_AREA)
    blacked = case.image.copy()
    blacked[case.masks["left_lung"] | case.masks["right_lung"]] = case.image.min()
    lungs = ("left_lung", "right_lung")
    squashed_truth = {r: cv2.resize(case.masks[r].astype(np.uint8), squashed.shape[::-1],
                                    interpolation=cv2.INTER_NEAREST) > 0 for r in lungs}
    # The lungs, trained with aspect changes, still segment a squashed radiograph well:
    # its estimate must be lower than the clean one's and follow the real Jaccard; lungs
    # blacked out must be estimated as lost.
    for degraded, truth in ((squashed, squashed_truth), (blacked, case.masks)):
        q = seg.estimate_quality(degraded)
        masks = seg.masks(seg.predict(degraded))
        assert np.mean([q[r] for r in lungs]) < np.mean([clean[r] for r in lungs])
        for r in lungs:
            assert abs(q[r] - jaccard(masks[r], truth[r])) < 0.1, (r, q[r])
    assert max(seg.estimate_quality(blacked)[r] for r in lungs) < 0.5


def test_a_set_without_a_fitted_estimate_says_so_instead_of_guessing(tiny_model_set):
    from cxr_dash.inference import Segmenter

    seg = Segmenter(tiny_model_set, regions=("heart",))
    image = np.random.default_rng(0).integers(0, 255, (128, 128)).astype(np.uint8)
    assert seg.estimate_quality(image) == {"heart": None}
