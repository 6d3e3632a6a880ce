"""pocketsize: distil, prune, quantize and export models, and prove what was lost.

The public API is a handful of verbs, imported lazily so that `import pocketsize` (and the
CLI's `--help`) does not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "PocketsizeError": "pocketsize.errors",
    "fetch": "pocketsize.assets",
    "load_model": "pocketsize.assets",
    "load_tokenizer": "pocketsize.assets",
    "load_dataset": "pocketsize.data",
    "get_task": "pocketsize.tasks",
    "finetune": "pocketsize.distill",
    "distill": "pocketsize.distill",
    "prune": "pocketsize.prune",
    "export": "pocketsize.export",
    "quantize": "pocketsize.quantize",
    "evaluate": "pocketsize.eval",
    "load_pipeline": "pocketsize.eval",
    "run_recipe": "pocketsize.recipe",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pocketsize' has no attribute {name!r}")
