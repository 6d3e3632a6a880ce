#!/usr/bin/env bash
# Creates .venv with pocketsize and its dev tools (`install.sh core`: pocketsize alone, what
# the main job needs; the test command adds the dev tools later). Idempotent: when
# pyproject.toml and this script are unchanged since the last successful install of the same
# or a larger set, it returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

SET="${1:-dev}"
case "$SET" in
    dev) target=".[dev]" ;;
    core) target="." ;;
    *) echo "install.sh: unknown set '$SET'; use 'dev' (default) or 'core'" >&2; exit 2 ;;
esac
PY="${PYTHON:-python3}"
VENV="${POCKETSIZE_VENV:-.venv}"
TORCH_VERSION="2.13.0"
STAMP="$VENV/.pocketsize-install-stamp"
want="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && -x "$VENV/bin/pocketsize" ]]; then
    read -r have have_set < "$STAMP" || true
    # dev holds core; a stamp of an older script (no set named) was a dev install
    if [[ "$have" == "$want" && ( "${have_set:-dev}" == "$SET" || "${have_set:-dev}" == dev ) ]]; then
        exit 0
    fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[install] creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# torch first and pinned: a plain 'torch' requirement pulls a CUDA build of several GB.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "[install] installing torch==$TORCH_VERSION (CPU build)"
    # A CPU wheel on local disk (pip's find-links) wins; its dependencies come with the
    # project below, in the one resolver call.
    if "${pip[@]}" install -q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
        echo "[install] torch taken from the local wheel directory"
    elif [[ -n "${POCKETSIZE_TORCH_INDEX:-}" ]] && "${pip[@]}" install -q --no-deps "torch==$TORCH_VERSION" \
            --index-url "$POCKETSIZE_TORCH_INDEX" --retries 1 --timeout 15; then
        # A CPU-only PyTorch index the user names; the other packages still come from pip's
        # own configuration (pip.conf, PIP_INDEX_URL).
        echo "[install] torch taken from POCKETSIZE_TORCH_INDEX"
    else
        echo "[install] no local CPU wheel, and POCKETSIZE_TORCH_INDEX is unset or unreachable:"
        echo "[install] about to download torch==$TORCH_VERSION from the default index (may be a CUDA build of several GB)"
        "${pip[@]}" install -q "torch==$TORCH_VERSION"
    fi
fi

echo "[install] installing pocketsize and its dependencies into $VENV"
# One resolver call for everything else: installing datasets on its own later has pulled an
# incompatible huggingface_hub (STACK.md).
# (The filter drops pip's noise about local index folders; pip's own exit status still counts.)
"${pip[@]}" install -q -e "$target" "torch==$TORCH_VERSION" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$VENV/bin/python" -c "import pocketsize, torch, transformers, optimum.onnxruntime, onnxruntime, sklearn, datasets"
echo "$want $SET" > "$STAMP"
echo "[install] done"
