"""The real app in a real browser: `streamlit run app.py` headless, loaded in headless
Chromium through playwright-core, a radiograph uploaded, a screenshot saved.

Needs Debian's chromium and `npm install` in tests/browser (see README); skipped
where they are missing.
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

ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "tests" / "browser"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("chromium") or not shutil.which("node")
                    or not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(),
                    reason="headless Chromium / playwright-core not installed")
def test_app_in_headless_chromium(tiny_model_set, data_dir, tmp_path):
    port = _free_port()
    env = {**os.environ, "CXR_MODEL_DIR": str(tiny_model_set), "CXR_DATA_DIR": str(data_dir.resolve())}
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
        shot = Path(os.environ.get("CXR_SCREENSHOT", tmp_path / "app.png"))
        result = subprocess.run(["node", str(BROWSER_DIR / "screenshot.mjs"), url, str(shot),
                                 str((data_dir / "images" / "JPCLN034.png").resolve())],
                                cwd=BROWSER_DIR, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["hasNotice"] and not report["hasError"]
        assert shot.stat().st_size > 50_000      # a rendered page, not a blank one
    finally:
        server.terminate()
        server.wait(timeout=30)
