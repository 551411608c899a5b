#!/usr/bin/env bash
# The prepared GPU check (issues 13 and 22): under 9 minutes on one GPU, start included, on a
# bare offline machine that has this checkout, Python and a CUDA build of torch.
#
#   bash benchmarks/gpu_check.sh [FOLDER]        # results in FOLDER ($OUT under the device tool)
#   DEVICE=cpu TINY=1 bash benchmarks/gpu_check.sh /tmp/check     # the script itself, on a CPU
#
# 1. install what is missing, from the wheels carried in .whl/ (git-ignored; fill it where pip
#    reaches PyPI with benchmarks/fetch_gpu_wheels.sh): countlib's own dependencies, then
#    flash-linear-attention; mamba-ssm and causal-conv1d build from their sources in the
#    background, into a folder of their own, so a failed or slow build never takes fla with it;
# 2. benchmarks/train_throughput.py at the paper's sizes: train_throughput.{txt,json};
# 3. every family trained in this one process at its own precision (benchmarks/gpu_smoke.py),
#    one line each, written as each family finishes: families.txt;
# 4. the GPU tests (pytest -m gpu) with COUNTLIB_GPU_CHECK=1, where a kernel package that does
#    not import fails instead of skipping: pytest_gpu.txt, whose test summary is printed here.
#
# Every file is written in the results folder as it is made, so a step cut short by its time
# limit loses only itself. gpu_check.log holds all that is printed; it ends with the families'
# table: trained or not, backend, precision, steps per second.
set -uo pipefail

cd "$(dirname "$0")/.."
FOLDER=${1:-${OUT:-gpu_check-$(date +%Y%m%dT%H%M%S)}}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
MAMBA_BUILD_S=${MAMBA_BUILD_S:-240}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$FOLDER"
FOLDER=$(realpath "$FOLDER")
exec > >(tee -a "$FOLDER/gpu_check.log") 2>&1
SITE=/tmp/gpu_check_site
MAMBA_SITE=/tmp/gpu_check_mamba
export PYTHONUNBUFFERED=1

step() { echo; echo "== $(date +%T) $*"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
"$PYTHON" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', \
torch.__version__, 'cuda', torch.version.cuda, 'GPUs', torch.cuda.device_count(), \
*(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))"

step "install what is missing, from .whl/"
# countlib runs from this checkout: no pip install of it, whose pinned torch an offline
# machine with another torch build could not satisfy
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
missing() {  # the names among "module=distribution" pairs whose module does not import
  for pair in "$@"; do
    "$PYTHON" -c "import ${pair%%=*}" 2>/dev/null || echo "${pair#*=}"
  done
}
install_wheels() {  # distributions from .whl/ only, into $SITE
  [[ $# -eq 0 ]] && return 0
  if [[ ! -d .whl ]]; then echo "missing $*, and no .whl/ to install them from"; return 1; fi
  "$PYTHON" -m pip install -q --no-index --find-links .whl --no-compile --no-cache-dir \
    --target "$SITE" "$@" && echo "installed from .whl/: $*"
}
install_wheels $(missing numpy=numpy pandas=pandas yaml=pyyaml tqdm=tqdm \
  safetensors=safetensors pytest=pytest) || echo "countlib's dependencies are incomplete"
if [[ "$DEVICE" == cuda* ]]; then
  # fla-core and flash-linear-attention without their dependencies: einops and transformers
  # are on the lent image (fetch_gpu_wheels.sh carries einops too, for other machines)
  "$PYTHON" -c "import fla.ops" 2>/dev/null || install_wheels --no-deps fla-core \
    flash-linear-attention || echo "flash-linear-attention not installed"
  MAMBA_PID=
  if ! "$PYTHON" -c "import mamba_ssm" 2>/dev/null && ls .whl/mamba_ssm-*.tar.gz \
      .whl/causal_conv1d-*.tar.gz >/dev/null 2>&1; then
    ARCH=$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
    echo "building causal-conv1d and mamba-ssm for sm_$ARCH in the background" \
      "(at most $MAMBA_BUILD_S s; log: $FOLDER/mamba_build.log)"
    (MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE TORCH_CUDA_ARCH_LIST=$ARCH \
      MAX_JOBS=12 timeout "$MAMBA_BUILD_S" "$PYTHON" -m pip install --no-index \
      --find-links .whl --no-build-isolation --no-deps --no-cache-dir --target "$MAMBA_SITE" \
      .whl/causal_conv1d-*.tar.gz .whl/mamba_ssm-*.tar.gz > "$FOLDER/mamba_build.log" 2>&1) &
    MAMBA_PID=$!
  fi
fi
"$PYTHON" - <<'EOF'
import importlib
for name in ("numpy", "pandas", "yaml", "tqdm", "safetensors", "pytest", "fla.ops",
             "mamba_ssm", "causal_conv1d"):
    try:
        module = importlib.import_module(name)
        print(f"{name:14s} imports ({getattr(module, '__version__', 'no version')})")
    except Exception as error:  # a wheel for another torch fails at load, not only at import
        print(f"{name:14s} does not import: {type(error).__name__}: {error}"[:200])
EOF

step "throughput benchmark"
if [[ "$TINY" == 1 ]]; then
  BENCH=(--configs transformer:hidden=16,heads=2,layers=1,pe=rope lstm:hidden=16
         --stack-configs lstm:hidden=16,precision=fp32 --stacked 2 --steps 4 --rounds 2)
else
  BENCH=(--steps 20 --rounds 3)
fi
timeout 130 "$PYTHON" benchmarks/train_throughput.py --device "${DEVICE%%:*}" "${BENCH[@]}" \
  --out "$FOLDER/train_throughput.json" > "$FOLDER/train_throughput.txt" 2>&1
echo "benchmark exit status $?"; cat "$FOLDER/train_throughput.txt"

if [[ -n "${MAMBA_PID:-}" ]]; then
  step "waiting for the mamba-ssm build"
  if wait "$MAMBA_PID"; then
    export PYTHONPATH="$PYTHONPATH:$MAMBA_SITE"
    echo "mamba-ssm built: $("$PYTHON" -c 'import mamba_ssm; print(mamba_ssm.__version__)')"
  else
    echo "mamba-ssm did not build (Mamba trains on countlib's scan); its log ends:"
    tail -n 5 "$FOLDER/mamba_build.log"
  fi
fi

step "every family, one process, each at its own precision"
if [[ "$TINY" == 1 ]]; then SMOKE=(--tiny --steps 4); else SMOKE=(--steps 40); fi
timeout 150 "$PYTHON" benchmarks/gpu_smoke.py --device "$DEVICE" "${SMOKE[@]}" \
  --out "$FOLDER/families.txt" > /dev/null 2>&1
echo "smoke exit status $?"

step "GPU tests (pytest -m gpu)"
# a test that hangs is cut at 60 s where pytest-timeout is installed (the lent image has it)
PER_TEST=()
"$PYTHON" -c "import pytest_timeout" 2>/dev/null && PER_TEST=(--timeout 60)
COUNTLIB_GPU_CHECK=1 timeout 170 "$PYTHON" -m pytest -m gpu -rA -q -p no:cacheprovider \
  "${PER_TEST[@]}" tests > "$FOLDER/pytest_gpu.txt" 2>&1
echo "pytest exit status $?"
# the whole summary: one line per test with its outcome, and why for each skip and failure
sed -n '/short test summary info/,$p' "$FOLDER/pytest_gpu.txt"

step "families (trained or not, precision, steps/s, device, backends)"
cat "$FOLDER/families.txt" 2>/dev/null || echo "no families.txt: the smoke did not start"
echo "results in $FOLDER"
