"""Speed and memory on this machine, against the goals of the dashboard's speed issue.

    CXR_DATA_DIR=../shared/data/scr python scripts/benchmark.py [--models weights]
        [--engine openvino|keras] [--repeats 3] [--region left_lung] [--skip-page]

Each figure is the median of ``--repeats`` runs (``predict``: of 2 x repeats + 1),
printed with the machine's core count and whatever else was running:

- fresh process to its first 5-region prediction: a new Python process that runs
  ``seg = load_segmenter(); seg.predict(image)``, timed from its start (interpreter
  and imports included) with the engine's converted models already in the cache;
  a conversion (after new weights) is timed separately, once;
- page with the uploader after ``streamlit run app.py``: from starting the server
  to the end of the first script run that sends the uploader (what a browser shows),
  and from an upload sent right then to its rendered Overview (models loading in
  the background meanwhile);
- ``predict`` of all regions on a 1024 x 1024 radiograph, and with masks;
- Grad-CAM of one region (the first call, which builds its Keras model, apart),
  once each Grad-CAM++, LayerCAM, Score-CAM and SmoothGrad;
- occlusion of one region with the app's default settings;
- memory (RSS, and the peak) of a fresh process after a segmentation, the quality
  estimate and a Grad-CAM; and of a process serving one dashboard session (AppTest)
  through its Overview and a Grad-CAM from the Explain page.

Uses a real case (JPCLN034) from CXR_DATA_DIR when set, else a synthetic image.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxr_dash.engine import ENGINES

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20

GOALS = {"fresh": 6.0, "page": 5.0, "predict": 0.6, "gradcam": 2.0, "occlusion": 20.0}
STRETCH = {"fresh": 3.0, "page": 2.0, "predict": 0.4, "gradcam": 1.0, "occlusion": 10.0}
MEMORY_GOAL_MB = 1536


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def others_running() -> str:
    """Training runs, the load average and the other processes busy on the cores: what
    else competed with the figures (a training run is ``cxr-dash train`` or
    ``python -m cxr_dash.train``)."""
    found = subprocess.run(["pgrep", "-af", r"cxr[-_]dash[ .]train"], capture_output=True,
                           text=True).stdout
    load = os.getloadavg()
    busy = [line.split(" ", 1)[1][:60] for line in found.splitlines()
            if line.strip() and " -af " not in line]
    ps = subprocess.run(["ps", "-eo", "pid=,ni=,pcpu=,args=", "--sort=-pcpu"], capture_output=True,
                        text=True).stdout.splitlines()
    mine = {os.getpid(), os.getppid()}
    top = [f"{p[0]} (nice {p[1]}, {p[2]}% CPU) {p[3][:50]}" for p in (line.split(None, 3) for line in ps)
           if len(p) == 4 and int(p[0]) not in mine and float(p[2]) >= 10.0][:3]
    return (f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
            + (f"ALSO RUNNING: {'; '.join(busy)}" if busy else "no training process")
            + (f"; busy: {'; '.join(top)}" if top else ""))


def median(times) -> float:
    return statistics.median(times)


def fmt(times) -> str:
    return (f"median {median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, "
            f"n={len(times)})")


def verdict(name: str, value: float) -> str:
    goal, stretch = GOALS[name], STRETCH[name]
    return (f"[goal <= {goal:g} s, stretch {stretch:g} s: "
            f"{'stretch met' if value <= stretch else 'met' if value <= goal else 'NOT MET'}]")


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, times


FRESH_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np

from cxr_dash.engine import ENGINES
image = np.load(sys.argv[1])
from cxr_dash import load_segmenter
t1 = time.perf_counter()
seg = load_segmenter(sys.argv[2] or None, engine=sys.argv[3] or None)
t2 = time.perf_counter()
probs = seg.predict(image)
t3 = time.perf_counter()
assert len(probs) == len(seg.regions) == 5, seg.regions
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "predict": t3 - t2, "engine": seg.engine}))
"""

MEMORY_CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np

from cxr_dash.engine import ENGINES
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
image = np.load(sys.argv[1])
from cxr_dash import load_segmenter
from cxr_dash.explain import explain
seg = load_segmenter(sys.argv[2] or None, engine=sys.argv[3] or None)
loaded = status("VmRSS")
probs = seg.predict(image, one_piece_at=None)
seg.estimate_quality(image, probs)
after_predict = status("VmRSS")
explain(seg, image, sys.argv[4], "gradcam")
print(json.dumps({"loaded": loaded, "after_predict": after_predict, "after_gradcam": status("VmRSS"),
                  "peak": status("VmHWM")}))
"""

# One dashboard session in one process (AppTest runs the script as the server does):
# upload, Overview, then a Grad-CAM from the Explain page.
APP_MEMORY_CHILD = r"""
import json, sys
from pathlib import Path
from streamlit.testing.v1 import AppTest
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
at = AppTest.from_file(sys.argv[1], default_timeout=300).run()
at.sidebar.file_uploader(key="upload").set_value((Path(sys.argv[2]).name, Path(sys.argv[2]).read_bytes(),
                                                  "image/png"))
