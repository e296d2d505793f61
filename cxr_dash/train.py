"""Train per-region U-Nets: ``python -m cxr_dash.train --region heart``.

Defaults come from the region registry (the study's optimiser, learning rate
and batch size); every one can be overridden. ``--from-trial FILE`` takes
them instead from a hyper-parameter search's winner (``<region>_best.json``,
written by ``python -m cxr_dash.tune``); flags given still win. Runs on
whichever Keras backend ``KERAS_BACKEND`` names. Writes into ``--out`` (a
model-set folder): the compact weights, the history (loss, validation IoU and
Dice per epoch) and per-epoch prediction snapshots of a fixed validation
panel, and merges the region's entry into that folder's ``manifest.json``. No
per-epoch checkpoints are kept.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import data as scr
from .cli import (DATA_OR_PACK_HELP, DATA_WORKERS_HELP, data_or_pack_argument, input_size_argument,
                  open_dataset, positive_int, probability_argument, region_argument)
from .augment import AUGMENT_PRESETS, AugmentConfig, augment_pair, augmented_copies
from .manifest import read_manifest, update_region
from .metrics import dice, jaccard
from .model import (COMPACT_FORMAT, INT8_ROUNDINGS, build_unet, load_compact, predict_probabilities,
                    recalibrate_batch_norm, save_compact)
from .preprocess import CLAHE_CLIP_LIMIT, CLAHE_TILES, INTENSITY_METHODS, FieldOfView, check_intensity, finish_intensity
from .record import prepend_earlier_stage, write_snapshots
from .regions import REGION_KEYS, get_region

LOSSES = ("bce_jaccard", "bce_dice", "focal_jaccard", "focal_dice")
OPTIMIZERS = ("sgd", "rmsprop", "adam")
# What a tuning trial (``tune``'s <region>_best.json) can set: its searched
# parameters, then the settings it was scored under, each with its flag. These
# flags default to None so that a flag the user typed can be told from one left
# alone: typed flags win over the trial, the trial over the defaults.
TRIAL_PARAMS = {"optimizer": "optimizer", "learning_rate": "lr", "batch_size": "batch_size",
                "loss": "loss", "epochs": "epochs"}
TRIAL_SETTINGS = {"input_size": "input_size", "augment_copies": "augment_copies",
                  "field_of_view": "field_of_view"}
TRIAL_TYPES = {"optimizer": (str, "a name"), "loss": (str, "a name"),
               "learning_rate": ((int, float), "a number > 0"), "batch_size": (int, "a whole number >= 1"),
               "epochs": (int, "a whole number >= 1"), "input_size": (int, "a whole number >= 1"),
               "augment_copies": (int, "a whole number >= 1")}


@dataclass
class TrainConfig:
    region: str
    fold: str = "odd"                  # a training split: scr.TRAINING_SPLITS
    input_size: int = 256
    epochs: int = 50
    optimizer: str | None = None       # None: the registry's (study's) value
    learning_rate: float | None = None
    batch_size: int | None = None
    momentum: float = 0.0              # Keras' SGD default, as the study used Keras defaults
    schedule: str = "constant"         # or "cosine"
    warmup_epochs: float = 0.0
    loss: str = "bce_jaccard"
    augment_copies: int = 5            # the study's 5 augmentations per radiograph per epoch
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # The model-space intensity step (preprocess.INTENSITY_METHODS), after augmentation.
    intensity: str = "percentile"
    augment_preset: str = "standard"    # the name of cfg.augment's preset, for the record
    patience: int = 10                 # early stopping on validation IoU
    restore_best: bool = True
    snapshot_cases: int = 4
    steps_per_epoch: int | None = None  # cap, for smoke tests
    max_train_cases: int | None = None
    max_val_cases: int | None = None
    seed: int = 0
    encoder_weights: str | None = None
    init_weights: str | None = None     # compact weights of an earlier run to start from
    # [top, bottom, left, right] fractions of the image the model sees; None: the
    # registry's default for the region; "full": the whole image.
    field_of_view: list[float] | str | None = None
    note: str = ""
    keep_float: bool = False            # also write float32 weights (for re-export; not for weights/)
    recalibrate_bn: bool = True         # re-estimate batch-norm statistics on the training cases
    # ... also before every validation, so that the learning curve (early
    # stopping, best epoch, tuning's pruning) measures the weights, not the
    # lag of the moving statistics: a 384 px stage validated at IoU 0.51 in its
    # third epoch with the statistics training had left, and at 0.87 after its
    # last epoch once they were re-estimated.
    recalibrate_bn_each_epoch: bool = False
    # Stop after the epoch that would end past this many seconds of fitting: a
    # lent GPU's lease is short, and a run cut off by its timeout keeps nothing.
    time_limit_s: float | None = None
    data_workers: int = 1               # threads augmenting batches while the device trains

    def resolved(self) -> "TrainConfig":
        study = get_region(self.region).study
        out = TrainConfig(**{**asdict(self), "augment": self.augment})
        out.region = get_region(self.region).key
        out.optimizer = (self.optimizer or study.optimizer).lower()
        out.learning_rate = self.learning_rate if self.learning_rate is not None else study.learning_rate
        out.batch_size = self.batch_size or study.batch_size
        default_view = get_region(self.region).field_of_view
        out.field_of_view = FieldOfView.parse(
            default_view if self.field_of_view is None else self.field_of_view).as_list()
        out.intensity = check_intensity(self.intensity)
        if out.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
        if out.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}")
        return out

    def hyperparameters(self) -> dict:
        return {"optimizer": self.optimizer, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "momentum": self.momentum,
                "schedule": self.schedule, "warmup_epochs": self.warmup_epochs,
                "loss": self.loss, "epochs_max": self.epochs,
                "augment_copies": self.augment_copies, "input_size": self.input_size,
                "field_of_view": self.field_of_view, "patience": self.patience}

    @property
    def view(self) -> FieldOfView:
        return FieldOfView.parse(self.field_of_view)

    def preprocessing(self) -> dict:
        """The manifest's record of how this model's inputs are made (inference reads it)."""
        record = {"intensity": self.intensity, "window_percentiles": [0.5, 99.5]}
        if "clahe" in self.intensity:
            record["clahe"] = {"clip_limit": CLAHE_CLIP_LIMIT, "tiles": CLAHE_TILES,
                               "applied": "in model space, after the resize"}
        return record


def make_loss(name: str):
    from .model import _sm

    losses = _sm().losses
    return {"bce_jaccard": losses.bce_jaccard_loss, "bce_dice": losses.bce_dice_loss,
            "focal_jaccard": losses.binary_focal_jaccard_loss,
            "focal_dice": losses.binary_focal_dice_loss}[name]


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    lr = cfg.learning_rate
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        warmup = int(cfg.warmup_epochs * steps_per_epoch)
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else cfg.learning_rate, max(1, total - warmup), alpha=0.01,
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr)
    return keras.optimizers.Adam(lr)


def compute_device() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax
            return jax.devices()[0].platform
        if backend == "torch":
            import torch
            return "cuda" if torch.cuda.is_available() else "cpu"
        if backend == "tensorflow":
            import tensorflow as tf
            return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    except Exception:
        pass
    return "unknown"


def augmented_batches(images, masks, cfg: TrainConfig):
    import keras

    class AugmentedBatches(keras.utils.PyDataset):
        """Each epoch: every training case ``augment_copies`` times, freshly augmented.

        Every batch draws from its own generator, seeded by (seed, epoch,
        batch): a run's batches are the same whatever order they are asked
        for in, by worker threads or by Keras looking ahead (before a fit it
        may take a batch or two to build the model's loss, then start the
        epoch again).
        """

        def __init__(self):
            # Threads, not processes: cv2 and numpy release the GIL.
            super().__init__(workers=cfg.data_workers, use_multiprocessing=False)
            self.epoch = 0
            self.order = self._shuffle()

        def _shuffle(self):
            rng = np.random.default_rng([cfg.seed, self.epoch])
            return rng.permutation(np.repeat(np.arange(len(images)), cfg.augment_copies))

        def __len__(self):
            n = math.ceil(len(self.order) / cfg.batch_size)
            return min(n, cfg.steps_per_epoch) if cfg.steps_per_epoch else n

        def __getitem__(self, index):
            rng = np.random.default_rng([cfg.seed, self.epoch, index])
            idx = self.order[index * cfg.batch_size:(index + 1) * cfg.batch_size]
            xs, ys = [], []
            for i in idx:
                x, y = augment_pair(images[i].astype(np.float32), masks[i], rng, cfg.augment)
                xs.append(np.repeat(finish_intensity(x, cfg.intensity)[..., None], 3, axis=2))
                ys.append(y[..., None].astype(np.float32))
            return np.stack(xs), np.stack(ys)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._shuffle()

    return AugmentedBatches()


def mask_scores(probs: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    pred = probs >= threshold
    return (float(np.mean([jaccard(p, t) for p, t in zip(pred, truth)])),
            float(np.mean([dice(p, t) for p, t in zip(pred, truth)])))


def panel_cases(val_ids: list[str], n: int) -> list[int]:
    """Indices of the snapshot panel: the study's monitor case first when present."""
    order = list(range(len(val_ids)))
    for special in (scr.SHOWCASE_CASE, scr.MONITOR_CASE):
        if special in val_ids:
            i = val_ids.index(special)
            order.remove(i)
            order.insert(0, i)
    return order[:n]


