"""The measurement scripts' own computations (scripts/ is not a package: imported by path)."""
import importlib.util
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FirstChannel:
    """A stand-in model whose output is its input's first channel: whatever the
    transform, warping its output back must give the untransformed image."""

    def predict_on_batch(self, batch):
        return batch[..., :1]


def test_geometric_tta_warps_each_pass_back_onto_the_plain_grid():
    geometric_tta = load_script("geometric_tta")
    size = 64
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = (0.5 + 0.25 * np.sin(xx / 7.0) + 0.2 * np.cos(yy / 5.0) + 0.002 * xx).astype(np.float32)
    x = np.repeat(image[..., None], 3, axis=2)
    transforms = sorted({t for ts in geometric_tta.VARIANTS.values() for t in ts})
    back = geometric_tta.model_space_passes(FirstChannel(), x, transforms)
    assert set(back) == set(transforms)
    for t, (out, defined) in back.items():
        inside = defined > 0.999
        # zoomed-in passes lose the margin they pushed out of the frame; the rest is defined
        assert inside.mean() > (0.75 if t[1] > 1 else 0.9), t
        inner = inside.copy()
        inner[:4], inner[-4:], inner[:, :4], inner[:, -4:] = False, False, False, False
        assert np.abs(out - image)[inner].max() < 0.05, t   # bilinear there and back
    # a pass that lands in the wrong place would differ far more than interpolation
    assert np.abs(np.roll(image, 3, axis=1) - image)[8:-8, 8:-8].max() > 0.1


def test_ctr_check_summarises_the_differences_where_both_ratios_exist():
    ctr_check = load_script("ctr_check")
    s = ctr_check.summary([("a", 0.49, 0.48), ("b", None, 0.50), ("c", 0.40, 0.43)])
    assert (s["n"], s["unmeasured"], s["within_target"]) == (2, 1, 1)
    assert np.isclose(s["mean_abs"], 0.02) and np.isclose(s["bias"], -0.01)
    assert s["worst"][0][0] == "c" and np.isclose(s["truth_mean"], 0.455)
