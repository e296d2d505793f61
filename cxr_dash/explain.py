"""Explanations of a region model's output, all called the same way:

    explain(segmenter, image, region, method, layer=..., **params) -> Explanation

The score explained is the Seg-Grad-CAM one (Vinogradova et al., 2020):
the model's output summed over the region it predicts, so a heatmap says
which pixels made the model predict *this region*, not one pixel
(Grad-CAM++ takes the region's mean instead: see ``explain``).

Grad-CAM, Grad-CAM++, LayerCAM and SmoothGrad come from tf-keras-vis and
need the TensorFlow backend (the app's). tf-keras-vis' Score-CAM assumes a
classifier (it applies a softmax over classes), so Faster Score-CAM is done
here with the same algorithm, backend-agnostic.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np

from .preprocess import FULL_VIEW, FieldOfView, upsample_probability

# Layers a user can explain, by what they are. Resolutions are of the input.
LAYERS: dict[str, str] = {
    "Encoder stage 1 (1/2)": "conv1_relu",
    "Encoder stage 2 (1/4)": "conv2_block3_out",
    "Encoder stage 3 (1/8)": "conv3_block4_out",
    "Encoder stage 4 (1/16)": "conv4_block6_out",
    "Encoder bottleneck (1/32)": "conv5_block3_out",
    "Decoder stage 1 (1/16)": "decoder_stage0b_relu",
    "Decoder stage 2 (1/8)": "decoder_stage1b_relu",
    "Decoder stage 3 (1/4)": "decoder_stage2b_relu",
    "Decoder stage 4 (1/2)": "decoder_stage3b_relu",
    "Decoder stage 5 (1/1)": "decoder_stage4b_relu",
}
# Deep enough to carry what the decoder decided, fine enough (1/8 of the
# input) to localise a clavicle; the bottleneck is only 4x4 at 128 px.
DEFAULT_LAYER = "decoder_stage1b_relu"

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Faster Score-CAM",
    "layercam": "LayerCAM",
    "smoothgrad": "SmoothGrad saliency",
}


@dataclass
class Explanation:
    region: str
    method: str
    layer: str | None
    heatmap: np.ndarray              # (S, S) float32 in [0, 1] at the model's input size
    seconds: float
    params: dict = field(default_factory=dict)
    target_area: int = 0             # pixels of the predicted region the score sums over
    view: FieldOfView = FULL_VIEW    # the part of the image the model saw

    def at_size(self, shape: tuple[int, int]) -> np.ndarray:
        """The heatmap over an image of ``shape`` (zero outside the model's field of view)."""
        return upsample_probability(self.heatmap, shape, self.view)

    @property
    def download_name(self) -> str:
        """What its heatmap is called as a file: ``gradcam_decoder_stage1b_relu_heart``."""
        return f"{self.method.replace('+', 'plus')}_{self.layer or 'input'}_{self.region}"


def target_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Where the score is summed: the predicted region, or everywhere if it is empty."""
    mask = (prob >= threshold).astype(np.float32)
    return mask if mask.sum() > 0 else np.ones_like(mask)


def segmentation_score(mask: np.ndarray, mean: bool = False):
    """Seg-Grad-CAM score: the sigmoid output summed over ``mask`` (or its mean
    there, with ``mean``), one value per sample."""
    import keras

    weights = mask.astype(np.float32) / (float(mask.sum()) if mean else 1.0)
    m = keras.ops.convert_to_tensor(weights)

    def score(output):
        return keras.ops.sum(output[..., 0] * m, axis=(1, 2))
    return score


def normalise(heatmap: np.ndarray) -> np.ndarray:
    h = np.nan_to_num(np.asarray(heatmap, np.float32))
    lo, hi = float(h.min()), float(h.max())
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def faster_score_cam(model, x: np.ndarray, layer: str, mask: np.ndarray, max_channels: int = 32,
                     batch_size: int = 16) -> np.ndarray:
    """Score-CAM (Wang et al., 2020) on the ``max_channels`` activation maps of
    highest variance (Faster Score-CAM): each map, upsampled and normalised,
    masks the input; its weight is the score gain over a black input.

    Score-CAM weights a map by the class score of the masked input, which for
    a classifier is a softmax over classes; this model has one sigmoid
    output, so the analogue is the gain in the segmentation score itself
    (tf-keras-vis' softmax over one output would make every weight equal)."""
    import keras

    sub = keras.Model(model.input, model.get_layer(layer).output)   # one tensor in, as called
    acts = np.asarray(keras.ops.convert_to_numpy(sub(x[None], training=False)))[0]  # (h, w, C)
    order = np.argsort(acts.reshape(-1, acts.shape[-1]).std(axis=0))[::-1][:max_channels]
    acts = acts[..., order]
    size = x.shape[0]
    maps = np.stack([normalise(cv2.resize(acts[..., k], (size, size), interpolation=cv2.INTER_LINEAR))
                     for k in range(acts.shape[-1])])                              # (K, S, S)
    score = segmentation_score(mask)
    baseline = float(keras.ops.convert_to_numpy(score(model.predict_on_batch(np.zeros_like(x)[None])))[0])
    gains = []
    for start in range(0, len(maps), batch_size):
        batch = x[None] * maps[start:start + batch_size, ..., None]
        gains.append(np.asarray(keras.ops.convert_to_numpy(score(model.predict_on_batch(batch)))))
    weights = np.concatenate(gains) - baseline
    cam = np.maximum((acts * weights).sum(axis=-1), 0)
    return cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def explain(segmenter, image, region: str, method: str = "gradcam", layer: str = DEFAULT_LAYER,
            threshold: float = 0.5, smooth_samples: int = 16, smooth_noise: float = 0.15,
            max_channels: int = 32, prob: np.ndarray | None = None) -> Explanation:
    """Heatmap of what drove ``region``'s predicted region, at the model's input size.

    ``prob``: the region's probability map at the model's input size, if
    already computed (saves one forward pass).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    started = time.time()
    model = segmenter.model(region)
    x = segmenter.prepare(image, region)
    if prob is None:
        prob = np.asarray(model.predict_on_batch(x[None]))[0, ..., 0]
    mask = target_mask(prob, threshold)
    params: dict = {"threshold": threshold}
    if method == "scorecam":
        heat = faster_score_cam(model, x, layer, mask, max_channels)
        params["max_channels"] = max_channels
    elif method == "smoothgrad":
        from tf_keras_vis.saliency import Saliency

        with warnings.catch_warnings():
            # tf-keras-vis calls the model with a list of one input; Keras 3
            # warns that the structure differs from the model's single input.
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            heat = Saliency(model, clone=False)(segmentation_score(mask), x[None],
                                                smooth_samples=smooth_samples,
                                                smooth_noise=smooth_noise)[0]
        # Raw gradients are speckled; a small blur shows structure, not pixels.
        heat = cv2.GaussianBlur(np.asarray(heat, np.float32), (0, 0), sigmaX=max(1.0, x.shape[0] / 128))
        params.update(smooth_samples=smooth_samples, smooth_noise=smooth_noise)
        layer = None
    else:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam

        cls = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam}[method]
        # Grad-CAM++ differentiates exp(score), and its closed form is not
        # scale-free: it was derived for one class score. A sum over
        # thousands of pixels overflows exp (an all-zero map) and, even
        # shifted, lets the g**3 term swamp the weights; the region's mean
        # probability is bounded by 1 and on the scale the method expects.
        score = segmentation_score(mask, mean=(method == "gradcam++"))
        heat = cls(model, clone=False)(score, x[None], penultimate_layer=layer,
                                       seek_penultimate_conv_layer=False, normalize_cam=False)[0]
    return Explanation(region, method, layer, normalise(heat), time.time() - started, params,
                       int(mask.sum()) if mask.sum() < mask.size else 0, segmenter.view(region))