def initial_model(cfg: TrainConfig):
    """The model a run starts from: random weights drawn under ``cfg.seed``
    (or the encoder's ImageNet file), then ``cfg.init_weights`` if given."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = build_unet(cfg.input_size, cfg.encoder_weights)
    if cfg.init_weights:
        # The U-Net is fully convolutional: weights learned at one input size
        # initialise training at another (e.g. 128 px -> 256 px fine-tuning).
        load_compact(model, cfg.init_weights)
    return model


def compiled_model(cfg: TrainConfig, steps_per_epoch: int):
    model = initial_model(cfg)
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch), loss=make_loss(cfg.loss))
    return model


class CompiledModels:
    """Compiled models kept between fits that share a training step: the
    hyper-parameter search's trials and folds.

    Under JAX every new model compiles its training step again, ~30-60 s
    per fold before the first step on the lent H200 at 128 px, against
    13-50 steps per epoch: the GPU search of the left clavicle ran two
    trials in its lease, mostly compiling. A fit whose training step matches
    a kept model's (input size, batch size, optimiser, momentum, loss and
    learning-rate schedule; a constant learning rate is a variable of the
    optimiser, not part of the compiled step) takes that model instead of
    building one, reset to where a new one would start: the weights a new
    model draws under the fit's seed, the optimiser's state before its first
    step (step count included), the fit's learning rate. The fit then
    trains as a new model would (``tests/test_tune.py`` compares the two).

    At most ``max_models`` are kept, the least recently used dropped first.
    """

    def __init__(self, max_models: int = 6):
        self.max_models = max_models
        self._models: OrderedDict = OrderedDict()   # step key -> (model, optimiser's initial state)
        self._initial_weights: dict = {}            # start key -> the weights a new model starts with
        self.built = 0
        self.reused = 0

    @staticmethod
    def step_key(cfg: TrainConfig, steps_per_epoch: int) -> tuple:
        # A schedule's constants (its rate, length, warm-up) are traced into the step.
        schedule = (None if cfg.schedule == "constant" else
                    (cfg.schedule, cfg.learning_rate, cfg.epochs, steps_per_epoch, cfg.warmup_epochs))
        return (cfg.input_size, cfg.batch_size, cfg.optimizer, cfg.momentum, cfg.loss, schedule)

    @staticmethod
    def start_key(cfg: TrainConfig) -> tuple:
        return (cfg.input_size, cfg.seed, cfg.encoder_weights, cfg.init_weights)

    def model_for(self, cfg: TrainConfig, steps_per_epoch: int):
        """A compiled model for ``cfg``, in the state a new one would start in."""
        import keras

        key, start = self.step_key(cfg, steps_per_epoch), self.start_key(cfg)
        if key not in self._models:
            model = compiled_model(cfg, steps_per_epoch)
            self._initial_weights.setdefault(start, model.get_weights())
            model.optimizer.build(model.trainable_variables)
            optimizer_start = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
            self._models[key] = (model, optimizer_start)
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            self.built += 1
            return model
        self._models.move_to_end(key)
        model, optimizer_start = self._models[key]
        if start not in self._initial_weights:
            # An uncompiled model costs a second or two; compiling is what is saved.
            self._initial_weights[start] = initial_model(cfg).get_weights()
        keras.utils.set_random_seed(cfg.seed)
        model.set_weights(self._initial_weights[start])
        for variable, value in zip(model.optimizer.variables, optimizer_start):
            variable.assign(value)
        if cfg.schedule == "constant":
            model.optimizer.learning_rate = float(cfg.learning_rate)
        self.reused += 1
        return model


def fit_with_validation(cfg: TrainConfig, train_images: np.ndarray, train_masks: np.ndarray,
                        val_x: np.ndarray, val_masks: np.ndarray, on_epoch=None, verbose: int = 0,
                        models: CompiledModels | None = None):
    """Build, compile and fit one region model, validating after every epoch.

    ``on_epoch(epoch, row, val_probs, model)`` is called after each epoch with the
    history row; returning True stops training (early stopping, pruning).
    ``models`` keeps compiled models between calls (the search's trials and
    folds); without it every call builds and compiles its own.
    Returns (model, history). Shared by training and hyper-parameter search.
    """
    import keras

    batches = augmented_batches(train_images, train_masks, cfg)
    model = (compiled_model(cfg, len(batches)) if models is None
             else models.model_for(cfg, len(batches)))
    history: list[dict] = []
    fit_started = time.time()

    class EpochMonitor(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if cfg.recalibrate_bn_each_epoch:
                # One augmented copy per case: cheap, and the distribution trained on.
                recalibrate_batch_norm(self.model, augmented_copies(
                    train_images, 1, cfg.seed + 1000 + epoch, cfg.augment, cfg.intensity))
            probs = predict_probabilities(self.model, val_x)
            iou, dsc = mask_scores(probs, val_masks)
            lr = self.model.optimizer.learning_rate
            row = {"epoch": epoch + 1, "loss": float(logs.get("loss", math.nan)),
                   "val_iou": iou, "val_dice": dsc,
                   "learning_rate": float(keras.ops.convert_to_numpy(lr)),
                   "seconds": round(time.time() - self.started, 2)}
            history.append(row)
            if not math.isfinite(row["loss"]):
                self.model.stop_training = True      # diverged: nothing more to learn
            if on_epoch is not None and on_epoch(epoch + 1, row, probs, self.model):
                self.model.stop_training = True
            if cfg.time_limit_s and epoch + 1 < cfg.epochs and (
                    time.time() - fit_started + row["seconds"] > cfg.time_limit_s):
                row["stopped_by_time_limit"] = True     # another epoch would not fit
                self.model.stop_training = True

    # The batches shuffle themselves, from the run's seed. Keras' own shuffle of
    # their order would draw from Python's global generator, which building a
    # model also draws from: a reused model (CompiledModels) would get another order.
    model.fit(batches, epochs=cfg.epochs, verbose=verbose, callbacks=[EpochMonitor()], shuffle=False)
    return model, history


def train_region(cfg: TrainConfig, dataset: scr.SCRDataset, out_dir: str | os.PathLike,
                 verbose: int = 1) -> dict:
    """Train one region's model; write weights, history, snapshots; return its manifest entry."""
    cfg = cfg.resolved()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_ids, val_ids = _split(cfg, dataset)
    region_index = REGION_KEYS.index(cfg.region)
    tr = scr.pack(dataset, train_ids, cfg.input_size, view=cfg.view)
    va = scr.pack(dataset, val_ids, cfg.input_size, view=cfg.view)
    val_x = scr.model_inputs(va["images"], cfg.intensity)
    val_masks = va["masks"][:, region_index].astype(bool)

    panel = panel_cases(val_ids, cfg.snapshot_cases)
    snapshots, snapshot_epochs = [], []
    best = {"val_iou": -1.0, "epoch": 0, "weights": None}

    def on_epoch(epoch, row, probs, model):
        snapshots.append(np.round(probs[panel] * 255).astype(np.uint8))
        snapshot_epochs.append(epoch)
        if verbose:
            print(f"  {cfg.region} epoch {epoch}/{cfg.epochs}: loss {row['loss']:.4f} "
                  f"val IoU {row['val_iou']:.4f} Dice {row['val_dice']:.4f} ({row['seconds']:.0f} s)",
                  flush=True)
        if row["val_iou"] > best["val_iou"]:
            best.update(val_iou=row["val_iou"], epoch=epoch,
                        weights=[w.copy() for w in model.get_weights()] if cfg.restore_best else None)
            return False
        return epoch - best["epoch"] >= cfg.patience

    t0 = time.time()
    model, history = fit_with_validation(cfg, tr["images"], tr["masks"][:, region_index],
                                         val_x, val_masks, on_epoch, verbose)
    train_seconds = time.time() - t0
    if cfg.restore_best and best["weights"] is not None:
        model.set_weights(best["weights"])
    recalibration = None
    if cfg.recalibrate_bn and history:
        recalibration = _recalibrate(model, cfg, tr["images"], val_x, val_masks)
    export = _export_int8(model, cfg, out_dir, val_x)
    val_iou, val_dice = mask_scores(export["probabilities"], val_masks)

    history_name, snapshot_name = f"{cfg.region}_history.json", f"{cfg.region}_snapshots.npz"
    (out_dir / history_name).write_text(json.dumps(history, indent=1) + "\n")
    # Case ids are stored (names, not pixels); the app overlays them on the
    # radiograph only when CXR_DATA_DIR provides that case.
    write_snapshots(out_dir / snapshot_name, np.stack(snapshots), snapshot_epochs,
                    [val_ids[i] for i in panel])
    training = _training_record(cfg, train_ids, val_ids, history, best, train_seconds)
    training["batch_norm_recalibration"] = recalibration and {**recalibration,
                                                              "validation_iou_after": val_iou}
    entry = {
        "weights": f"{cfg.region}.npz", "weights_bytes": export["bytes"],
        "weights_format": COMPACT_FORMAT, "input_size": cfg.input_size,
        "field_of_view": cfg.field_of_view, "preprocessing": cfg.preprocessing(),
        "hyperparameters": cfg.hyperparameters(),
        "study_hyperparameters": get_region(cfg.region).study.as_dict(),
        "training": training,
        "metrics": {"validation_at_input_size": {"jaccard": val_iou, "dice": val_dice,
                                                 "cases": len(val_ids)},
                    "int8_vs_float_mask_iou": export["agreement"], "int8_rounding": export["rounding"],
                    "int8_vs_float_mask_iou_by_rounding": export["agreements"]},
        "history": history_name, "snapshots": snapshot_name,
    }
    update_region(out_dir, cfg.region, entry)
    if cfg.init_weights and prepend_earlier_stage(out_dir, cfg.region, cfg.init_weights):
        entry = read_manifest(out_dir)["regions"][cfg.region]
    return entry


