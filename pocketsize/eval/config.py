"""`evaluate`'s options: one typed config, from which the keywords of `evaluate`, the flags of
`pocketsize eval` and the recipe's `eval:` keys are made (pocketsize/options.py). What is
evaluated (the variants, the data, the task, the final variant) stays the verb's own."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from pocketsize.eval.bootstrap import DEFAULT_SAMPLES
from pocketsize.options import Check, Config, OptionError, at_least, option
from pocketsize.tasks.labels import parse_label_map

SIZES = Check(lambda v: len(v) > 0 and all(b >= 1 for b in v), "one or more sizes, each at least 1")


def _batch_sizes(value):
    """`1 32` (a list, from Python or the CLI), the CLI's older `1,32` (one text, or texts that
    hold commas) or one size -> [1, 32]."""
    items = [value] if isinstance(value, (int, str)) else value
    if not isinstance(items, (list, tuple)):
        return value  # refused by the type check: expected list
    sizes = []
    for item in items:
        parts = [p for p in item.split(",") if p.strip()] if isinstance(item, str) else [item]
        sizes += [_size(part, value) for part in parts]
    return sizes


def _size(part, given) -> int:
    if isinstance(part, float) and part.is_integer():
        return int(part)
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    if isinstance(part, str) and part.strip().lstrip("-").isdigit():
        return int(part)
    field = next(f for f in dataclasses.fields(EvalConfig) if f.name == "batch_sizes")
    raise OptionError("eval", field, f"expected whole numbers, e.g. 1 32 (or 1,32), got {given!r}")


def _names(value):
    """baselines: one name or several."""
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, tuple) else ([] if value is None else value)


@dataclass(frozen=True)
class EvalConfig(Config):
    """How the variants are measured: the split, the timing protocol, the intervals."""

    verb = "eval"

    reference: str | None = option(
        None, "the variant others are compared with (default: the first)", metavar="NAME"
    )
    split: str = option(
        "test",
        "the split to evaluate (default: test); all: every row of the data, nothing split off",
        metavar="SPLIT",
    )
    label_map: dict | None = option(
        None,
        "the model's name for each of the data's labels, e.g. 0=negative,1=positive "
        "(labels are matched by name; numbers against named labels need this)",
        coerce=parse_label_map,
        metavar="DATA=MODEL,...",
    )
    batch_sizes: list[int] = option(
        [1, 32],
        "batch sizes timed, e.g. 1 32 (or 1,32)",
        SIZES,
        coerce=_batch_sizes,
        metavar="N",
    )
    threads: int | None = option(
        None, "threads for PyTorch and ORT (default: all cores)", at_least(1)
    )
    device: Literal["cpu", "cuda", "auto"] = option(
        "cpu",
        "where variants run and are timed: cpu, cuda (PyTorch on the GPU; ONNX on "
        "onnxruntime-gpu's CUDA provider if installed), auto (the GPU where there is one); "
        "peak memory is always measured on the CPU",
    )
    suite: list[str] = option(
        [],
        "labelled datasets to score every variant on besides the evaluated split (their test "
        "splits): a sentence embedder's downstream suite; the report adds each and their mean",
        coerce=_names,
        metavar="DATASET",
    )
    suite_examples: int = option(
        1000, "examples per suite dataset (a seeded sample of its test split)", at_least(1)
    )
    max_examples: int | None = option(
        None,
        "evaluate a seeded sample of N examples (default: all)",
        at_least(1),
    )
    eval_batch_size: int = option(32, "examples per prediction batch (not timed)", at_least(1))
    max_length: int | None = option(
        None,
        "token limit per input (default: 512, or the variant's own limit where lower)",
        at_least(1),
    )
    latency: bool = option(True, "time every variant at each batch size")
    latency_examples: int = option(
        256,
        "test inputs timed per batch size and round (N // batch size calls)",
        at_least(1),
    )
    repeats: int = option(3, "timing rounds (each variant timed once per round)", at_least(1))
    warmup: int = option(3, "untimed calls before each timed block", at_least(0))
    memory: bool = option(True, "measure peak memory, in one child process per variant")
    bootstrap_samples: int = option(
        DEFAULT_SAMPLES, "bootstrap resamples of the 95% confidence intervals", at_least(1)
    )
    seed: int = option(
        0, "seed of the example sample, the bootstrap resamples and the timed inputs"
    )
    baselines: list[str] = option(
        [],
        "variants that are another tool's result (e.g. optimum's int8 of the teacher); the "
        "report sets the final variant's speed, size and agreement against each",
        coerce=_names,
        metavar="NAME",
    )