at.run()
segmented = status("VmRSS")
at.sidebar.radio(key="view").set_value("Explain").run()
at.button[0].click().run()
assert not at.exception, at.exception
assert any(c.startswith("Grad-CAM") for image in at.get("image") for c in image.captions)
print(json.dumps({"after_segmentation": segmented, "after_gradcam": status("VmRSS"),
                  "peak": status("VmHWM")}))
"""


def child(code: str, *args: str, env: dict | None = None) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"child process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def page_times(models: str | None, engine: str | None, upload: tuple[str, bytes] | None):
    """(seconds to the uploader, seconds from an upload then to its Overview) of one server."""
    import requests

    stress = _load_script("stress")
    port = stress.free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if models:
        env["CXR_MODEL_DIR"] = models
    if engine:
        env["CXR_ENGINE"] = engine
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                               "--server.port", str(port), "--server.headless", "true"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
            if time.perf_counter() - started > 120:
                raise SystemExit("the server did not start within 120 s")
        session = stress.Session(port)
        session.rerun()
        session.read_run()
        page = time.perf_counter() - started
        if not session.uploader_id:
            raise SystemExit("the first page has no uploader")
        overview = float("nan")
        if upload:
            t = time.perf_counter()
            outcome = stress.Outcome(0, upload[0])
            session.rerun([session.upload(*upload)])
            session.read_run(outcome)
            if outcome.errors or not outcome.images:
                raise SystemExit(f"the upload did not render: {outcome.errors}")
            overview = time.perf_counter() - t
        session.close()
        return page, overview
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_benchmark_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_image():
    """(image, what it is, (file name, bytes) to upload or None)."""
    from cxr_dash.data import SHOWCASE_CASE, SCRDataset, data_dir_from_env

    root = data_dir_from_env()
    if root:
        image = SCRDataset(root).load_image(SHOWCASE_CASE).pixels
        upload = (f"{SHOWCASE_CASE}.png", (Path(root) / "images" / f"{SHOWCASE_CASE}.png").read_bytes())
        return image, f"{SHOWCASE_CASE} from CXR_DATA_DIR", upload
    yy, xx = np.mgrid[0:1024, 0:1024]
    image = (128 + 60 * np.sin(xx / 90.0) * np.cos(yy / 70.0)).astype(np.uint8)
    return image, "synthetic 1024 x 1024", None


def fresh_and_memory(args, image, tag: str, summary: dict) -> None:
    """The fresh-process figures (start to first prediction; memory) from child processes."""
    models, engine = args.models or "", args.engine or ""
    with tempfile.TemporaryDirectory() as tmp:
        image_file = str(Path(tmp) / "image.npy")
        np.save(image_file, image)
        runs = [child(FRESH_CHILD, image_file, models, engine) for _ in range(args.repeats)]
        walls = [wall for _, wall in runs]
        parts = {k: median([r[k] for r, _ in runs]) for k in ("imports", "load", "predict")}
        summary["fresh"] = median(walls)
        print(f"{tag} fresh process to its first 5-region prediction: {fmt(walls)} "
              f"(imports {parts['imports']:.2f} s, load_segmenter {parts['load']:.2f} s, first "
              f"predict {parts['predict']:.2f} s) {verdict('fresh', summary['fresh'])}")
        memory, _ = child(MEMORY_CHILD, image_file, models, engine, args.region)
    summary["memory_mb"] = memory["after_gradcam"] / MB
    print(f"{tag} memory of a fresh process: RSS {memory['loaded'] / MB:.0f} MB loaded, "
          f"{memory['after_predict'] / MB:.0f} MB after predict + quality estimate, "
          f"{memory['after_gradcam'] / MB:.0f} MB after a Grad-CAM ({args.region}) [goal <= "
          f"{MEMORY_GOAL_MB} MB: {'met' if summary['memory_mb'] <= MEMORY_GOAL_MB else 'NOT MET'}]; "
          f"peak (VmHWM, the first gradient trace) {memory['peak'] / MB:.0f} MB")


def app_memory(args, upload, tag: str, summary: dict) -> None:
    """RSS of a process serving one dashboard session through a segmentation and a Grad-CAM."""
    env = {k: v for k, v in (("CXR_MODEL_DIR", args.models), ("CXR_ENGINE", args.engine)) if v}
    with tempfile.TemporaryDirectory() as tmp:
        image_file = Path(tmp) / upload[0]
        image_file.write_bytes(upload[1])
        memory, _ = child(APP_MEMORY_CHILD, str(ROOT / "app.py"), str(image_file), env=env)
    summary["app_memory_mb"] = memory["after_gradcam"] / MB
    print(f"{tag} memory of one app session (AppTest, this process serving it): RSS "
          f"{memory['after_segmentation'] / MB:.0f} MB after its Overview, "
          f"{memory['after_gradcam'] / MB:.0f} MB after a Grad-CAM from Explain [goal <= "
          f"{MEMORY_GOAL_MB} MB: {'met' if memory['after_gradcam'] / MB <= MEMORY_GOAL_MB else 'NOT MET'}]"
          f"; peak (VmHWM) {memory['peak'] / MB:.0f} MB")


def page_figures(args, upload, tag: str, summary: dict) -> None:
    pages = [page_times(args.models, args.engine, upload) for _ in range(args.repeats)]
    summary["page"] = median([pg for pg, _ in pages])
    print(f"{tag} streamlit run app.py to the page with the uploader: "
          f"{fmt([pg for pg, _ in pages])} {verdict('page', summary['page'])}")
    if upload:
        print(f"{tag}   an upload sent then, to its rendered Overview (models loading in the "
              f"background meanwhile): {fmt([ov for _, ov in pages])}")


def predict_figures(seg, image, repeats: int, tag: str, summary: dict) -> None:
    seg.warm_up()
    _, times = timed(lambda: seg.predict(image, tta=False), 2 * repeats + 1)
    summary["predict"] = median(times)
    print(f"{tag} predict, all regions, 1024 x 1024: {fmt(times)} {verdict('predict', summary['predict'])}")
    _, times = timed(lambda: seg.masks(seg.predict(image * 0.999 + 0.5), 0.5, True), repeats)
    print(f"{tag} predict + masks (the app's first segmentation of an image): {fmt(times)}")
    _, times = timed(lambda: seg.estimate_quality(image), repeats)
    print(f"{tag} predict + quality estimate (perturbed pass): {fmt(times)}")
    _, times = timed(lambda: seg.predict(image, tta=True), repeats)
    print(f"{tag} predict with test-time augmentation (4 grids): {fmt(times)}")


def explanation_figures(seg, image, region: str, repeats: int, tag: str, summary: dict) -> None:
    from cxr_dash.explain import explain
    from cxr_dash.occlusion import occlusion_sensitivity

    _, first = timed(lambda: explain(seg, image, region, "gradcam"), 1)
    print(f"{tag} Grad-CAM, {region}, first in the process (builds its Keras model, traces "
          f"the gradient): {first[0]:.2f} s")
    _, times = timed(lambda: explain(seg, image, region, "gradcam"), repeats)
    summary["gradcam"] = median(times)
    print(f"{tag} Grad-CAM, {region}: {fmt(times)} {verdict('gradcam', summary['gradcam'])}")
    for method in ("gradcam++", "layercam", "scorecam", "smoothgrad"):
        _, times = timed(lambda: explain(seg, image, region, method), 1)
        print(f"{tag} {method}, {region} (defaults, once; first call traces): {times[0]:.2f} s")
    x = seg.prepare(image, region)
    with seg.run_of_calls(region) as predict:
        res, times = timed(lambda: occlusion_sensitivity(predict, x), repeats)
    summary["occlusion"] = median(times)
    print(f"{tag} occlusion, {region}, defaults (patch {res.patch}, stride {res.stride}, "
          f"{res.evaluations} passes): {fmt(times)} {verdict('occlusion', summary['occlusion'])}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="model set (default: weights/)")
    p.add_argument("--engine", default=None, choices=ENGINES,
                   help="forward-pass engine (default: the package's, CXR_ENGINE)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--region", default="left_lung")
    p.add_argument("--skip-page", action="store_true", help="no streamlit server runs")
    args = p.parse_args(argv)

    from cxr_dash import load_segmenter

    image, source, upload = test_image()
    tag = f"[{cores()} cores]"
    print(f"{tag} input: {source}, shape {image.shape}; {others_running()}")
    summary: dict[str, float] = {}

    # The converted models in the cache (a conversion, after new weights, is timed here).
    t = time.perf_counter()
    seg = load_segmenter(args.models, warm_up=False, engine=args.engine)
    print(f"{tag} engine: {seg.engine}" + (f" (Keras for {sorted(seg.fallbacks)})" if seg.fallbacks else "")
          + f"; model set {seg.model_dir}, {len(seg.regions)} regions; load in this process "
          f"(converting any new weights): {time.perf_counter() - t:.2f} s")
    # Closed before the child processes run: pages of the converted files this process
    # maps are shared with theirs, and a page mapped twice cannot be handed back
    # (engine.page_out), so the children's RSS would count this process's mapping.
    del seg
    gc.collect()
    fresh_and_memory(args, image, tag, summary)
    if upload:
        app_memory(args, upload, tag, summary)
    seg = load_segmenter(args.models, warm_up=False, engine=args.engine)
    if not args.skip_page:
        page_figures(args, upload, tag, summary)
    predict_figures(seg, image, args.repeats, tag, summary)
    explanation_figures(seg, image, args.region, args.repeats, tag, summary)
    print(f"{tag} after the run: {others_running()}")
    print("summary: " + json.dumps({k: round(v, 3) for k, v in summary.items()}))

if __name__ == "__main__":
    main()
