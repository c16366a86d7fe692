# Sourced by bench/gpu.sh and bench/gpu_ablation.sh (not run on its own): the interpreter, the
# import path and the CUDA check that both need on the device machine.
#
# PY: the checkout's venv here, the image's python3 on the device machine (it holds CUDA torch),
# or $PYTHON when set. src/ goes first on PYTHONPATH, so the checkout's piff is the one imported.
PY="${PYTHON:-python3}"
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

has_cuda() {  # true when nvidia-smi answers and torch sees a CUDA device
  nvidia-smi -L >/dev/null 2>&1 && "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"
}

install_wheels() {  # install_wheels SCRIPT: the packages the device image lacks (netCDF4, cftime,
  # pyflwdir, affine: the datasets), carried as wheels in .whl/ (see bench/gpu.py), into /tmp/site
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/site" \
      || echo "$1: installing .whl failed; the dataset parts will say what is missing"
  fi
}

show_gpu() {  # the card, its memory and driver: recorded next to every GPU figure
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
}
