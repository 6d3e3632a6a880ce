"""Teacher fine-tuning and knowledge distillation.

    finetune(model, data, out=None, epochs=2, ...) -> Path      # a task head on a base encoder
    distill(teacher, data, student="truncate:0,2,4", out=None,
            losses={"kl": 0.5, "ce": 0.5}, temperature=2.0, ...) -> Path
    FinetuneConfig / DistillConfig (TrainingConfig): their options, as one typed config each;
        the keywords above build one (config=... passes one whole)
    build_student(teacher_model, spec, tokenizer=...) -> (module, info)
    LOSSES / register_loss: the loss registry users extend

Names are imported lazily so that `pocketsize --help` does not import torch.
"""

from __future__ import annotations

import importlib
import sys
import types

_API = {
    "finetune": "pocketsize.distill.finetuning",
    "distill": "pocketsize.distill.distiller",
    "build_student": "pocketsize.distill.students",
    "TrainingConfig": "pocketsize.distill.config",
    "FinetuneConfig": "pocketsize.distill.config",
    "DistillConfig": "pocketsize.distill.config",
    "LOSSES": "pocketsize.distill.losses",
    "register_loss": "pocketsize.distill.losses",
    "LossContext": "pocketsize.distill.losses",
    "layer_map": "pocketsize.distill.mapping",
    "load_bilstm": "pocketsize.distill.bilstm",
    "load_module": "pocketsize.distill.bilstm",
    "DistillationTrainer": "pocketsize.distill.trainer",
    "training_arguments": "pocketsize.distill.training",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name == "__signature__":  # inspect.signature(ps.distill): the verb's, with its options
        import inspect

        return inspect.signature(__getattr__("distill"))
    raise AttributeError(f"module 'pocketsize.distill' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """`pocketsize.distill` is both this package and the public verb `ps.distill(...)`.

    Once the package is imported, Python binds `pocketsize.distill` to it (shadowing the lazy
    function export of pocketsize/__init__), so calling the package calls `distill`.
    """

    def __call__(self, *args, **kwargs):
        return __getattr__("distill")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
