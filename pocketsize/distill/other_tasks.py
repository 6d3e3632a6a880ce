"""ps.distill / ps.finetune for tasks whose training lives with their task adapter.

Causal LM and seq2seq distil per token (pocketsize.tasks.generative); array classification
(the generic PyTorch-classifier adapter, e.g. digits images) trains registered modules
(pocketsize.tasks.generic). The shared keyword arguments are passed through; options that
only the text-classification / QA trainer knows are refused, not ignored.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError

GENERATIVE = ("causal-lm", "seq2seq")
OTHER_TASKS = GENERATIVE + ("array-classification",)
PASSED = (
    "epochs",
    "batch_size",
    "learning_rate",
    "max_steps",
    "seed",
    "logging_steps",
    "callbacks",
    "overwrite",
    "progress",
)


def _shared(kw: dict, defaults: dict, task_name: str) -> dict:
    """The arguments both trainers take; a non-default value of any other one is an error."""
    unsupported = [k for k, v in kw.items() if k not in PASSED and v != defaults.get(k, v)]
    if unsupported:
        raise PocketsizeError(
            f"option(s) {sorted(unsupported)} are not supported for {task_name}; drop them"
        )
    return {k: kw[k] for k in PASSED if k in kw}


def distill_other(teacher, data, student, out, task, losses, temperature, kw, defaults):
    if task.name == "array-classification":
        from pocketsize.tasks.generic import train_module

        if isinstance(student, str) and ":" in student:
            raise PocketsizeError(
                f"student spec {student!r} builds transformers students; for array "
                "classification pass a registered module or its directory as student="
            )
        shared = _shared(kw, defaults, task.name)
        return train_module(
            student,
            data,
            out,
            teacher=teacher,
            losses=losses,
            temperature=temperature,
            task=task,
            **shared,
        )
    from pocketsize.tasks.generative import distill_generative

    extra = {k: kw.pop(k) for k in ("tokenizer", "student_tokenizer", "max_length") if k in kw}
    if extra.get("max_length") is None:
        extra.pop("max_length", None)
    shared = _shared(kw, defaults, task.name)
    losses = losses or {"token_kl": 0.5, "token_ce": 0.5}
    return distill_generative(
        teacher,
        data,
        student,
        out,
        task=task,
        losses=losses,
        temperature=temperature,
        **extra,
        **shared,
    )


def finetune_other(model, data, out, task, kw, defaults):
    if task.name == "array-classification":
        from pocketsize.tasks.generic import train_module

        return train_module(model, data, out, task=task, **_shared(kw, defaults, task.name))
    from pocketsize.tasks.generative import finetune_generative

    extra = {k: kw.pop(k) for k in ("tokenizer", "max_length") if k in kw}
    if extra.get("max_length") is None:
        extra.pop("max_length", None)
    if extra.get("tokenizer") is None:
        extra.pop("tokenizer", None)
    shared = _shared(kw, defaults, task.name)
    return finetune_generative(model, data, out, task=task, **extra, **shared)