def _split(cfg: TrainConfig, dataset) -> tuple[list[str], list[str]]:
    """(training cases, validation cases) of the run, with its caps applied."""
    train_ids, val_ids = scr.training_split(dataset.cases_with_masks(), cfg.fold)
    train_ids = sorted(train_ids)[: cfg.max_train_cases or None]
    val_ids = sorted(val_ids)
    if cfg.max_val_cases:
        keep = panel_cases(val_ids, len(val_ids))[: cfg.max_val_cases]
        val_ids = sorted(val_ids[i] for i in keep)
    return train_ids, val_ids


def _recalibrate(model, cfg: TrainConfig, train_images, val_x, val_masks) -> dict:
    """Re-estimate the batch-norm statistics, which lag the weights on short runs (see
    recalibrate_batch_norm), on an epoch's worth of augmented training cases: the
    distribution the weights were trained on. Returns the record."""
    before = mask_scores(predict_probabilities(model, val_x), val_masks)[0]
    recalibrate_batch_norm(model, augmented_copies(train_images, cfg.augment_copies,
                                                   cfg.seed + 1, cfg.augment, cfg.intensity))
    return {"cases": len(train_images), "augmented_copies": cfg.augment_copies,
            "validation_iou_before": before}


def _export_int8(model, cfg: TrainConfig, out_dir: Path, val_x) -> dict:
    """Compact export, and proof that the int8 model agrees with the float one.

    Both roundings are tried and the one whose masks agree better with the float
    model's is kept (nearest on a tie): nearest rounding undoes a fine-tune that
    moved its weights by less than half an int8 step (model.INT8_ROUNDINGS).
    """
    if cfg.keep_float:
        np.savez(out_dir / f"{cfg.region}.float.npz", *model.get_weights())
    masks_float = predict_probabilities(model, val_x) >= 0.5
    compact = build_unet(cfg.input_size)
    agreements, exports = {}, {}
    for rounding in INT8_ROUNDINGS:
        path = out_dir / f"{cfg.region}.{rounding}.npz"
        size = save_compact(model, path, rounding, seed=cfg.seed)
        load_compact(compact, path)
        probs = predict_probabilities(compact, val_x)
        agreements[rounding] = mask_scores(probs, masks_float)[0]
        exports[rounding] = (path, size, probs)
    kept = max(INT8_ROUNDINGS, key=agreements.get)      # the first, nearest, on a tie
    for rounding, (path, _, _) in exports.items():
        if rounding == kept:
            path.replace(out_dir / f"{cfg.region}.npz")
        else:
            path.unlink()
    _, size_bytes, probs_int8 = exports[kept]
    return {"rounding": kept, "bytes": size_bytes, "probabilities": probs_int8,
            "agreement": agreements[kept], "agreements": agreements}


