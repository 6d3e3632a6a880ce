#!/usr/bin/env bash
# The test command: installs (idempotent), then lint + format check + the layering contract
# (import-linter, [tool.importlinter] in pyproject.toml) + the docs site (mkdocs --strict) +
# the test suite.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k gpt2`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check pocketsize tests benchmarks
.venv/bin/ruff format --check pocketsize tests benchmarks
.venv/bin/lint-imports
# the docs site: a broken link, anchor or API reference fails here
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
exec .venv/bin/python -m pytest -q "$@"
