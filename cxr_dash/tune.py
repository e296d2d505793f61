"""Hyper-parameter search per region: K-fold cross-validation with Bayesian optimisation.

    python -m cxr_dash.tune --region heart --folds 2 --trials 20

Optuna's TPE sampler searches optimiser (SGD, RMSprop, Adam), learning rate
(log scale), batch size, loss variant and an epoch budget, maximising the
mean validation IoU over K folds, as the study did. A median pruner stops
hopeless trials after their first fold's epochs. The study's own
combination for the region is enqueued as the first trial, so every search
starts by measuring the published choice.

Studies live in ``--out`` (an SQLite file per region): re-running the same
command resumes. A study keeps the settings it was created with; a resume
whose settings would score trials differently (folds, input size, field of
view, augmentation copies, the case and step caps, batch-norm recalibration)
or change the choices searched (batch sizes, losses) stops with a message
naming them: repeat them, or start a new study in another ``--out``. The
learning-rate and epoch ranges may change between sessions (each trial is
still scored the same way).

Folds and trials that share a training step (input size, batch size,
optimiser, loss) share one compiled model, reset between fits to where a new
one would start (``train.CompiledModels``): under JAX compiling otherwise
costs more than a short trial trains. ``--no-model-reuse`` builds one per fit.

After every session the study is exported into ``--out``:
``<region>_trials.json`` (every trial and the search settings),
``<region>_best.json`` (the best trial and the settings it was scored under)
and ``<region>_best.md`` (the study's table). ``python -m cxr_dash.train
--from-trial results/tune/<region>_best.json`` trains with the winner.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import data as scr
from .cli import (DATA_OR_PACK_HELP, DATA_WORKERS_HELP, data_or_pack_argument, input_size_argument,
                  open_dataset, positive_int, region_argument)
from .preprocess import FieldOfView
from .regions import REGION_KEYS, get_region
from .train import LOSSES, OPTIMIZERS, TRIAL_PARAMS, CompiledModels, TrainConfig, fit_with_validation

BATCH_SIZES = (1, 2, 4, 8, 16)
# Search settings (``search_settings``) that fix how a trial is scored or which
# choices Optuna may draw: a study refuses to resume under others. The ranges
# (RANGE_SETTINGS) only bound the draws: Optuna accepts them changed.
SCORING_SETTINGS = ("folds", "input_size", "field_of_view", "augment_copies", "steps_per_epoch",
                    "max_train_cases", "max_val_cases", "no_bn_recalibration")
CHOICE_SETTINGS = ("batch_sizes", "losses")
RANGE_SETTINGS = ("lr_min", "lr_max", "min_epochs", "max_epochs")


def kfold_split(case_ids: list[str], k: int) -> list[tuple[list[str], list[str]]]:
    """K folds by case number modulo K (K = 2 is the SCR odd/even protocol)."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    ids = sorted(case_ids)
    folds = [[c for c in ids if scr.case_number(c) % k == (j + 1) % k] for j in range(k)]
    return [([c for c in ids if c not in set(val)], val) for val in folds]


def study_name(region: str) -> str:
    return f"cxr-dash-{region}"


def open_study(region: str, out_dir: Path, seed: int = 0, prune_after: int = 3):
    import optuna

    out_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out_dir / f'{region}.db').resolve()}"
    study = optuna.create_study(
        study_name=study_name(region), storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        # Early epochs from random initialisation are noisy: judge a trial only
        # after ``prune_after`` epochs, against at least 3 finished trials.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=prune_after))
    if study.trials:
        # A resumed sampler seeded as before replays the same random start-up
        # draws: the first trials of every session would repeat earlier ones.
        study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=5)
    return study


def search_settings(region: str, args) -> dict:
    """What a study's trials were scored and drawn under (stored with the study, exported)."""
    return {"folds": args.folds, "input_size": args.input_size,
            # The search sees what training will see: the region's default field of view.
            "field_of_view": TrainConfig(region=region).resolved().field_of_view,
            "augment_copies": args.augment_copies, "steps_per_epoch": args.steps_per_epoch,
            "max_train_cases": args.max_train_cases, "max_val_cases": args.max_val_cases,
            "no_bn_recalibration": args.no_bn_recalibration,
            "batch_sizes": list(args.batch_sizes), "losses": list(args.losses),
            "lr_min": args.lr_min, "lr_max": args.lr_max,
            "min_epochs": args.min_epochs, "max_epochs": args.max_epochs}


