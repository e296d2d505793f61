"""The real app in a real browser: `streamlit run app.py` headless with the shipped models,
loaded in headless Chromium through playwright-core; a radiograph drawn by code and a
reference mask uploaded; screenshots of the overlay (fill and outline), the Inspect view
windowed to a box drawn on it, the statistics
with the CTR lines, the difference view, an explanation chosen by clicking a lung and
training playback while it plays. Fails on any browser console error or failed request.

Needs Debian's chromium and `npm install` in tests/browser (see README); skipped
where they are missing. `CXR_SCREENSHOTS=DIR` keeps the pictures.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.phantom import chest_phantom, png

ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "tests" / "browser"
SHOTS = ("overlay_fill", "overlay_outline", "inspect_windowed", "statistics", "difference",
         "explain_clicked_left_lung", "playback_playing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("chromium") or not shutil.which("node")
                    or not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()
                    or not (ROOT / "weights" / "manifest.json").is_file(),
                    reason="headless Chromium / playwright-core or the shipped weights missing")
def test_the_viewer_in_headless_chromium(tmp_path):
    image, truth = chest_phantom(512)
    (tmp_path / "phantom.png").write_bytes(png(image))
    (tmp_path / "heart.png").write_bytes(png(truth["heart"]))
    out = Path(os.environ.get("CXR_SCREENSHOTS", tmp_path / "shots"))
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CXR_MODEL_DIR", "CXR_DATA_DIR")}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        result = subprocess.run(["node", str(BROWSER_DIR / "viewer.mjs"), url, str(out),
                                 str(tmp_path / "phantom.png"), str(tmp_path / "heart.png")],
                                cwd=BROWSER_DIR, capture_output=True, text=True, timeout=1500)
        lines = result.stdout.strip().splitlines()
        report = json.loads(lines[-1]) if lines else {}
        assert result.returncode == 0 and "error" not in report, (report, result.stderr[-3000:])
        assert report["hasNotice"] and not report["hasTraceback"]
        assert report["consoleErrors"] == [], report["consoleErrors"]
        assert report["failedRequests"] == [], report["failedRequests"]
        for name in SHOTS:
            assert (out / f"{name}.png").stat().st_size > 50_000, name   # a rendered page
    finally:
        server.terminate()
        server.wait(timeout=30)
