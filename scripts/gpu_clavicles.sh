#!/usr/bin/env bash
# What ran on the lent GPU (one H200, JAX backend) for the clavicle models; a
# record and a template, not something CI runs. The device takes at most 64 MiB
# per call and returns at most 64 MiB, so the work is split into calls made
# back to back while the machine stays warm (30 s after each call):
#
#   here:   python -m cxr_dash.pack --region left_clavicle right_clavicle \
#               --input-size 384 128 --out .gpu/data          # ~33 MB, ignored
#           mkdir -p .gpu/init && cp weights/manifest.json weights/*clavicle* .gpu/init/
#           pip download ... -d .whl keras segmodels-keras optuna ...  (see README)
#   call 1: bash scripts/gpu_clavicles.sh setup    carry .whl .gpu/init
#   call 2: bash scripts/gpu_clavicles.sh train    carry .gpu/data
#   call 3+: bash scripts/gpu_clavicles.sh fetch N  (parts of the results, 4 per call)
#
# "train" runs, side by side on the one GPU (each process its own output folder,
# so no two write one manifest):
#   heldout48_<region>: the shipped clavicle continued on its 152 training cases
#       (odd fold + every other even case), validated on the 48 even cases no
#       clavicle training step has seen: does this stage help or hurt?
#   all200_<region>:    the same stage on all 200 development cases (differing
#       only by 48 more cases; in the end not shipped: with every case trained
#       on, none is left to show it improved; README, "Training on a lent GPU");
#   tune_left_clavicle: a Bayesian search (Optuna TPE) at 128 px, 2 folds, for
#       as long as the others train.
#
# A second lease (2026-12-01; README item 13) ran two calls of "train512"
# after "setup": with EPOCHS=10 (default), then EPOCHS=20 TIME_LIMIT=330, each
# carrying .gpu/data, the 512 px packs (python -m cxr_dash.pack --region
# left_clavicle right_clavicle --input-size 512 --out .gpu/data, ~50 MB).
# What travels is limited to 64 MiB per call, tracked files included, and
# weights/ is ~122 MB: the calls were made with weights/ out of git's index
# (git rm -r -q --cached weights; /weights/ in .git/info/exclude; afterwards
# git reset -q -- weights), the weights to start from carried in .gpu/init by
# setup. Each clavicle is fine-tuned at 512 px, near the masks' own
# resolution over its window (0.5 x 0.6 of a 1024 px image), at two learning
# rates side by side; the run of each region with the better validation IoU
# on its 48 held-out cases comes back (two int8 models fit one call's 64 MiB;
# four would not). LIMIT_CASES (a smoke test here: a few cases, one epoch,
# with SKIP_INSTALL=1 KERAS_BACKEND=tensorflow OUT=/tmp/out) adjusts it.
set -u
mode=${1:-train}
RES=/tmp/gpu_results
export PYTHONPATH=/tmp/site KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
# Five processes share the GPU: a fixed share of its memory each, not 75% for the first.
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.15
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache

install() {
    [ -n "${SKIP_INSTALL:-}" ] || [ -d /tmp/site/keras ] || python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
}

