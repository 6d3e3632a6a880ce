"""Recovery after pruning: a short distillation from the unpruned model into the pruned one.

Only `pocketsize.distill` is called (stage folders stay independent); its options are a
DistillConfig, checked before the pruning's scoring work starts.
"""

from __future__ import annotations

from pathlib import Path

# A short recovery, not a full distillation, unless the options say otherwise.
RECOVERY_EPOCHS = 1
# distill()'s run controls that recover_options may carry besides its DistillConfig
RUN_CONTROLS = ("progress", "callbacks")


def recovery_arguments(options: dict | None, seed: int = 0) -> dict:
    """`recover_options` as distill's config and run controls (PruneConfig checks them with
    this when it is built, so a bad option is refused in one line before any work). The
    recovery trains with the pruning's seed unless the options name one: a recipe's `seed`
    reaches it, and with the distillation's seed its augmented copies are the distillation's,
    so one pass of the teacher over them serves both."""
    from pocketsize.distill.config import DistillConfig

    options = dict(options or {})
    controls = {key: options.pop(key) for key in RUN_CONTROLS if key in options}
    options.setdefault("epochs", RECOVERY_EPOCHS)
    options.setdefault("seed", seed)
    return dict(config=DistillConfig.build(**options), **controls)


def recover(teacher, student_dir: Path, data, workdir: Path, arguments, tokenizer=None, task=None):
    """Distil `teacher` into the pruned model saved in `student_dir`; return its directory."""
    from pocketsize.distill import distill

    out = distill(
        teacher,
        data,
        student=str(student_dir),
        out=workdir / "recovered",
        task=task,  # what the pruning was scored on, not a guess from the data
        tokenizer=tokenizer,
        **arguments,
    )
    return Path(out)
