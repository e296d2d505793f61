"""The inference API the app and the acceptance checks use.

    from cxr_dash import load_segmenter
    seg = load_segmenter()            # the shipped weights/ set
    probs = seg.predict(image)        # {region: float32 H x W}
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ModelSetError
from .manifest import DEFAULT_MODEL_DIR, read_manifest
from .metrics import fill_holes, largest_component
from .preprocess import prepare_input, upsample_probability
from .regions import REGION_KEYS


def as_grayscale(image) -> np.ndarray:
    """Accept a 2-D array, or (H, W, 1|3|4) which is averaged to grey."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[..., :3].mean(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(f"expected a 2-D grey image, got an array of shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def to_mask(prob: np.ndarray, threshold: float = 0.5, largest_only: bool = True) -> np.ndarray:
    """Probability map -> binary mask; each SCR structure is one solid piece."""
    mask = prob >= threshold
    if largest_only and mask.any():
        mask = fill_holes(largest_component(mask))
    return mask


class Segmenter:
    """A loaded model set: one ResNet34 U-Net per region, described by a manifest."""

    def __init__(self, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR, regions=None):
        from .model import build_unet, load_compact

        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        available = self.manifest["regions"]
        wanted = regions or REGION_KEYS
        self.regions: tuple[str, ...] = tuple(r for r in REGION_KEYS if r in available and r in wanted)
        if not self.regions:
            raise ModelSetError(f"{self.model_dir} has no model for {', '.join(wanted)}")
        self._models = {}
        for region in self.regions:
            entry = available[region]
            path = self.model_dir / entry["weights"]
            if not path.is_file():
                raise ModelSetError(f"{path} is missing: the manifest names it for {region}.")
            model = build_unet(int(entry["input_size"]))
            try:
                load_compact(model, path)
            except ValueError as exc:
                raise ModelSetError(f"{region}: {exc}") from None
            self._models[region] = model

    def warm_up(self) -> "Segmenter":
        """One dummy prediction per model: graph tracing (seconds on a CPU) is paid
        here, at load time, not by the first image a user uploads."""
        self.predict_at_input_size(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
        return self

    def input_size(self, region: str) -> int:
        return int(self.manifest["regions"][region]["input_size"])

    def model(self, region: str):
        """The Keras model of one region (explanations need the graph itself)."""
        return self._models[region]

    def entry(self, region: str) -> dict:
        return self.manifest["regions"][region]

    def prepare(self, image, region: str) -> np.ndarray:
        """The model input of ``region`` for this image: (S, S, 3) float32."""
        return prepare_input(as_grayscale(image), self.input_size(region))

    def predict_at_input_size(self, image, regions=None) -> dict[str, np.ndarray]:
        """{region: (S, S) float32} at each model's own input resolution."""
        image = as_grayscale(image)
        regions = tuple(regions or self.regions)
        inputs: dict[int, np.ndarray] = {}
        out = {}
        for region in regions:
            size = self.input_size(region)
            if size not in inputs:  # regions of one size share their preprocessing
                inputs[size] = prepare_input(image, size)[None]
            y = self._models[region].predict_on_batch(inputs[size])
            out[region] = np.asarray(y, dtype=np.float32)[0, ..., 0]
        return out

    def predict(self, image, regions=None) -> dict[str, np.ndarray]:
        """{region: float32 probability map at the image's own size}."""
        image = as_grayscale(image)
        small = self.predict_at_input_size(image, regions)
        return {r: upsample_probability(p, image.shape) for r, p in small.items()}

    def masks(self, probabilities: dict[str, np.ndarray], threshold: float = 0.5,
              largest_only: bool = True) -> dict[str, np.ndarray]:
        return {r: to_mask(p, threshold, largest_only) for r, p in probabilities.items()}


def load_segmenter(model_dir: str | os.PathLike | None = None, regions=None) -> Segmenter:
    """Load a model set (default: the project's ``weights/``).

    Raises :class:`~cxr_dash.errors.ModelSetError` with instructions when
    none has been trained yet.
    """
    return Segmenter(model_dir or DEFAULT_MODEL_DIR, regions)