def settings_summary(settings: dict | None) -> str:
    """What a study's trials were scored under, in words (the app's search view)."""
    if not settings:
        return ("not stored: the study predates stored search settings (its command is in "
                "the README)")
    loss_names = {"bce_jaccard": "BCE + Jaccard", "bce_dice": "BCE + Dice",
                  "focal_jaccard": "focal + Jaccard", "focal_dice": "focal + Dice"}
    whole = FieldOfView.parse(settings.get("field_of_view")).is_full
    parts = [f"{settings['folds']} folds",
             f"{settings['input_size']} px " + ("inputs" if whole else "over the region's field of view"),
             (f"{settings['min_epochs']}–{settings['max_epochs']} epochs"
              if settings["min_epochs"] != settings["max_epochs"] else
              f"{settings['max_epochs']} epoch{'s' if settings['max_epochs'] != 1 else ''}"),
             "batch " + "/".join(map(str, settings["batch_sizes"])),
             f"learning rate {settings['lr_min']:g}–{settings['lr_max']:g}",
             " or ".join(loss_names.get(x, x) for x in settings["losses"]),
             f"{settings['augment_copies']} augmented "
             f"cop{'y' if settings['augment_copies'] == 1 else 'ies'} per case per epoch"]
    caps = [f"{settings[k]} {what if settings[k] != 1 else one}" for k, what, one in (
        ("max_train_cases", "training cases", "training case"),
        ("max_val_cases", "validation cases", "validation case"),
        ("steps_per_epoch", "steps per epoch", "step per epoch")) if settings.get(k)]
    if caps:
        parts.append("at most " + ", ".join(caps) + " per fold")
    parts.append("batch-norm statistics as training left them" if settings.get("no_bn_recalibration")
                 else "batch-norm statistics re-estimated before each validation")
    return " · ".join(parts)


def setting_text(key: str, value) -> str:
    if key == "field_of_view":
        return f"field of view {value} (the registry's for the region)"
    if key == "no_bn_recalibration":
        return "--no-bn-recalibration" if value else "batch-norm recalibration (no --no-bn-recalibration)"
    shown = " ".join(map(str, value)) if isinstance(value, list) else value
    return f"--{key.replace('_', '-')} {shown}"


def adopt_search_settings(study, settings: dict) -> list[str]:
    """Store ``settings`` with the study, or check them against those it has.

    Returns [what differs, as "stored (now: given)"] when the study has trials
    that the given settings would not score, or draw, the same way; [] when the
    study may go on (its ranges then become the given ones).
    """
    stored = study.user_attrs.get("search_settings")
    if not study.trials:
        stored = None                  # nothing measured yet: the new settings hold
    elif stored is None:
        # A study from before settings were stored: its trials' distributions
        # still tell the choices searched, which Optuna refuses to change.
        stored = {}
        for t in study.trials:
            for key, param in (("batch_sizes", "batch_size"), ("losses", "loss")):
                if param in t.distributions:
                    stored[key] = list(t.distributions[param].choices)
        print(f"note: {study.study_name} predates stored search settings: the folds, input size "
              "and caps its trials were scored with cannot be checked", file=sys.stderr)
    fixed = SCORING_SETTINGS + CHOICE_SETTINGS
    differing = [f"{setting_text(k, stored[k])} (now: {setting_text(k, settings[k])})"
                 for k in fixed if stored and k in stored and stored[k] != settings[k]]
    if not differing:
        widened = [f"{setting_text(k, stored[k])} -> {settings[k]}" for k in RANGE_SETTINGS
                   if stored and k in stored and stored[k] != settings[k]]
        if widened:
            print(f"note: {study.study_name}: search ranges changed: {', '.join(widened)}", file=sys.stderr)
        study.set_user_attr("search_settings", settings)
    return differing


def study_trial_params(region: str, args) -> dict:
    """The published combination, brought inside this search's space where it lies outside."""
    hp = get_region(region).study
    batch = min(args.batch_sizes, key=lambda b: (abs(b - hp.batch_size), b))
    return {"optimizer": hp.optimizer,
            "learning_rate": float(np.clip(hp.learning_rate, args.lr_min, args.lr_max)),
            "batch_size": batch, "loss": args.losses[0], "epochs": args.max_epochs}


