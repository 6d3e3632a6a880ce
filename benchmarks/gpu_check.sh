#!/usr/bin/env bash
# pocketsize on a borrowed GPU machine, in one command of at most 5 minutes (the Python part,
# after a few seconds of installing the carried wheels), with no network: a tiny random BERT
# fine-tuned and distilled for a fixed number of steps under bf16 autocast (the teacher-output
# cache computed on the GPU), pruned on the GPU, exported, quantized to int8, and evaluated
# with CUDA-timed PyTorch variants beside the same variants on the CPU. Figures are printed and
# written to OUT/gpu_check.json. Where no GPU is visible it runs on the CPU and says so.
#
#   bash scripts/gpu_wheels.sh                 # here, once: the wheels the machine lacks
#   bash benchmarks/gpu_check.sh [OUT] [--steps N]    # there, with .whl/ carried beside
# (POCKETSIZE_WHEELS names another wheel directory; an empty one installs nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/pocketsize-gpu-check}"
if [[ $# -gt 0 && $1 != -* ]]; then
    out="$1"
    shift
fi
PY="${PYTHON:-python3}"
wheels="${POCKETSIZE_WHEELS:-.whl}"
site=/tmp/pocketsize-site
if compgen -G "$wheels/*.whl" >/dev/null; then
    # the carried wheels come first on the path, ahead of the image's own versions
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$site:$PWD"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
    echo "nvidia-smi: none here"
timeout 300 "$PY" benchmarks/gpu_check.py --out "$out" "$@"
