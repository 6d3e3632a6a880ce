"""How closely a variant follows the reference model, beyond the task metric: the task compares
the two runs (Task.compare_runs), and its F1 against the reference's predictions is added where
the task has one."""

from __future__ import annotations

import numpy as np


def of_task(task, reference: dict, variant: dict) -> dict:
    """How closely `variant`'s run follows `reference`'s. A run holds outputs, predictions and
    each feature's input ids."""
    found = task.compare_runs(reference, variant)
    f1 = task.f1_against(variant["predictions"], reference["predictions"])
    if f1 is not None:
        found["f1_vs_reference"] = float(np.mean(f1))
    return found
