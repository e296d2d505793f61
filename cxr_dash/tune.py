"""Hyper-parameter search per region: K-fold cross-validation with Bayesian optimisation.

    python -m cxr_dash.tune --region heart --folds 2 --trials 20

Optuna's TPE sampler searches optimiser (SGD, RMSprop, Adam), learning rate
(log scale), batch size, loss variant and an epoch budget, maximising the
mean validation IoU over K folds, as the study did. A median pruner stops
hopeless trials after their first fold's epochs. The study's own
combination for the region is enqueued as the first trial, so every search
starts by measuring the published choice.

Studies live in ``--out`` (an SQLite file per region): re-running the same
command resumes. ``--export`` writes the trials and the best combination as
JSON and as the study's table; ``python -m cxr_dash.train --from-trial
results/tune/<region>_best.json`` trains with the winner.
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
from .cli import open_dataset
from .regions import REGION_KEYS, get_region
from .train import LOSSES, OPTIMIZERS, TrainConfig, fit_with_validation

BATCH_SIZES = (1, 2, 4, 8, 16)


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
    return optuna.create_study(
        study_name=study_name(region), storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        # Early epochs from random initialisation are noisy: judge a trial only
        # after ``prune_after`` epochs, against at least 3 finished trials.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=prune_after))


def study_trial_params(region: str, args) -> dict:
    """The published combination, brought inside this search's space where it lies outside."""
    hp = get_region(region).study
    batch = min(args.batch_sizes, key=lambda b: (abs(b - hp.batch_size), b))
    return {"optimizer": hp.optimizer,
            "learning_rate": float(np.clip(hp.learning_rate, args.lr_min, args.lr_max)),
            "batch_size": batch, "loss": args.losses[0], "epochs": args.max_epochs}


def make_objective(region: str, dataset: scr.SCRDataset, args, packs: dict):
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
                              recalibrate_bn_each_epoch=not args.no_bn_recalibration).resolved()
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

            _, history = fit_with_validation(cfg, tx, ty, vx, vy.astype(bool), on_epoch)
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
    payload = {"region": region, "study": study_name(region), "trials": rows,
               "best": best, "published": get_region(region).study.as_dict(),
               "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out_dir / f"{region}_trials.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if best:
        params = {k: best[k] for k in ("optimizer", "learning_rate", "batch_size", "loss", "epochs")}
        (out_dir / f"{region}_best.json").write_text(json.dumps(
            {"region": region, "params": params, "mean_iou": best["value"]}, indent=1) + "\n")
        table = ["| region | optimizer | learning rate | batch | loss | epochs | mean IoU over folds |",
                 "| --- | --- | --- | --- | --- | --- | --- |",
                 f"| {get_region(region).display_name} | {params['optimizer'].upper() if params['optimizer'] != 'rmsprop' else 'RMSprop'} "
                 f"| {params['learning_rate']:.5f} | {params['batch_size']} | {params['loss']} | "
                 f"{params['epochs']} | {best['value']:.4f} |"]
        (out_dir / f"{region}_best.md").write_text("\n".join(table) + "\n")
    return payload


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


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m cxr_dash.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--region", required=True, help=f"one of {', '.join(REGION_KEYS)}")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--trials", type=int, default=20, help="trials to add to the study")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default="results/tune")
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--min-epochs", type=int, default=2)
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--lr-min", type=float, default=1e-4)
    p.add_argument("--lr-max", type=float, default=1e-1)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    p.add_argument("--losses", nargs="+", choices=LOSSES, default=["bce_jaccard"],
                   help="loss variants to search (default: BCE + Jaccard only)")
    p.add_argument("--augment-copies", type=int, default=1)
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
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    import optuna

    args = parse_args(argv)
    region = get_region(args.region).key
    dataset = open_dataset(args.data)
    cases = dataset.cases_with_masks()
    # The search sees what training will see: the region's default field of view.
    packed = scr.pack(dataset, cases, args.input_size,
                      view=TrainConfig(region=region).resolved().view)
    packs = {"images": packed["images"], "masks": packed["masks"],
             "index": {c: i for i, c in enumerate(cases)}}
    out = Path(args.out)
    study = open_study(region, out, args.seed, args.prune_after)
    if not study.trials:
        study.enqueue_trial(study_trial_params(region, args), user_attrs={"source": "study table"})
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def report(study, trial):
        value = f"mean IoU {trial.value:.4f}" if trial.state.name == "COMPLETE" else ""
        print(f"[{region}] trial {trial.number} {trial.state.name.lower()}: {value}  {trial.params}",
              flush=True)

    study.optimize(make_objective(region, dataset, args, packs), n_trials=args.trials,
                   timeout=args.timeout, callbacks=[report], catch=(FloatingPointError,))
    payload = export(study, region, out)
    if payload["best"]:
        print((out / f"{region}_best.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