def make_objective(region: str, dataset: scr.SCRDataset, args, packs: dict,
                   models: CompiledModels | None = None):
    import optuna

    splits = kfold_split(dataset.cases_with_masks(), args.folds)
    region_index = REGION_KEYS.index(region)

    def arrays(ids):
        idx = [packs["index"][c] for c in ids]
        return packs["images"][idx], packs["masks"][idx, region_index]

    def objective(trial: "optuna.Trial") -> float:
        params = {
            "optimizer": trial.suggest_categorical("optimizer", list(OPTIMIZERS)),
            "learning_rate": trial.suggest_float("learning_rate", args.lr_min, args.lr_max, log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(args.batch_sizes)),
            "loss": trial.suggest_categorical("loss", list(args.losses)),
            "epochs": trial.suggest_int("epochs", args.min_epochs, args.max_epochs),
        }
        fold_ious = []
        for k, (train_ids, val_ids) in enumerate(splits):
            train_ids = train_ids[: args.max_train_cases or None]
            val_ids = val_ids[: args.max_val_cases or None]
            cfg = TrainConfig(region=region, fold="cv", input_size=args.input_size,
                              epochs=params["epochs"], optimizer=params["optimizer"],
                              learning_rate=params["learning_rate"], batch_size=params["batch_size"],
                              loss=params["loss"], augment_copies=args.augment_copies,
                              steps_per_epoch=args.steps_per_epoch, seed=args.seed + k,
                              recalibrate_bn_each_epoch=not args.no_bn_recalibration,
                              data_workers=args.data_workers).resolved()
            tx, ty = arrays(train_ids)
            vx, vy = arrays(val_ids)
            vx = scr.model_inputs(vx)
            best = {"iou": 0.0}

            def on_epoch(epoch, row, probs, model, k=k):
                if math.isfinite(row["val_iou"]):
                    best["iou"] = max(best["iou"], row["val_iou"])
                if k == 0:   # prune on the first fold's learning curve
                    trial.report(row["val_iou"] if math.isfinite(row["val_iou"]) else 0.0, epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at epoch {epoch} of fold 1")
                return False

            _, history = fit_with_validation(cfg, tx, ty, vx, vy.astype(bool), on_epoch, models=models)
            fold_ious.append(history[-1]["val_iou"] if history else 0.0)
            trial.set_user_attr(f"fold{k + 1}_iou", fold_ious[-1])
            trial.set_user_attr(f"fold{k + 1}_best_epoch_iou", best["iou"])
        return float(np.mean(fold_ious))

    return objective


def trials_table(study) -> list[dict]:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     **t.params, **{k: v for k, v in t.user_attrs.items()},
                     "seconds": (t.duration.total_seconds() if t.duration else None)})
    return rows


def export(study, region: str, out_dir: Path) -> dict:
    """JSON of every trial, the best trial (for ``train --from-trial``), and the study's table."""
    rows = trials_table(study)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: r["value"]) if complete else None
    settings = study.user_attrs.get("search_settings")      # None: a study from before they were kept
    published = get_region(region).study.as_dict()
    payload = {"region": region, "study": study_name(region), "settings": settings, "trials": rows,
               "best": best, "published": published,
               "published_as_run": published_as_run(rows, published),
               "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out_dir / f"{region}_trials.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if best:
        params = {k: best[k] for k in TRIAL_PARAMS}
        # The settings the winner was scored under travel with it: ``train
        # --from-trial`` applies them unless told otherwise.
        scored_under = {k: settings.get(k) for k in SCORING_SETTINGS} if settings else {}
        (out_dir / f"{region}_best.json").write_text(json.dumps(
            {"region": region, "params": params, "settings": scored_under, "mean_iou": best["value"]},
            indent=1) + "\n")
        size = f"{settings['input_size']} px" if settings else "?"
        folds = settings["folds"] if settings else "?"
        optimizer = "RMSprop" if params["optimizer"] == "rmsprop" else params["optimizer"].upper()
        table = ["| region | optimizer | learning rate | batch | loss | epochs | input size | folds "
                 "| mean IoU over folds |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
                 f"| {get_region(region).display_name} | {optimizer} "
                 f"| {params['learning_rate']:.5f} | {params['batch_size']} | {params['loss']} | "
                 f"{params['epochs']} | {size} | {folds} | {best['value']:.4f} |"]
        (out_dir / f"{region}_best.md").write_text("\n".join(table) + "\n")
    return payload


def published_as_run(rows: list[dict], published: dict) -> dict | None:
    """The enqueued study-table trial, and where this search's space made it differ from the study.

    A published value outside the search (batch 1 when ``--batch-sizes 4 8 16``,
    a learning rate beyond ``--lr-max``) was replaced by the nearest allowed
    one: its mean IoU was measured at that value, not the published one.
    """
    row = next((r for r in rows if r.get("source") == "study table"), None)
    if row is None:
        return None
    differs = {k: {"published": v, "measured": row.get(k)} for k, v in published.items()
               if row.get(k) is not None and not (row[k] == v or (isinstance(v, float) and
                                                                  math.isclose(row[k], v)))}
    return {"number": row["number"], "state": row["state"], "value": row["value"],
            "params": {k: row.get(k) for k in TRIAL_PARAMS},
            "differs": differs}


def load_exports(out_dir: str | Path) -> dict[str, dict]:
    """{region: exported payload} for every ``<region>_trials.json`` in a results folder."""
    out = {}
    for p in sorted(Path(out_dir).glob("*_trials.json")):
        try:
            payload = json.loads(p.read_text())
            out[payload["region"]] = payload
        except (json.JSONDecodeError, KeyError):
            continue
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxr_dash.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--region", required=True, type=region_argument,
                   help=f"one of {', '.join(REGION_KEYS)}")
    p.add_argument("--folds", type=positive_int, default=2, help="at least 2 (default: 2)")
    p.add_argument("--trials", type=int, default=20, help="trials to add to the study")
    p.add_argument("--data", type=data_or_pack_argument, default=None,
                   help=DATA_OR_PACK_HELP)
    p.add_argument("--out", default="results/tune",
                   help="folder of the studies (resumed) and their exports")
    p.add_argument("--input-size", type=input_size_argument, default=128, help="a multiple of 32")
    p.add_argument("--min-epochs", type=positive_int, default=2)
    p.add_argument("--max-epochs", type=positive_int, default=10)
    p.add_argument("--lr-min", type=float, default=1e-4)
    p.add_argument("--lr-max", type=float, default=1e-1)
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=list(BATCH_SIZES))
    p.add_argument("--losses", nargs="+", choices=LOSSES, default=["bce_jaccard"],
                   help="loss variants to search (default: BCE + Jaccard only)")
    p.add_argument("--augment-copies", type=positive_int, default=1)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--max-train-cases", type=int, default=None)
    p.add_argument("--max-val-cases", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="seconds for this session")
    p.add_argument("--prune-after", type=int, default=3,
                   help="epochs of the first fold before a trial may be pruned")
    p.add_argument("--no-bn-recalibration", action="store_true",
                   help="score trials with the batch-norm statistics training left (by default "
                        "they are re-estimated before every validation: short trials otherwise "
                        "score the lag of the moving statistics, ~100 steps of memory, more than "
                        "their weights)")
    p.add_argument("--data-workers", type=positive_int, default=1,
                   help=DATA_WORKERS_HELP)
    p.add_argument("--no-model-reuse", action="store_true",
                   help="build and compile a new model for every fold of every trial (by default a "
                        "compiled model is kept per input size, batch size, optimiser and loss and "
                        "reset between fits: under JAX compiling costs more than a short trial trains)")
    p.add_argument("--seed", type=int, default=0)
    return p