def _training_record(cfg: TrainConfig, train_ids, val_ids, history, best, seconds) -> dict:
    """The manifest's ``training``: cases, epochs, augmentation, where it ran."""
    import keras

    return {
        "fold": cfg.fold, "cases": train_ids, "validation_cases": val_ids,
        "validation_is_training": cfg.fold == "all",
        "epochs_run": len(history), "epoch_kept": best["epoch"] if cfg.restore_best else len(history),
        "stopped_by_time_limit": bool(history and history[-1].get("stopped_by_time_limit")),
        "restore_best": cfg.restore_best, "seconds": round(seconds, 1),
        "backend": keras.backend.backend(), "device": compute_device(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "keras": keras.__version__, "python": platform.python_version(),
        "augment": cfg.augment.as_dict(), "augment_preset": cfg.augment_preset,
        "seed": cfg.seed, "note": cfg.note,
        "encoder_weights": "imagenet (local file)" if cfg.encoder_weights else None,
        "init_weights": cfg.init_weights,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxr_dash.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_arguments(p)
    _schedule_arguments(p)
    _augmentation_arguments(p)
    _run_arguments(p)
    return p


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", type=region_or_all, default=None,
                   help=f"one of {', '.join(REGION_KEYS)}, or all (default: all; with "
                        "--from-trial: the trial's region)")
    p.add_argument("--data", type=data_or_pack_argument, default=None,
                   help=DATA_OR_PACK_HELP)
    p.add_argument("--out", default="runs/latest", help="model-set folder to write (e.g. weights)")
    p.add_argument("--fold", default="odd", choices=scr.TRAINING_SPLITS,
                   help="train on this fold and validate on the other; all: every case; "
                        "odd+half-even: the odd fold and every other even case, validated "
                        "on the remaining even cases")
    p.add_argument("--input-size", type=input_size_argument, default=None,
                   help=f"a multiple of 32 (default: {TrainConfig.input_size})")
    p.add_argument("--field-of-view", nargs="+", default=None, metavar="F",
                   help="part of the image the model sees: TOP BOTTOM LEFT RIGHT as fractions, "
                        "or 'full' (default: the region's, from the registry; clavicles see "
                        "the upper half on their own side)")


def _schedule_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"at most this many (default: {TrainConfig.epochs})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="default: the study's")
    p.add_argument("--lr", type=float, default=None, help="default: the study's")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: the study's (1)")
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--loss", choices=LOSSES, default=None, help=f"default: {TrainConfig.loss}")


def _augmentation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--augment-copies", type=positive_int, default=None,
                   help=f"augmented copies of each case per epoch (default: {TrainConfig.augment_copies})")
    p.add_argument("--augment", choices=tuple(AUGMENT_PRESETS), default="standard",
                   help="standard: rotation 10, shift 8%%, scale 0.9-1.1, gamma 0.7-1.5; strong: "
                        "for other hospitals' radiographs (scale 0.7-1.3, aspect 0.8-1.25, "
                        "rotation 15, shift 15%%, gamma 0.4-2.5, grey margins, blur, edge "
                        "enhancement, noise, JPEG, burned-in text)")
    p.add_argument("--intensity", choices=INTENSITY_METHODS, default="percentile",
                   help="model-space intensity step after the percentile window (recorded in "
                        "the manifest; inference applies the same): percentile+clahe adds CLAHE")
    p.add_argument("--band-augment", type=probability_argument, default=0.0, metavar="P",
                   help="share of augmented copies shrunk inside uniform bands (black, white or "
                        "grey, 2-15%% of a side, on random sides), as padding or collimation "
                        "frames a radiograph (default: 0, none)")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--no-restore-best", action="store_true",
                   help="keep the last epoch's weights (use when the validation fold is also the test fold)")
    p.add_argument("--snapshot-cases", type=int, default=4)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--max-train-cases", type=int, default=None)
    p.add_argument("--max-val-cases", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-weights", default=None, help="local ImageNet ResNet34 weights file")
    p.add_argument("--init-weights", default=None,
                   help="start from these compact weights (.npz of an earlier run; any input size)")
    p.add_argument("--from-trial", default=None, metavar="FILE",
                   help="a tuning study's best trial, <region>_best.json as python -m cxr_dash.tune "
                        "writes it into its --out folder after every session: its optimiser, "
                        "learning rate, batch size, loss, epochs and the input size, augmentation "
                        "copies and field of view it was scored under, each unless given here")
    p.add_argument("--keep-float", action="store_true",
                   help="also write REGION.float.npz, the float32 weights (~98 MB), to re-export "
                        "or study quantisation; keep it out of weights/")
    p.add_argument("--no-bn-recalibration", action="store_true",
                   help="keep the batch-norm statistics training ended with instead of "
                        "re-estimating them on the training cases")
    p.add_argument("--recalibrate-bn-each-epoch", action="store_true",
                   help="also re-estimate them before every validation (one augmented copy of the "
                        "training cases; ~+25%% time per epoch): the validation curve, early "
                        "stopping and the best epoch then judge the weights, not stale statistics")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop after the epoch that would end past this much fitting time "
                        "(the learning-rate schedule is not shortened: for a lease's safety)")
    p.add_argument("--data-workers", type=positive_int, default=1,
                   help=DATA_WORKERS_HELP)
    p.add_argument("--note", default="")
    p.add_argument("--quiet", action="store_true")


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        view_argument(args.field_of_view)
    except ValueError as exc:
        p.error(f"argument --field-of-view: TOP BOTTOM LEFT RIGHT fractions or 'full': {exc}")
    args.trial = None
    if args.from_trial:
        _apply_trial(p, args)
    args.region = args.region or "all"
    return args