case "$mode" in
setup)
    install
    mkdir -p /tmp/gpu_init && cp .gpu/init/* /tmp/gpu_init/ || exit 1
    nvidia-smi --query-gpu=name,memory.total --format=csv
    python3 - <<'PY' || exit 1
import time, numpy as np, jax, keras
print("jax", jax.__version__, jax.devices(), "keras", keras.__version__, keras.backend.backend())
from cxr_dash.model import build_unet, load_compact
t = time.time(); m = build_unet(384); load_compact(m, "/tmp/gpu_init/left_clavicle.npz")
p = m.predict(np.zeros((2, 384, 384, 3), np.float32), verbose=0)
print("model built, int8 weights loaded, predicted", p.shape, f"in {time.time() - t:.1f} s")
PY
    ;;
train)
    install
    [ -f /tmp/gpu_init/left_clavicle.npz ] || { echo "no /tmp/gpu_init: run setup first"; exit 1; }
    mkdir -p $RES
    stage="--input-size 384 --optimizer adam --lr 1e-4 --batch-size 8 --schedule cosine
           --warmup-epochs 0.5 --epochs 8 --augment-copies 4 --patience 1000 --no-restore-best
           --data-workers 4 --time-limit 300 --data .gpu/data"
    for region in left_clavicle right_clavicle; do
        python3 -m cxr_dash.train --region $region --fold odd+half-even $stage \
            --init-weights /tmp/gpu_init/$region.npz --out $RES/heldout48_$region \
            --note "GPU stage (H200, JAX): 8 epochs x 4 copies on the 152 cases" \
            > $RES/heldout48_$region.log 2>&1 &
        python3 -m cxr_dash.train --region $region --fold all $stage \
            --init-weights /tmp/gpu_init/$region.npz --out $RES/all200_$region \
            --note "GPU stage (H200, JAX): 8 epochs x 4 copies on all 200 cases" \
            > $RES/all200_$region.log 2>&1 &
    done
    python3 -m cxr_dash.tune --region left_clavicle --folds 2 --trials 200 --input-size 128 \
        --min-epochs 4 --max-epochs 20 --batch-sizes 4 8 16 --augment-copies 2 \
        --prune-after 3 --timeout 270 --data .gpu/data --out $RES/tune_left_clavicle \
        > $RES/tune_left_clavicle.log 2>&1 &
    while [ -n "$(jobs -r)" ]; do sleep 15; nvidia-smi --query-gpu=utilization.gpu,memory.used \
        --format=csv,noheader; tail -qn1 $RES/*.log | cut -c1-150; done
    wait
    tail -n 4 $RES/*.log
    (cd /tmp && tar czf gpu_results.tgz gpu_results && rm -f gpu_results.part* \
        && split -b 15M -d gpu_results.tgz gpu_results.part && ls -la gpu_results.tgz gpu_results.part*)
    cp /tmp/gpu_results.part0[0-3] $OUT/ 2>/dev/null; cat $RES/*.log > $OUT/logs.txt
    ls /tmp/gpu_results.part*
    ;;
train512)
    install
    export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2      # four processes
    # The shipped weights, from the tree if they travelled, else from "setup" (the
    # tree travels only up to 64 MiB: the lease ran setup first, weights/ left out).
    init=${INIT:-weights}; [ -s $init/left_clavicle.npz ] || init=/tmp/gpu_init
    [ -s $init/left_clavicle.npz ] || { echo "no weights to start from: run setup first"; exit 1; }
    mkdir -p $RES
    epochs=${EPOCHS:-10} tag=${TAG:-512}
    stage="--input-size 512 --optimizer adam --batch-size 8 --schedule cosine --warmup-epochs 0.5
           --epochs $epochs --augment-copies 4 --patience 1000 --no-restore-best --data-workers 4
           --time-limit ${TIME_LIMIT:-360} --data ${DATA:-.gpu/data} --fold odd+half-even ${EXTRA:-} ${LIMIT_CASES:-}"
    for region in ${REGIONS:-left_clavicle right_clavicle}; do
        for lr in ${LRS:-1e-4 2e-4}; do
            python3 -m cxr_dash.train --region $region $stage --lr $lr \
                --init-weights $init/$region.npz --out $RES/${tag}_lr${lr}_$region \
                --note "GPU stage (H200, JAX): fine-tuned at 512 px, $epochs epochs x 4 copies on the 152 cases, Adam $lr cosine ${EXTRA:-}" \
                > $RES/${tag}_lr${lr}_$region.log 2>&1 &
        done
    done
    while [ -n "$(jobs -r)" ]; do sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used \
        --format=csv,noheader 2>/dev/null; tail -qn1 $RES/*.log | cut -c1-150; done
    wait
    tail -n 3 $RES/*.log
    # Per region, the run with the better validation IoU on the 48 held-out cases comes back.
    keep=$(python3 - "$RES" "$tag" ${KEEP_ALL:+all} <<'PY'
import json, sys
from pathlib import Path
runs = {}
for manifest in Path(sys.argv[1]).glob(sys.argv[2] + "_*/manifest.json"):
    for region, entry in json.loads(manifest.read_text())["regions"].items():
        iou = entry["metrics"]["validation_at_input_size"]["jaccard"]
        print(f"{manifest.parent.name}: validation IoU {iou:.4f}", file=sys.stderr)
        runs.setdefault(region, []).append((iou, manifest.parent.name))
best = [max(found)[1] for found in runs.values()]
print(" ".join(run for found in runs.values() for _, run in found) if sys.argv[3:] else " ".join(best))
PY
)
    echo "kept: $keep"
    (cd $RES && tar czf /tmp/gpu512.tgz $keep *.log) && (cd /tmp && split -b 15M -d gpu512.tgz gpu512.part)
    ls -la /tmp/gpu512.tgz /tmp/gpu512.part*
    cp /tmp/gpu512.part0[0-3] $OUT/ 2>/dev/null; cat $RES/*.log > $OUT/logs512.txt
    ;;
fetch)
    # Parts 4 at a time (64 MiB per call): fetch 1 -> parts 4-7.
    first=$(( ${2:-1} * 4 ))
    for i in 0 1 2 3; do n=$(printf "%02d" $((first + i))); cp /tmp/gpu_results.part$n $OUT/ 2>/dev/null; done
    ls -la $OUT
    ;;
esac
