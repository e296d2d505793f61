"""The per-region ResNet34 U-Net and its compact on-disk format.

Backend-agnostic: nothing here calls TensorFlow, so training runs on JAX,
PyTorch or TensorFlow and the app loads the result on TensorFlow.

Compact format (``.npz``): convolution kernels as int8 with one float32 scale
per kernel position and output channel (v2; v1 files, one scale per output
channel, still load), other kernels per output channel; biases, batch-norm
statistics and the smallest kernels stay float32. At this granularity masks
agree with the float model's above 0.995 IoU even for thin clavicles at
256 px, where one scale per output channel fell to 0.96 (a right-clavicle
model's 94 validation cases). A ResNet34 U-Net (24.5 M parameters) drops
from 98 MB to about 25 MB, so five of them fit the 130 MB budget. Values are
rounded to the nearest step or stochastically (``INT8_ROUNDINGS``); the file
is the same either way.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ARCHITECTURE = "Unet(resnet34), sigmoid, segmodels-keras"
COMPACT_FORMAT = "cxr-dash-int8-v2"
READABLE_FORMATS = ("cxr-dash-int8-v1", COMPACT_FORMAT)


def _sm():
    # segmentation-models prints a banner on import; keep CLI output clean.
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import segmodels_keras as sm
    return sm


def build_unet(input_size: int | None = 256, encoder_weights: str | os.PathLike | None = None):
    """ResNet34 U-Net, one sigmoid channel. ``input_size=None`` accepts any
    multiple of 32.

    ``encoder_weights``: None (random initialisation, the default: nothing is
    downloaded at run time) or the path of a local ImageNet ResNet34 weights
    file (Keras ``.h5`` / ``.weights.h5`` of segmentation-models' resnet34
    backbone without top), copied layer by layer into the encoder.
    """
    sm = _sm()
    shape = (input_size, input_size, 3)
    model = sm.Unet("resnet34", input_shape=shape, classes=1, activation="sigmoid",
                    encoder_weights=None)
    if encoder_weights is not None:
        load_encoder_weights(model, encoder_weights)
    return model


def load_encoder_weights(model, path: str | os.PathLike) -> int:
    """Copy a local ImageNet ResNet34 backbone's weights into the U-Net's encoder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file {path} not found")
    sm = _sm()
    backbone = sm.Backbones.get_backbone("resnet34", input_shape=(None, None, 3),
                                         weights=None, include_top=False)
    backbone.load_weights(str(path), skip_mismatch=True) if str(path).endswith(".weights.h5") \
        else backbone.load_weights(str(path))
    copied = 0
    by_name = {layer.name: layer for layer in model.layers}
    for layer in backbone.layers:
        target = by_name.get(layer.name)
        if target is not None and layer.get_weights():
            target.set_weights(layer.get_weights())
            copied += 1
    if copied == 0:
        raise ValueError(f"{path} matched no encoder layer of the ResNet34 U-Net")
    return copied


# Kernels smaller than this stay float32: the 7x7 stem (it sees raw intensities)
# and the last decoder convolutions and head (they place the boundary pixel by
# pixel). They are 0.2% of the parameters (+0.1 MB per model) but most of the
# int8 disagreement on thin clavicles: mask IoU against the float model went
# from 0.993 to 0.998 when they were kept (256 px clavicle model, weights
# jittered within their int8 step as the float stand-in).
FLOAT_KERNEL_MAX_SIZE = 16_384

# How values are rounded onto the int8 grid. Nearest rounding has the smallest
# error per weight and serves a model trained from scratch. A fine-tune started
# from a compact file starts on the grid, and a short or gentle one moves its
# weights by less than half a step (a 1-epoch CPU fine-tune of the left
# clavicle: median 0.09 step, none 0.5 or more): nearest rounding then snaps
# them back and the export is mostly the starting model (mask IoU against its
# own float model 0.989). Stochastic rounding (up with probability equal to the
# fractional part) is unbiased, so the fine-tune survives on average: 0.999.
# Training exports both and keeps the one that agrees better (train.py).
INT8_ROUNDINGS = ("nearest", "stochastic")


def quantise(weights: list[np.ndarray], rounding: str = "nearest", seed: int = 0) -> dict[str, np.ndarray]:
    """Symmetric int8 for kernels of at least ``FLOAT_KERNEL_MAX_SIZE`` values,
    float32 otherwise. Convolution kernels (kh, kw, in, out) get one scale per
    kernel position and output channel, stored as (kh * kw, out); other kernels
    one per output channel, stored as (1, out). ``rounding``: one of
    ``INT8_ROUNDINGS``; ``seed`` makes stochastic rounding reproducible."""
    if rounding not in INT8_ROUNDINGS:
        raise ValueError(f"rounding must be one of {INT8_ROUNDINGS}, not {rounding!r}")
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for i, w in enumerate(weights):
        w = np.asarray(w, dtype=np.float32)
        if w.ndim >= 2 and w.size >= FLOAT_KERNEL_MAX_SIZE:
            # (groups, in, out): a convolution's kernel positions are the groups.
            groups = w.shape[0] * w.shape[1] if w.ndim == 4 else 1
            grouped = w.reshape(groups, -1, w.shape[-1])
            scale = np.abs(grouped).max(axis=1) / 127.0                # (groups, out)
            scale[scale == 0] = 1.0
            steps = grouped / scale[:, None, :]
            if rounding == "nearest":
                q = np.round(steps)
            else:
                q = np.floor(steps + rng.random(steps.shape, dtype=np.float32))
            arrays[f"q{i}"] = np.clip(q, -127, 127).astype(np.int8).reshape(w.shape)
            arrays[f"s{i}"] = scale.astype(np.float32)
        else:
            arrays[f"f{i}"] = w
    return arrays