def _apply_trial(p: argparse.ArgumentParser, args) -> None:
    """Read --from-trial into args.trial and settle the region with it (or exit)."""
    try:
        args.trial = load_trial(args.from_trial)
    except ValueError as exc:
        p.error(f"argument --from-trial: {exc}")
    trial_region = args.trial["region"]
    if args.region == "all":
        p.error("argument --from-trial: a trial is one region's; pass --region "
                f"{trial_region or 'REGION'} (or leave --region out), not all")
    if trial_region is None and args.region is None:
        p.error(f"argument --from-trial: {args.from_trial} names no region: pass --region")
    if trial_region is not None and args.region not in (None, trial_region):
        p.error(f"argument --from-trial: {args.from_trial} is a trial for {trial_region}, "
                f"not {args.region}")
    args.region = args.region or trial_region
    try:
        config_from_args(args, args.region).resolved()
    except (TypeError, ValueError) as exc:   # e.g. an optimiser this version lacks
        p.error(f"argument --from-trial: {args.from_trial}: {exc}")


def region_or_all(value: str) -> str:
    return "all" if value.strip().lower() == "all" else region_argument(value)


def load_trial(path: str | os.PathLike) -> dict:
    """{"region", "params", "settings"} of a trial file; older ones lack region or settings."""
    try:
        trial = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not JSON ({exc})") from None
    if not isinstance(trial, dict):
        raise ValueError(f"{path} is not a trial (a JSON object)")
    params = trial.get("params", trial)
    settings = trial.get("settings") or {}
    if not isinstance(params, dict) or not isinstance(settings, dict):
        raise ValueError(f"{path} is not a trial: params and settings must be objects")
    try:
        region = get_region(trial["region"]).key if trial.get("region") else None
    except (KeyError, AttributeError):
        raise ValueError(f"{path} names an unknown region {trial['region']!r}") from None
    values = {**{k: params[k] for k in TRIAL_PARAMS if k in params},
              **{k: settings[k] for k in TRIAL_SETTINGS if settings.get(k) is not None}}
    # Caught here, not as a TypeError epochs into training.
    for key, value in values.items():
        if key not in TRIAL_TYPES:
            continue                     # the field of view: FieldOfView.parse judges it
        kind, wanted = TRIAL_TYPES[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is not str and value <= 0):
            raise ValueError(f"{path}: {key} must be {wanted}, got {value!r}")
    if values.get("input_size", 32) % 32:
        raise ValueError(f"{path}: input_size must be a multiple of 32, got {values['input_size']}")
    return {"region": region, "params": {k: v for k, v in values.items() if k in TRIAL_PARAMS},
            "settings": {k: v for k, v in values.items() if k in TRIAL_SETTINGS}}


