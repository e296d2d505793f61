"""What every page is given: one :class:`Context`, built once per rerun by ``app.py``.

Image pages (Overview, Compare regions, Explain, Position, Downloads) read the
current image and its segmentation; model pages (Training playback,
Hyper-parameter search, Dataset evaluation, Model set) read the model set
only, and get a context whose image fields are None. Every page is called the
same way, ``render(ctx)``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cxr_dash.render import display_rgb

from . import state


@dataclass(frozen=True)
class DisplaySettings:
    """The sidebar's *Display* expander: how results are drawn (the models never re-run)."""
    threshold: float
    opacity: float
    style: str
    visible: tuple[str, ...]
    show_truth: bool
    window: tuple[float, float] = (0.0, 1.0)
    local_contrast: bool = False


@dataclass(frozen=True)
class Context:
    seg: object                                   # cxr_dash.inference.Segmenter
    settings: DisplaySettings
    image: state.CurrentImage | None = None       # None on model pages
    probs: dict[str, np.ndarray] | None = None    # working resolution, per region
    masks: dict[str, np.ndarray] | None = None
    tta: bool = False                             # whether test-time augmentation made probs

    @classmethod
    def for_model(cls, seg, settings: DisplaySettings) -> Context:
        """The context of a model page: no image."""
        return cls(seg, settings)

    @classmethod
    def for_image(cls, seg, settings: DisplaySettings, image: state.CurrentImage,
                  tta: bool = False) -> Context:
        """The context of an image page: the image segmented (cached per model set, image and
        TTA) and its masks at the sidebar's threshold."""
        ctx = cls(seg, settings, image, tta=tta)
        probs = state.segment(ctx.results_key, image.key, seg, image.pixels, tta)
        masks = state.masks_for(ctx.results_key, image.key, settings.threshold, True, seg, probs)
        return replace(ctx, probs=probs, masks=masks)

    @property
    def model_key(self) -> str:
        """The model set's cache key. Explanations, occlusion and position tests run the
        plain models under it, so a TTA toggle spares them."""
        return str(self.seg.model_dir)

    @property
    def results_key(self) -> str:
        """The cache key of ``probs`` and ``masks``: they depend on TTA."""
        return self.model_key + (" +TTA" if self.tta else "")

    @property
    def regions(self) -> tuple[str, ...]:
        return self.seg.regions

    def base_rgb(self) -> np.ndarray:
        """The radiograph as shown: the sidebar's display window (and CLAHE) applied."""
        return display_rgb(self.image.pixels, self.settings.window, self.settings.local_contrast)

    def quality(self) -> dict[str, float | None]:
        """{region: estimated Jaccard} of this image's masks (None: the set has no estimate)."""
        return state.quality_for(self.results_key, self.image.key, self.seg, self.image.pixels,
                                 self.probs)

    @property
    def warning_threshold(self) -> float | None:
        model = self.seg.quality_model
        return None if model is None else model.warning_threshold

    def doubtful_regions(self) -> list[str]:
        """Regions whose estimated Jaccard falls under the set's validated threshold."""
        t = self.warning_threshold
        return [r for r, q in self.quality().items() if t is not None and q is not None and q < t]

    def measurements(self) -> list[dict]:
        return state.measurements_for(self.results_key, self.image.key, self.settings.threshold,
                                      self.image.spacing_mm, self.image.truth_key, self.probs,
                                      self.masks, self.image.truth, self.quality(),
                                      self.warning_threshold)

    def statistics(self) -> dict[str, dict]:
        """{region: area, centroid, bounding box, widest extent} of the masks
        (:func:`cxr_dash.measure.region_statistics`)."""
        return state.statistics_for(self.results_key, self.image.key, self.settings.threshold,
                                    self.image.spacing_mm, self.masks)

    def cardiothoracic_ratio(self):
        """:class:`cxr_dash.measure.CardiothoracicRatio` of the masks, or None."""
        from cxr_dash.measure import cardiothoracic_ratio

        return cardiothoracic_ratio(self.masks)

    @property
    def model_set_name(self) -> str:
        """The model set as a user names it: its folder's name, not its path."""
        return self.seg.model_dir.resolve().name
