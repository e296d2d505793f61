"""cxr-dash: per-region U-Net segmentation of chest radiographs, and the tools to explain it.

Computation only: nothing in this package imports Streamlit.
"""
from .errors import ImageReadError, ModelSetError
from .regions import REGION_KEYS, REGIONS, get_region

__version__ = "0.1.0"
__all__ = ["load_segmenter", "Segmenter", "ImageReadError", "ModelSetError", "REGIONS",
           "REGION_KEYS", "get_region", "read_image"]


def load_segmenter(model_dir=None, regions=None, warm_up=True):
    """Load a trained model set; see :func:`cxr_dash.inference.load_segmenter`."""
    from .inference import load_segmenter as _load

    return _load(model_dir, regions, warm_up=warm_up)


def __getattr__(name):
    # Keras is imported lazily: readers and metrics stay light for tools that need no model.
    if name == "Segmenter":
        from .inference import Segmenter
        return Segmenter
    if name == "read_image":
        from .imaging import read_image
        return read_image
    raise AttributeError(name)
