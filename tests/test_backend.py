"""The Keras backend is chosen in one place: on ``import cxr_dash``, an explicit choice kept."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("given,expected", [(None, "tensorflow"), ("torch", "torch"), ("jax", "jax")])
def test_importing_the_package_sets_the_backend_unless_one_is_given(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    if given:
        env["KERAS_BACKEND"] = given
    # Keras is not imported: choosing a backend must not need it.
    code = "import os, sys, cxr_dash; print(os.environ['KERAS_BACKEND'], 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == [expected, "False"]
