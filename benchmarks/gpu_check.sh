#!/usr/bin/env bash
# The prepared GPU check of issue 13, about 10 minutes on one GPU; everything lands in one folder.
#
#   bash benchmarks/gpu_check.sh [FOLDER]        # FOLDER: $1, else gpu_check-<time>
#
# Under the device tool ($OUT set, at most 8 files come back) the folder is a scratch one, and
# $OUT receives the key text files and gpu_check.tgz of the rest (weights left out).
#
# 1. the GPU extras (mamba-ssm, causal-conv1d, flash-linear-attention): from the wheels in
#    .whl/ where that folder exists (an offline machine), else from pip if missing; without
#    them the families fall back to countlib's kernels, and the smoke's summary says which
#    backend each run used. countlib itself runs from the checkout (PYTHONPATH);
# 2. benchmarks/train_throughput.py at the paper's sizes: train_throughput.{txt,json}, and the
#    paper grid's GPU-hours from those step times: paper_estimate.txt;
# 3. a paper-size training smoke of every family with its GPU backend (`countlib sweep` of
#    smoke.yaml): smoke.txt, smoke_summary.txt and the runs under runs/;
# 4. the GPU-only tests (pytest -m gpu): pytest_gpu.txt.
#
# Each step has its own time limit and a failing step does not stop the others. For a test of
# the script itself on a CPU: DEVICE=cpu TINY=1 bash benchmarks/gpu_check.sh /tmp/check
set -uo pipefail

cd "$(dirname "$0")/.."
if [[ -n "${OUT:-}" ]]; then SCRATCH=/tmp/gpu_check; else SCRATCH=gpu_check-$(date +%Y%m%dT%H%M%S); fi
FOLDER=${1:-$SCRATCH}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$FOLDER"
exec > >(tee -a "$FOLDER/gpu_check.log") 2>&1

step() { echo; echo "== $(date +%T) $*"; }

step "machine"
{ nvidia-smi || echo "no nvidia-smi"; } > "$FOLDER/nvidia-smi.txt" 2>&1
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), torch.cuda.get_device_name() \
if torch.cuda.is_available() else '')" | tee "$FOLDER/torch.txt"

step "install (only what is missing)"
# countlib runs from this checkout: no install, so an offline machine with another torch build
# (pip would want the pinned one) runs it as it is
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -d .whl ]]; then
  # wheels carried to an offline machine, fetched where pip works with
  #   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  #     --platform manylinux2014_x86_64 -d .whl flash-linear-attention==0.6.0 fla-core==0.6.0
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu_check_site .whl/*.whl >> "$FOLDER/install.log" 2>&1 &&
    export PYTHONPATH="$PYTHONPATH:/tmp/gpu_check_site" ||
    echo "the carried wheels did not install: see install.log"
elif [[ "$DEVICE" == cuda ]] && ! "$PYTHON" -c "import mamba_ssm, causal_conv1d, fla" 2>/dev/null; then
  timeout 90 "$PYTHON" -m pip install -q --retries 0 --timeout 10 --no-build-isolation \
    mamba-ssm causal-conv1d 'flash-linear-attention>=0.6' >> "$FOLDER/install.log" 2>&1 ||
    echo "GPU extras not installed (see install.log): families use countlib's kernels"
fi
"$PYTHON" - <<'EOF' | tee "$FOLDER/extras.txt"
import importlib.util
for name in ("mamba_ssm", "causal_conv1d", "fla"):
    print(name, "installed" if importlib.util.find_spec(name) else "missing")
EOF

step "throughput benchmark"
if [[ "$TINY" == 1 ]]; then
  BENCH=(--configs transformer:hidden=16,heads=2,layers=1,pe=rope lstm:hidden=16
         --stack-configs lstm:hidden=16,precision=fp32 --stacked 2 --steps 4 --rounds 2)
else
  BENCH=()
fi
timeout 200 "$PYTHON" benchmarks/train_throughput.py --device "$DEVICE" "${BENCH[@]}" \
  --out "$FOLDER/train_throughput.json" | tee "$FOLDER/train_throughput.txt"
# the paper grid's GPU-hours from these measured step times (paper_estimate.txt)
timeout 60 "$PYTHON" -m countlib sweep --profile paper --dry-run --runs-dir "$FOLDER/runs" \
  --step-times "$FOLDER/train_throughput.json" | grep -Ev "^(state|todo|part|done) " |
  tee "$FOLDER/paper_estimate.txt"

step "training smoke of every family"
if [[ "$TINY" == 1 ]]; then
  STEPS=2 WIDTH=16 HEADS=2 LAYERS=1 RECURRENT=64
else
  STEPS=${SMOKE_STEPS:-100} WIDTH=1024 HEADS=8 LAYERS=4 RECURRENT=128
fi
cat > "$FOLDER/smoke.yaml" <<EOF
name: gpu-smoke
description: every family at the paper's size for a few steps, each with its GPU backend
task: shifted_start
steps: $STEPS
eval_every: $STEPS
seeds: [1234]
grid:
  - {model: transformer, layers: $LAYERS, hidden: $WIDTH, heads: $HEADS, pe: rope}
  - model: [rnn, lstm, gru, s4, s4d, mamba, rwkv6, rwkv5, deltanet, gated_deltanet, mamba2,
            mingru, minlstm, slstm]
    hidden: $RECURRENT
EOF
timeout 180 "$PYTHON" -m countlib sweep --spec "$FOLDER/smoke.yaml" --runs-dir "$FOLDER/runs" \
  --device "$DEVICE" > "$FOLDER/smoke.txt" 2>&1
echo "sweep exit status $?"
"$PYTHON" - "$FOLDER/runs" <<'EOF' | tee "$FOLDER/smoke_summary.txt"
import json, sys
from pathlib import Path

print(f"{'run':64s} {'status':9s} {'wall s':>7s}  backends")
for run in sorted(Path(sys.argv[1]).iterdir()):
    env = run / "environment.json"
    backends = json.loads(env.read_text()).get("backends", {}) if env.exists() else {}
    summary = run / "summary.json"
    done = json.loads(summary.read_text()) if summary.exists() else {}
    status, wall = done.get("status", "unfinished"), done.get("wall_time_s", float("nan"))
    print(f"{run.name:64s} {status:9s} {wall:7.1f}  {backends}")
EOF

step "GPU-only tests"
timeout 90 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests > "$FOLDER/pytest_gpu.txt" 2>&1
tail -n 3 "$FOLDER/pytest_gpu.txt"

step "done: $FOLDER"
if [[ -n "${OUT:-}" && "$(realpath "$FOLDER")" != "$(realpath "$OUT")" ]]; then
  for name in gpu_check.log train_throughput.json train_throughput.txt paper_estimate.txt \
      smoke_summary.txt pytest_gpu.txt; do
    [[ -f "$FOLDER/$name" ]] && cp "$FOLDER/$name" "$OUT/"
  done
  tar czf "$OUT/gpu_check.tgz" -C "$FOLDER" --exclude='*.pt' --exclude='*.safetensors' .
fi
