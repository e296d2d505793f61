"""The Keras backend, chosen in one place.

Keras reads ``KERAS_BACKEND`` once, when it is first imported; ``import
cxr_dash`` calls :func:`choose_backend` before any module of the package can
import Keras, so the app, the tests, the command-line tools and the scripts all
agree. An explicit ``KERAS_BACKEND`` (``jax`` or ``torch`` for training) is
respected; without one the backend is TensorFlow, the only one the
explanations (tf-keras-vis) run on.
"""
from __future__ import annotations

import os

DEFAULT_BACKEND = "tensorflow"
BACKENDS = ("tensorflow", "jax", "torch")


def choose_backend(default: str = DEFAULT_BACKEND) -> str:
    """Set ``KERAS_BACKEND`` unless it is set already, and return it.

    Also quiets TensorFlow's C++ start-up messages (``TF_CPP_MIN_LOG_LEVEL=2``:
    errors only) unless that is set; ``TF_CPP_MIN_LOG_LEVEL=0`` shows them.
    Too late once Keras is imported: it keeps the backend it started with.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return os.environ.setdefault("KERAS_BACKEND", default)
