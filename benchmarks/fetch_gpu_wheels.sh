#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what benchmarks/gpu_check.sh installs on an offline GPU machine,
# from a machine where pip reaches PyPI. The device tool carries it: run(carry=[".whl"]).
#
#   bash benchmarks/fetch_gpu_wheels.sh [PYTHON_VERSION]     # default 3.12, the lent image's
#
# - countlib's own dependencies, with theirs, as wheels for that Python on x86-64 Linux
#   (the lent image has them all; a bare machine may not);
# - flash-linear-attention and fla-core 0.6.0 (pure-Python wheels: Triton compiles their
#   kernels on the GPU) and einops, which they need;
# - the sources of causal-conv1d 1.7.0 and mamba-ssm 2.3.2.post1, which gpu_check.sh builds
#   for the GPU it finds (no wheel of them fits an arbitrary torch and CUDA).
# About 60 MB; .whl/ counts towards the device tool's 64 MiB, so drop what the target has.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-3.12}
# a Python with torch, for the sources' metadata step below
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
mkdir -p .whl
"$PYTHON" -m pip download -q --only-binary=:all: --python-version "$VERSION" --implementation cp \
  "${PLATFORMS[@]}" -d .whl numpy pandas pyyaml tqdm safetensors pytest einops
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d .whl \
  fla-core==0.6.0 flash-linear-attention==0.6.0
# sources: their metadata step imports torch (--no-build-isolation takes this Python's) and
# would build CUDA code unless told to skip it
MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE "$PYTHON" -m pip download -q \
  --no-deps --no-binary=:all: --no-build-isolation -d .whl causal-conv1d==1.7.0 \
  mamba-ssm==2.3.2.post1
du -sh .whl && ls .whl