def parse_args(argv=None, parser: argparse.ArgumentParser | None = None):
    p = parser or build_parser()
    args = p.parse_args(argv)
    # Optuna would refuse these only once the cases are packed.
    if args.folds < 2:
        p.error(f"argument --folds: cross-validation needs at least 2 folds, got {args.folds}")
    if args.min_epochs > args.max_epochs:
        p.error(f"--min-epochs {args.min_epochs} is more than --max-epochs {args.max_epochs}")
    if not 0 < args.lr_min <= args.lr_max:
        p.error(f"the learning rates need 0 < --lr-min <= --lr-max (log scale), "
                f"got {args.lr_min} and {args.lr_max}")
    if len(set(args.batch_sizes)) < len(args.batch_sizes) or len(set(args.losses)) < len(args.losses):
        p.error("--batch-sizes and --losses take each choice once")
    return args


def main(argv=None) -> int:
    import optuna

    parser = build_parser()
    args = parse_args(argv, parser)
    region = args.region
    out = Path(args.out)
    study = open_study(region, out, args.seed, args.prune_after)
    # Checked before the cases are packed (minutes at larger sizes).
    settings = search_settings(region, args)
    differing = adopt_search_settings(study, settings)
    if differing:
        parser.error(f"study {study.study_name} in {out} has {len(study.trials)} trials run under "
                     f"other settings: {'; '.join(differing)}. Its trials are comparable, and its "
                     "choices valid, only under the same ones: repeat them, or start a new study "
                     "with another --out")
    dataset = open_dataset(args.data, packs_allowed=True)
    cases = dataset.cases_with_masks()
    packed = scr.pack(dataset, cases, args.input_size, view=FieldOfView.parse(settings["field_of_view"]))
    packs = {"images": packed["images"], "masks": packed["masks"],
             "index": {c: i for i, c in enumerate(cases)}}
    if not study.trials:
        study.enqueue_trial(study_trial_params(region, args), user_attrs={"source": "study table"})
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def report(study, trial):
        value = f"mean IoU {trial.value:.4f}" if trial.state.name == "COMPLETE" else ""
        print(f"[{region}] trial {trial.number} {trial.state.name.lower()}: {value}  {trial.params}",
              flush=True)

    models = None if args.no_model_reuse else CompiledModels()
    started = time.time()
    study.optimize(make_objective(region, dataset, args, packs, models), n_trials=args.trials,
                   timeout=args.timeout, callbacks=[report], catch=(FloatingPointError,))
    fits = f"{models.built} models compiled, {models.reused} fits reused one" if models else "no model reuse"
    print(f"[{region}] session: {time.time() - started:.0f} s, {fits}", flush=True)
    payload = export(study, region, out)
    if payload["best"]:
        print((out / f"{region}_best.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
