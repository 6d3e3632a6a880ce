"""Recovery after pruning: a short distillation from the unpruned model into the pruned one.

Only `pocketsize.distill.distill` is called (stage folders stay independent).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from pocketsize.errors import PocketsizeError


def distill_function():
    """pocketsize.distill.distill, or a clear error before any long work starts."""
    try:
        from pocketsize.distill import distill
    except ImportError as e:
        raise PocketsizeError(
            f"recovery needs pocketsize.distill, which cannot be imported here ({e}); "
            "run without recover=True (--recover) or install the distillation stage"
        ) from e
    return distill


def recover(
    teacher,
    student_dir: Path,
    data,
    workdir: Path,
    options: dict | None = None,
    tokenizer=None,
    task=None,
):
    """Distil `teacher` into the pruned model saved in `student_dir`; return the new model."""
    distill = distill_function()
    kwargs = dict(options or {})
    params = inspect.signature(distill).parameters
    if task is not None and "task" in params:
        kwargs.setdefault("task", task)  # what the pruning was scored on, not a guess from data
    if "epochs" in params:
        kwargs.setdefault("epochs", 1)  # a short recovery, not a full distillation
    if tokenizer is not None and "tokenizer" in params:
        kwargs.setdefault("tokenizer", tokenizer)
    for name in ("out", "output_dir"):
        if name in params and name not in kwargs:
            kwargs[name] = str(workdir / "recovered")
            break
    result = distill(teacher, data, student=str(student_dir), **kwargs)
    if isinstance(result, (str, Path)):
        return Path(result)
    for attr in ("model", "student"):
        if hasattr(result, attr) and hasattr(getattr(result, attr), "save_pretrained"):
            return getattr(result, attr)
    if hasattr(result, "save_pretrained"):
        return result
    raise PocketsizeError(
        f"pocketsize.distill returned {type(result).__name__}, not a model or dir"
    )
