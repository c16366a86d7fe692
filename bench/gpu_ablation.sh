#!/usr/bin/env bash
# The ablation (bench/ablation.py) on one CUDA device, for a machine without Snakemake: the demo
# dataset is built by the workflow's own preprocessing functions (piff.data.preprocess.
# build_dataset_in, solver chunks in parallel CPU processes), then every variant x seed is
# trained, sampled and scored on the GPU, several at a time.
#
#   bash bench/gpu_ablation.sh VARIANTS SEED...     # e.g. unet,unet_symmetry 0 1 2 3
#   bash bench/gpu_ablation.sh --smoke VARIANTS SEED...   # the tiny dataset, 6 steps, on the CPU if no GPU
#
# Settings (environment): STEPS (500, the demo's budget), JOBS (4 runs at a time), NFE ("1 10"),
# DATA_LIMIT / ABLATION_LIMIT (seconds, 240 / 330). Results: ${OUT:-bench/gpu_out}/ablation/:
# ablation.log (with the tables) and ablation.json when every run finished, and each run's
# metrics.json / loss.csv / timing.json (its model.pt stays behind in /tmp), so that a run stopped
# at its limit still returns what finished.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
[ "${1:-}" = --smoke ] && { smoke=1; shift; }
[ $# -ge 2 ] || { echo "usage: bash bench/gpu_ablation.sh [--smoke] VARIANTS SEED..." >&2; exit 2; }
variants=$1
shift

source bench/_device.sh  # PY, PYTHONPATH, has_cuda, install_wheels, show_gpu
OUT="${OUT:-bench/gpu_out}/ablation"
WORK="${WORK:-/tmp/piff_gpu_ablation}"
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/ablation.log") 2>&1

install_wheels gpu_ablation.sh
dev=cpu
if has_cuda; then
  dev=cuda
  show_gpu
elif [ "$smoke" = 0 ]; then
  echo "gpu_ablation.sh: no CUDA device; 'bash bench/gpu_ablation.sh --smoke ...' checks the script on the CPU" >&2
  exit 1
fi
"$PY" -c "import torch, os; print('torch', torch.__version__, '| device $dev |', os.cpu_count(), 'CPUs')"

steps=${STEPS:-500}
dataset=demo
if [ "$smoke" = 1 ]; then steps=6; dataset=smoke; fi
t0=$SECONDS
echo "=== dataset $dataset (limit ${DATA_LIMIT:-240} s) ==="
# a warm machine keeps /tmp between calls: the dataset of an earlier call is reused
if [ -f "$WORK/data/dataset.nc" ] && [ "$(cat "$WORK/data/name" 2>/dev/null)" = "$dataset" ]; then
  echo "reusing $WORK/data/dataset.nc"
else
rm -rf "$WORK/data"
# (python -c, not a here-document: the pool's spawned processes re-read the main script)
timeout --kill-after=10 "${DATA_LIMIT:-240}" "$PY" -c '
import os, sys, time
from piff.data.preprocess import SMOKE_DATASET, build_dataset_in
from piff.yaml_files import load_yaml

folder, name = sys.argv[1:]
os.makedirs(folder, exist_ok=True)
cfg = SMOKE_DATASET if name == "smoke" else load_yaml("config/config.yaml")["datasets"][name]
t = time.monotonic()
path = build_dataset_in(folder, cfg, name=name, jobs=min(8, os.cpu_count() or 1))
print(f"built {path} in {time.monotonic() - t:.0f} s")
' "$WORK/data" "$dataset"
echo "$dataset" > "$WORK/data/name"
fi
echo "=== dataset: $((SECONDS - t0)) s ==="

hours=(4 8 12 16 20 24)
[ "$smoke" = 1 ] && hours=(2 4)
t0=$SECONDS
echo "=== ablation $variants, seeds $*, $steps steps (limit ${ABLATION_LIMIT:-330} s) ==="
rc=0
timeout --kill-after=10 "${ABLATION_LIMIT:-330}" "$PY" bench/ablation.py --dataset "$WORK/data/dataset.nc" \
  --device "$dev" --variants "$variants" --seeds "$@" --steps "$steps" --eval-hours "${hours[@]}" \
  --nfe ${NFE:-1 10} --jobs "${JOBS:-4}" --threads 2 --out-dir "$WORK/runs/$steps" --no-write || rc=$?
echo "=== ablation: exit $rc after $((SECONDS - t0)) s ==="
for run in "$WORK/runs/$steps"/*/; do
  mkdir -p "$OUT/$(basename "$run")"
  cp "$run"/{metrics.json,loss.csv,timing.json} "$OUT/$(basename "$run")/" 2>/dev/null || true
done
cp "$WORK/runs/$steps/ablation.json" "$OUT/" 2>/dev/null || true
exit "$rc"
