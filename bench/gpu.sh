#!/usr/bin/env bash
# GPU checks on one CUDA device: paper training step (bf16, batch 128 by accumulation), DDP
# through torchrun with NCCL, sampling latency, and the solver with all 182 paper storms.
# What each part measures and how: bench/gpu.py.
#
#   bash bench/gpu.sh            # needs a CUDA GPU; ~6 min on an H200 (limits add up to 550 s)
#   bash bench/gpu.sh --smoke    # tiny sizes, on the CPU when there is no GPU: checks the script
#
# Results: ${OUT:-bench/gpu_out}/gpu.json, gpu.md and gpu.log. Each part runs under its own time
# limit and a failed part does not stop the next; the exit status is 0 only if all passed.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu.sh [--smoke]" >&2; exit 2 ;;
esac

source bench/_device.sh  # PY, PYTHONPATH, has_cuda, install_wheels, show_gpu

if has_cuda; then
  dev=cuda
elif [ "$smoke" = 1 ]; then
  dev=cpu
  echo "no CUDA device: running the --smoke checks on the CPU"
else
  echo "gpu.sh: no CUDA device (nvidia-smi or torch.cuda unavailable); nothing measured. 'bash bench/gpu.sh --smoke' checks the script on the CPU." >&2
  exit 1
fi

OUT="${OUT:-bench/gpu_out}"
mkdir -p "$OUT"
rm -f "$OUT/gpu.json" "$OUT/gpu.md" "$OUT/gpu.log"
exec > >(tee -a "$OUT/gpu.log") 2>&1

install_wheels gpu.sh  # the ddp part's dataset needs them
if [ "$dev" = cuda ]; then show_gpu; fi
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| device', '$dev')"

args=(--device "$dev" --out "$OUT")
[ "$smoke" = 1 ] && args+=(--smoke)
statuses=()
failed=0

# The limits fit the device budget; a --smoke run on a busy CPU gets four times as long.
scale=1
[ "$smoke" = 1 ] && scale=4

part() {  # part NAME LIMIT_S: bench/gpu.py NAME under a time limit (SIGTERM, then SIGKILL 10 s later)
  local name=$1 limit=$(($2 * scale)) rc=0 t0=$SECONDS
  echo "=== $name (limit ${limit} s) ==="
  timeout --kill-after=10 "$limit" "$PY" bench/gpu.py "$name" "${args[@]}" || rc=$?
  echo "=== $name: exit $rc after $((SECONDS - t0)) s ==="
  statuses+=("$name=$rc")
  [ "$rc" = 0 ] || failed=1
}

part train-step 70
# the trainer's dataset is built by the solver on the device's CPU: 78-118 s of the ~215 s on an H200
part ddp 250
part sample 80
part solver 150

"$PY" bench/gpu.py report "${args[@]}" "${statuses[@]}" || failed=1
[ "$failed" = 0 ] && echo "gpu.sh: all parts passed" || echo "gpu.sh: some parts FAILED (see above and $OUT/gpu.md)"
exit "$failed"