def trial_values(args) -> tuple[dict, list[str]]:
    """({TrainConfig field: value} the trial sets, [trial fields a typed flag overrides])."""
    trial = getattr(args, "trial", None)
    if trial is None:
        return {}, []
    chosen = {**trial["params"], **trial["settings"]}
    flags = {**TRIAL_PARAMS, **TRIAL_SETTINGS}
    overridden = [k for k in chosen if getattr(args, flags[k]) is not None]
    return {k: v for k, v in chosen.items() if k not in overridden}, overridden


def view_argument(values: list[str] | None) -> list[float] | str | None:
    if values is None:
        return None                                # the registry's default
    if values == ["full"]:
        return "full"
    return FieldOfView.parse(values).as_list()    # validates: 4 fractions, in order


def config_from_args(args, region: str) -> TrainConfig:
    # Flags left alone (None) fall to the trial (--from-trial), then to
    # TrainConfig's defaults; a None optimiser, rate or batch to the registry's.
    given = {"input_size": args.input_size, "epochs": args.epochs, "loss": args.loss,
             "augment_copies": args.augment_copies}
    cfg = TrainConfig(
        region=region, fold=args.fold, **{k: v for k, v in given.items() if v is not None},
        optimizer=args.optimizer, learning_rate=args.lr, batch_size=args.batch_size,
        momentum=args.momentum, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        patience=args.patience, restore_best=not args.no_restore_best, snapshot_cases=args.snapshot_cases,
        steps_per_epoch=args.steps_per_epoch, max_train_cases=args.max_train_cases,
        max_val_cases=args.max_val_cases, seed=args.seed,
        encoder_weights=args.encoder_weights, init_weights=args.init_weights,
        field_of_view=view_argument(args.field_of_view), note=args.note,
        keep_float=args.keep_float, recalibrate_bn=not args.no_bn_recalibration,
        recalibrate_bn_each_epoch=args.recalibrate_bn_each_epoch,
        time_limit_s=args.time_limit, data_workers=args.data_workers,
        augment=replace(AUGMENT_PRESETS[args.augment], band_probability=args.band_augment),
        augment_preset=args.augment, intensity=args.intensity)
    for key, value in trial_values(args)[0].items():
        setattr(cfg, key, value)
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    dataset = open_dataset(args.data, packs_allowed=True)
    regions = REGION_KEYS if args.region == "all" else (args.region,)
    if args.trial is not None:
        used, overridden = trial_values(args)
        print(f"[{args.region}] from trial {args.from_trial}: {', '.join(used) or 'nothing'}"
              + (f" (flags given instead: {', '.join(overridden)})" if overridden else ""), flush=True)
    for region in regions:
        cfg = config_from_args(args, region).resolved()
        print(f"[{region}] {cfg.optimizer} lr={cfg.learning_rate} batch={cfg.batch_size} "
              f"size={cfg.input_size} view={cfg.view.describe()} fold={cfg.fold} "
              f"epochs<={cfg.epochs}", flush=True)
        entry = train_region(cfg, dataset, args.out, verbose=0 if args.quiet else 1)
        m = entry["metrics"]
        print(f"[{region}] done: validation IoU {m['validation_at_input_size']['jaccard']:.4f} "
              f"(int8 vs float agreement {m['int8_vs_float_mask_iou']:.4f}, "
              f"{m['int8_rounding']} rounding), "
              f"{entry['weights_bytes'] / 1e6:.1f} MB -> {Path(args.out) / entry['weights']}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
