#!/usr/bin/env bash
# Downloads, into .whl/, the wheels a GPU machine without network needs to run pocketsize's
# GPU check (benchmarks/gpu_check.sh), for Python 3.12 on x86-64 Linux.
#
# Such a machine's image already has torch (a CUDA build), accelerate, numpy, onnx, pyarrow,
# scikit-learn and the rest; pocketsize needs these in other versions (transformers <4.58 with
# the tokenizers and huggingface_hub it accepts, onnxruntime >=1.32) or lacks them (optimum,
# optimum-onnx, datasets with the dill, multiprocess and fsspec it accepts). About 43 MB. The index is pip's own
# configuration (pip.conf, PIP_INDEX_URL), as for scripts/install.sh.
#
#   bash scripts/gpu_wheels.sh            # then carry .whl/ to the machine with the repository
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
WHEELS=(
    transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2
    optimum==2.1.0 optimum-onnx==0.1.0 onnxruntime==1.32.0
    datasets==5.0.1 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.6.0
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]/#/--platform=}" -d .whl "${WHEELS[@]}" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
du -sh .whl
