"""cxr-dash: per-region U-Net segmentation of chest radiographs, and the tools to explain it.

Computation only: nothing here imports Streamlit except ``cxr_dash.ui``, the
dashboard's pages. Importing the package chooses the Keras backend
(:mod:`cxr_dash.backend`), before any of its modules imports Keras.
"""
from .backend import choose_backend

choose_backend()

from .errors import ImageReadError, ModelSetError  # noqa: E402
from .regions import REGION_KEYS, REGIONS, get_region  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load_segmenter", "Segmenter", "ImageReadError", "ModelSetError", "REGIONS",
           "REGION_KEYS", "get_region", "read_image"]


def load_segmenter(model_dir=None, regions=None, warm_up=True, engine=None):
    """Load a trained model set; see :func:`cxr_dash.inference.load_segmenter`."""
    from .inference import load_segmenter as _load

    return _load(model_dir, regions, warm_up=warm_up, engine=engine)


def __getattr__(name):
    # Keras is imported lazily: readers and metrics stay light for tools that need no model.
    if name == "Segmenter":
        from .inference import Segmenter
        return Segmenter
    if name == "read_image":
        from .imaging import read_image
        return read_image
    raise AttributeError(name)
