"""Explanations of a region model's output, all called the same way:

    explain(segmenter, image, region, method, layer=..., **params) -> Explanation

The score explained is the Seg-Grad-CAM one (Vinogradova et al., 2020):
the model's output summed over the region it predicts, so a heatmap says
which pixels made the model predict *this region*, not one pixel
(Grad-CAM++ takes the region's mean instead: see ``explain``).

Grad-CAM, Grad-CAM++, LayerCAM and SmoothGrad follow tf-keras-vis' formulas
(a test holds them to its output) and need the TensorFlow backend (the
app's): the gradients come from one compiled function per model and layer,
traced once, instead of tf-keras-vis' eager pass through a model rebuilt
at every call (3.3 s became ~0.5 s for Grad-CAM on 2 cores). tf-keras-vis'
Score-CAM assumes a classifier (it applies a softmax over classes), so
Faster Score-CAM is done here with the same algorithm; its masked passes
run on the segmenter's engine. The long methods (SmoothGrad, Score-CAM)
report ``progress`` and end early when ``should_stop`` says so, with the
samples or maps done so far.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Callable

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
# Short names of those layers for file names: "encoder3", "bottleneck", "decoder2".
LAYER_NAMES: dict[str, str] = {
    "conv1_relu": "encoder1", "conv2_block3_out": "encoder2", "conv3_block4_out": "encoder3",
    "conv4_block6_out": "encoder4", "conv5_block3_out": "bottleneck",
    "decoder_stage0b_relu": "decoder1", "decoder_stage1b_relu": "decoder2",
    "decoder_stage2b_relu": "decoder3", "decoder_stage3b_relu": "decoder4",
    "decoder_stage4b_relu": "decoder5"}
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
    done: int | None = None          # samples / activation maps used, of ``total``, when stopped
    total: int | None = None

    @property
    def complete(self) -> bool:
        """False for a run stopped early: its heatmap has the samples or maps done until then."""
        return self.total is None or self.done is None or self.done >= self.total

    def at_size(self, shape: tuple[int, int]) -> np.ndarray:
        """The heatmap over an image of ``shape`` (zero outside the model's field of view)."""
        return upsample_probability(self.heatmap, shape, self.view)

    @property
    def download_name(self) -> str:
        """What its heatmap is called as a file, region first, as the masks are:
        ``heart_gradcam`` at the default layer, ``left_lung_gradcamplusplus_encoder1``
        at another (:data:`LAYER_NAMES`), ``heart_smoothgrad`` for the input's gradient."""
        method = self.method.replace("+", "plus")
        if self.layer in (None, DEFAULT_LAYER):
            return f"{self.region}_{method}"
        return f"{self.region}_{method}_{LAYER_NAMES.get(self.layer, self.layer)}"

    @property
    def title(self) -> str:
        """What it is, in words: 'Grad-CAM, decoder stage 2 (1/8)'."""
        layer = next((k for k, v in LAYERS.items() if v == self.layer), self.layer or "input")
        partial = "" if self.complete else f", stopped after {self.done} of {self.total}"
        return f"{METHODS.get(self.method, self.method)}, {layer[0].lower() + layer[1:]}{partial}"


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


Progress = Callable[[int, int], None]
Stop = Callable[[], bool]


def batch_for(size: int, at_256: int = 4, most: int = 8) -> int:
    """Images per model call at input side ``size``: ``at_256`` at 256 px, fewer above
    (activations take ~100 MB per 384 px image), at most ``most``."""
    return min(most, max(1, at_256 * 256 * 256 // (size * size)))


def faster_score_cam(model, x: np.ndarray, layer: str, mask: np.ndarray, max_channels: int = 32,
                     batch_size: int | None = None, predict=None, progress: Progress | None = None,
                     should_stop: Stop | None = None) -> np.ndarray:
    """Score-CAM (Wang et al., 2020) on the ``max_channels`` activation maps of
    highest variance (Faster Score-CAM): each map, upsampled and normalised,
    masks the input; its weight is the score gain over a black input.

    Score-CAM weights a map by the class score of the masked input, which for
    a classifier is a softmax over classes; this model has one sigmoid
    output, so the analogue is the gain in the segmentation score itself
    (tf-keras-vis' softmax over one output would make every weight equal).

    ``predict``: (N, S, S, 3) -> (N, S, S) for the masked passes (the segmenter's
    engine; default the Keras model itself)."""
    return _score_cam(model, x, layer, mask, max_channels, batch_size, predict, progress,
                      should_stop)[0]


def _score_cam(model, x, layer, mask, max_channels, batch_size, predict, progress, should_stop):
    import keras

    from .engine import keras_predictor

    predict = predict or keras_predictor(model)
    sub = keras.Model(model.input, model.get_layer(layer).output)   # one tensor in, as called
    acts = np.asarray(keras.ops.convert_to_numpy(sub(x[None], training=False)))[0]  # (h, w, C)
    order = np.argsort(acts.reshape(-1, acts.shape[-1]).std(axis=0))[::-1][:max_channels]
    acts = acts[..., order]
    size = x.shape[0]
    maps = np.stack([normalise(cv2.resize(acts[..., k], (size, size), interpolation=cv2.INTER_LINEAR))
                     for k in range(acts.shape[-1])])                              # (K, S, S)
    weight = mask.astype(np.float32)

    def score(batch):
        return (predict(batch) * weight).sum(axis=(1, 2))

    baseline = float(score(np.zeros_like(x)[None])[0])
    batch_size = int(batch_size or batch_for(size))
    gains, used = [], 0
    for start in range(0, len(maps), batch_size):
        gains.append(score(x[None] * maps[start:start + batch_size, ..., None]))
        used = min(start + batch_size, len(maps))
        if progress:
            progress(used, len(maps))
        if should_stop is not None and used < len(maps) and should_stop():
            break
    weights = np.concatenate(gains) - baseline
    cam = np.maximum((acts[..., :used] * weights).sum(axis=-1), 0)
    return cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR), used, len(maps)


_first_explanation_done = False


def _free_memory() -> None:
    """After an explanation: the gradients' temporaries (hundreds of MB at 384 px) go back
    to the kernel; after the first in the process also the pages of TensorFlow's
    libraries that only its import and first trace read (~330 MB of RSS)."""
    global _first_explanation_done
    from .engine import page_out_tensorflow, trim_heap

    trim_heap()
    if not _first_explanation_done:
        _first_explanation_done = True
        page_out_tensorflow()


# Compiled gradient functions, per Keras model: {layer (None: the input): function}.
_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _gradient_step(model, layer: str | None):
    """``step(x, weights) -> (activations, d score / d activations)`` of ``layer``
    (``None``: the input itself), score = output summed with ``weights``; traced once."""
    steps = _STEPS.setdefault(model, {})
    if layer not in steps:
        import keras
        import tensorflow as tf

        extractor = model if layer is None else keras.Model(
            model.input, [model.get_layer(layer).output, model.output])

        @tf.function(reduce_retracing=True)
        def step(x, weights):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                if layer is None:
                    acts, out = x, extractor(x, training=False)
                else:
                    acts, out = extractor(x, training=False)
                score = tf.reduce_sum(out[..., 0] * weights, axis=(1, 2))
            return acts, tape.gradient(score, acts), score

        steps[layer] = step
    return steps[layer]


def gradients(model, x: np.ndarray, layer: str | None, weights: np.ndarray):
    """(activations, gradients, scores) as numpy for a batch ``x`` (N, S, S, 3)."""
    import tensorflow as tf

    acts, grads, score = _gradient_step(model, layer)(tf.constant(x, tf.float32),
                                                      tf.constant(weights, tf.float32))
    return acts.numpy(), grads.numpy(), score.numpy()


def class_activation_map(method: str, acts: np.ndarray, grads: np.ndarray, score: np.ndarray,
                         size: int) -> np.ndarray:
    """Grad-CAM, Grad-CAM++ or LayerCAM of one sample, as tf-keras-vis computes it
    (its ReLU on the map, Grad-CAM++'s exp(score) derivatives, linear zoom to the
    input), before normalisation."""
    from scipy.ndimage import zoom

    relu = lambda a: np.maximum(a, 0)   # noqa: E731
    if method == "gradcam":
        cam = relu((acts * grads.mean(axis=(1, 2), keepdims=True)).sum(axis=-1))
    elif method == "layercam":
        cam = relu((acts * relu(grads)).sum(axis=-1))
    elif method == "gradcam++":
        first = np.exp(score).reshape(-1, 1, 1, 1) * grads
        second = first * grads
        third = second * grads
        global_sum = acts.sum(axis=(1, 2), keepdims=True)
        denominator = second * 2.0 + third * global_sum
        alphas = second / (denominator + (second == 0.0))
        norm = alphas.sum(axis=(1, 2), keepdims=True)
        alphas = alphas / (norm + (norm == 0.0))
        weights = (relu(first) * alphas).sum(axis=(1, 2), keepdims=True)
        cam = relu((weights * acts).sum(axis=-1))
    else:
        raise ValueError(f"not a class activation map method: {method}")
    return zoom(cam, (1.0, size / cam.shape[1], size / cam.shape[2]), order=1)[0]


def smoothgrad(model, x: np.ndarray, weights: np.ndarray, samples: int = 16, noise: float = 0.15,
               rng=None, progress: Progress | None = None, should_stop: Stop | None = None):
    """SmoothGrad (Smilkov et al., 2017) as tf-keras-vis computes it: the absolute input
    gradient averaged over ``samples`` noisy copies (noise sd ``noise`` times the input's
    range), its maximum over channels, normalised. Returns (map, samples used)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    sigma = noise * (float(x.max()) - float(x.min()))
    noisy = x[None] + rng.normal(0.0, sigma, (samples,) + x.shape)
    total = np.zeros(x.shape, np.float32)
    used = 0
    for i in range(samples):
        _, grads, _ = gradients(model, noisy[i:i + 1].astype(np.float32), None, weights)
        total += np.abs(grads[0])
        used = i + 1
        if progress:
            progress(used, samples)
        if should_stop is not None and used < samples and should_stop():
            break
    heat = (total / used).max(axis=-1)
    return (heat - heat.min()) / (heat.max() - heat.min() + 1e-7), used


def explain(segmenter, image, region: str, method: str = "gradcam", layer: str = DEFAULT_LAYER,
            threshold: float = 0.5, smooth_samples: int = 16, smooth_noise: float = 0.15,
            max_channels: int = 32, prob: np.ndarray | None = None,
            progress: Progress | None = None, should_stop: Stop | None = None,
            rng=None) -> Explanation:
    """Heatmap of what drove ``region``'s predicted region, at the model's input size.

    ``prob``: the region's probability map at the model's input size, if
    already computed (saves one forward pass). ``progress(done, total)`` and
    ``should_stop()``: called after each SmoothGrad sample or Score-CAM batch; a
    stopped run returns the heatmap of what it did (``complete`` False).
    ``rng``: SmoothGrad's noise (default: seeded, so a run can be repeated).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    started = time.time()
    x = segmenter.prepare(image, region)
    if prob is None:
        prob = segmenter.forward(region, x[None])[0]
    mask = target_mask(prob, threshold)
    model = segmenter.model(region)      # the Keras model: built on first use
    params: dict = {"threshold": threshold}
    done = total = None
    if method == "scorecam":
        with segmenter.run_of_calls(region) as predict:
            heat, done, total = _score_cam(model, x, layer, mask, max_channels, None, predict,
                                           progress, should_stop)
        params["max_channels"] = max_channels
    elif method == "smoothgrad":
        heat, done = smoothgrad(model, x, mask, smooth_samples, smooth_noise, rng, progress,
                                should_stop)
        total = smooth_samples
        # Raw gradients are speckled; a small blur shows structure, not pixels.
        heat = cv2.GaussianBlur(np.asarray(heat, np.float32), (0, 0), sigmaX=max(1.0, x.shape[0] / 128))
        params.update(smooth_samples=smooth_samples, smooth_noise=smooth_noise)
        layer = None
    else:
        # Grad-CAM++ differentiates exp(score), and its closed form is not
        # scale-free: it was derived for one class score. A sum over
        # thousands of pixels overflows exp (an all-zero map) and, even
        # shifted, lets the g**3 term swamp the weights; the region's mean
        # probability is bounded by 1 and on the scale the method expects.
        weights = mask / (float(mask.sum()) if method == "gradcam++" else 1.0)
        acts, grads, score = gradients(model, x[None], layer, weights)
        heat = class_activation_map(method, acts, grads, score, x.shape[0])
    _free_memory()
    return Explanation(region, method, layer, normalise(heat), time.time() - started, params,
                       int(mask.sum()) if mask.sum() < mask.size else 0, segmenter.view(region),
                       done, total)