def dequantise(arrays, count: int) -> list[np.ndarray]:
    weights = []
    for i in range(count):
        if f"q{i}" in arrays:
            q, scale = arrays[f"q{i}"], arrays[f"s{i}"]
            if scale.ndim == 2:                                       # per position and output
                w = q.reshape(scale.shape[0], -1, q.shape[-1]).astype(np.float32) * scale[:, None, :]
            else:                                                     # per output channel (v1)
                w = q.reshape(-1, q.shape[-1]).astype(np.float32) * scale
            weights.append(w.reshape(q.shape))
        elif f"f{i}" in arrays:
            weights.append(arrays[f"f{i}"])
        else:
            raise ValueError(f"weights file lacks tensor {i}: not a {COMPACT_FORMAT} file of this model")
    return weights


def save_compact(model, path: str | os.PathLike, rounding: str = "nearest", seed: int = 0) -> int:
    """Write the model's weights in the compact int8 format; returns bytes written.
    Either rounding gives the same format: loading does not need to know it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = model.get_weights()
    arrays = quantise(weights, rounding, seed)
    arrays["format"] = np.array(COMPACT_FORMAT)
    arrays["count"] = np.array(len(weights))
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path.stat().st_size


def load_compact(model, path: str | os.PathLike) -> None:
    """Load compact weights into a freshly built model of the same architecture."""
    with np.load(path) as z:
        if "format" not in z.files or str(z["format"]) not in READABLE_FORMATS:
            raise ValueError(f"{path} is not a {COMPACT_FORMAT} weights file")
        count = int(z["count"])
        if count != len(model.weights):
            raise ValueError(f"{path} holds {count} tensors, the model has {len(model.weights)}")
        model.set_weights(dequantise(z, count))


def forward_only():
    """Context for passes that need no gradients. On the PyTorch backend a direct
    model call otherwise records the autograd graph of its activations: a 384 px
    run was killed for memory (24 GB) in the validation passes after training;
    with this, the next one stayed under 7.3 GB throughout."""
    import contextlib

    import keras

    if keras.backend.backend() == "torch":
        import torch
        return torch.no_grad()
    return contextlib.nullcontext()


def recalibrate_batch_norm(model, images: np.ndarray, batch_size: int = 8) -> int:
    """Re-estimate every batch-norm layer's moving mean and variance on ``images``
    (N, S, S, 3) with the weights fixed; returns the number of layers updated.

    Keras keeps moving statistics with momentum 0.99, a memory of ~100 steps.
    A CPU run has ~27 steps per epoch, so after a change of input size the
    statistics lag the weights by about four epochs: the whole-image 256 px
    stage of the left lung validated at IoU 0.860 with the statistics it
    ended with, 0.935 with statistics of the clean training cases and 0.948
    with those of augmented copies (the distribution the weights were
    trained on; a high-contrast case it lost entirely came back), weights
    unchanged. Each batch is run in training mode with the momentum set so
    that the moving statistics become the plain average of the batches'.
    """
    import keras

    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    try:
        with forward_only():
            for k, start in enumerate(range(0, len(images), batch_size)):
                for layer in layers:
                    layer.momentum = k / (k + 1.0)  # k = 0 replaces the old statistics
                model(np.asarray(images[start:start + batch_size], np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def batch_norm_statistics(model) -> dict[int, np.ndarray]:
    """{index in ``model.weights``: value} of every batch-norm moving mean and variance."""
    import keras

    index = {id(v): i for i, v in enumerate(model.weights)}
    stats = {}
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            for v in (layer.moving_mean, layer.moving_variance):
                stats[index[id(v)]] = np.asarray(_to_numpy(v), np.float32)
    return stats


def store_batch_norm_statistics(model, path: str | os.PathLike) -> int:
    """Rewrite the batch-norm statistics of a compact file from ``model``; the
    quantised kernels (and the file's format version) stay byte for byte.
    Returns bytes written."""
    path = Path(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for i, value in batch_norm_statistics(model).items():
        if f"f{i}" not in arrays:
            raise ValueError(f"{path}: tensor {i} is not a float32 statistic of this model")
        arrays[f"f{i}"] = value
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)
    return path.stat().st_size


def predict_probabilities(model, batch: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """(N, S, S, 3) float32 -> (N, S, S) float32 probabilities, without Keras' predict overhead."""
    out = []
    with forward_only():
        for start in range(0, len(batch), batch_size):
            x = batch[start:start + batch_size].astype(np.float32)
            y = model(x, training=False)
            out.append(np.asarray(_to_numpy(y))[..., 0])
    return np.concatenate(out, axis=0) if out else np.zeros((0,) + batch.shape[1:3], np.float32)


def _to_numpy(tensor):
    import keras

    return keras.ops.convert_to_numpy(tensor)
