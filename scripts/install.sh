#!/usr/bin/env bash
# Creates .venv with pocketsize and its dev tools (`install.sh core`: pocketsize alone, what
# the main job needs; the test command adds the dev tools later). Idempotent: when
# pyproject.toml and this script are unchanged since the last successful install of the same
# or a larger set, it returns in well under a second.
#
# The installer is uv when it can be had (on PATH, or installed into the venv by pip in a few
# seconds): it unpacks and byte-compiles in parallel; `install.sh core` from nothing took 36 s
# with it where pip took 131 s (2-core Intel Xeon, empty caches). uv does not read pip's
# configuration, so the indexes, find-links and constraints pip is configured with are handed
# to it; with POCKETSIZE_INSTALLER=pip, or when uv fails, pip does the whole install as before.
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

# pip's configured package sources (pip.conf, PIP_* variables) as uv arguments, one per line
pip_sources_for_uv() {
    "${pip[@]}" config list 2>/dev/null | while IFS= read -r line; do
        local key="${line%%=*}" value="${line#*=}"
        value="${value#\'}"; value="${value%\'}"
        case "$key" in
            *.index-url) printf -- '--index-url\n%s\n' "$value" ;;
            *.extra-index-url) for v in $value; do printf -- '--extra-index-url\n%s\n' "$v"; done ;;
            *.find-links) for v in $value; do printf -- '--find-links\n%s\n' "$v"; done ;;
            *.constraint) for v in $value; do printf -- '--constraint\n%s\n' "$v"; done ;;
        esac
    done
}

# the installer's command, and the package sources it must be told (none for pip: it reads them)
installer=("${pip[@]}" install -q)
installer_name=pip
sources=()
if [[ "${POCKETSIZE_INSTALLER:-uv}" == uv ]]; then
    uv="$(command -v uv || true)"
    if [[ -z "$uv" ]] && "${pip[@]}" install -q uv >/dev/null 2>&1; then
        uv="$VENV/bin/uv"
    fi
    if [[ -n "$uv" ]]; then
        mapfile -t sources < <(pip_sources_for_uv)
        # pip's rule across indexes (the best version anywhere), not uv's first-index rule
        installer=("$uv" pip install -q --python "$VENV/bin/python" --compile-bytecode
                   --index-strategy unsafe-best-match)
        installer_name=uv
    fi
fi

install_all() {
    local tool=("${installer[@]}" "${sources[@]}")
    # torch first and pinned: a plain 'torch' requirement pulls a CUDA build of several GB.
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        echo "[install] installing torch==$TORCH_VERSION (CPU build)"
        # A CPU wheel on local disk (find-links) wins; its dependencies come with the project
        # below, in the one resolver call.
        if "${tool[@]}" --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
            echo "[install] torch taken from the local wheel directory"
        elif [[ -n "${POCKETSIZE_TORCH_INDEX:-}" ]] \
                && UV_HTTP_TIMEOUT=15 PIP_TIMEOUT=15 PIP_RETRIES=1 "${installer[@]}" --no-deps \
                    "torch==$TORCH_VERSION" --index-url "$POCKETSIZE_TORCH_INDEX"; then
            # A CPU-only PyTorch index the user names; the other packages still come from
            # pip's own configuration (pip.conf, PIP_INDEX_URL).
            echo "[install] torch taken from POCKETSIZE_TORCH_INDEX"
        else
            echo "[install] no local CPU wheel, and POCKETSIZE_TORCH_INDEX is unset or unreachable:"
            echo "[install] about to download torch==$TORCH_VERSION from the default index (may be a CUDA build of several GB)"
            "${tool[@]}" "torch==$TORCH_VERSION" || return 1
        fi
    fi
    echo "[install] installing pocketsize and its dependencies into $VENV ($installer_name)"
    # One resolver call for everything else: installing datasets on its own later has pulled
    # an incompatible huggingface_hub (STACK.md). (The filter drops pip's noise about local
    # index folders; the installer's own exit status still counts.)
    "${tool[@]}" -e "$target" "torch==$TORCH_VERSION" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if ! install_all; then
    [[ "$installer_name" == uv ]] || exit 1
    echo "[install] uv failed; installing with pip instead"
    installer=("${pip[@]}" install -q)
    installer_name=pip
    sources=()
    install_all
fi
"$VENV/bin/python" -c "import pocketsize, torch, transformers, optimum.onnxruntime, onnxruntime, sklearn, datasets"
echo "$want $SET" > "$STAMP"
echo "[install] done"
