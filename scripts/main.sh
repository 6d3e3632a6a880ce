#!/usr/bin/env bash
# The main job: installs pocketsize without the dev tools (idempotent; the test command adds
# them), then runs the sentiment recipe end to end (assets fetched on first use) and prints
# the report. Extra arguments go to `pocketsize run`
# (e.g. `scripts/main.sh --set distill.epochs=1`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh core
export TOKENIZERS_PARALLELISM=false
exec .venv/bin/pocketsize run recipes/sentiment.yaml "$@"
