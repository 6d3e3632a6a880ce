"""pocketsize: distil, prune, quantize and export models, and prove what was lost.

The public API is a handful of verbs, imported lazily so that `import pocketsize` (and the
CLI's `--help`) does not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib

from pocketsize._pins import check_transformers

__version__ = "0.1.0"

check_transformers()  # one line on transformers >= 4.58, before anything reaches optimum

# public name -> module that defines it
_API = {
    "PocketsizeError": "pocketsize.errors",
    "fetch": "pocketsize.assets",
    "load_model": "pocketsize.tasks",
    "load_tokenizer": "pocketsize.assets",
    "load_dataset": "pocketsize.data",
    "get_task": "pocketsize.tasks",
    "finetune": "pocketsize.distill",
    "FinetuneConfig": "pocketsize.distill.config",
    "DistillConfig": "pocketsize.distill.config",
    "distill": "pocketsize.distill",
    "prune": "pocketsize.prune",
    "export": "pocketsize.export",
    "quantize": "pocketsize.quantize",
    "evaluate": "pocketsize.eval",
    "compress": "pocketsize.compress",
    "CompressConfig": "pocketsize.compress.config",
    "load_pipeline": "pocketsize.eval",
    "run_recipe": "pocketsize.recipe",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        module = importlib.import_module(_API[name])
        # `ps.distill` / `ps.prune` / ... are their (callable) stage packages, so that
        # `ps.distill.register_loss` works as well as `ps.distill(...)`.
        if module.__name__ == f"pocketsize.{name}":
            return module
        return getattr(module, name)
    raise AttributeError(f"module 'pocketsize' has no attribute {name!r}")
