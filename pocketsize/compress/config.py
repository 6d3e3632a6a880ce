"""`compress`'s options: the constraints the chosen model must meet and the space searched.

One typed config (pocketsize/options.py): the keywords of `ps.compress`, the flags of
`pocketsize compress` and the recipe's `search:` keys are made from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketsize.errors import PocketsizeError
from pocketsize.options import Check, Config, above, at_least, option, share
from pocketsize.quantize.config import BLOCK  # the 4-bit block sizes quantize itself takes

LAYER_COUNTS = Check(lambda v: bool(v) and all(n >= 1 for n in v), "layer counts of at least 1")
SHARES = Check(lambda v: bool(v) and all(0 <= s < 1 for s in v), "shares from 0 (none) to below 1")
BITS = Check(lambda v: bool(v) and all(b in (4, 8) for b in v), "embedding bits, each 4 or 8")


def _numbers(kind):
    """A list option's items as `kind` (the CLI hands them over as text: --ffn 0 0.5)."""

    def read(values):
        try:
            return [kind(v) for v in values]
        except (TypeError, ValueError):
            raise PocketsizeError(f"expected a list of {kind.__name__}s, got {values!r}") from None

    return read


def _distill_options(value):
    """Checked as distill's options now, not after the frontier's work."""
    from pocketsize.prune.config import distill_options_of

    options = distill_options_of(value)
    if "epochs" in options:
        raise PocketsizeError(
            "drop epochs; the rungs set each trial's epochs (use epochs=, rungs= and eta=)"
        )
    return options


def _recover_options(value):
    return None if value is None else _distill_options(value)


@dataclass(frozen=True)
class CompressConfig(Config):
    """The smallest, fastest model that keeps a stated agreement with the teacher."""

    verb = "compress"

    # the budget: what the chosen model must keep (one of the two) and may cost
    min_agreement: float | None = option(
        None, "the least agreement with the teacher on the validation split", share()
    )
    max_drop: float | None = option(
        None, "the most the task metric may drop below the teacher's", share()
    )
    max_size_mb: float | None = option(None, "the most the shipped files may weigh", above(0))
    max_latency_ms: float | None = option(
        None, "the most one call may take at latency_batch (ONNX Runtime, this CPU)", above(0)
    )
    max_latency_of: str | None = option(
        None,
        "an ONNX model timed beside every candidate, block for block: a candidate may be no "
        "slower than it in the same measurement (a limit taken from a model: two timings of "
        "one sub-millisecond model minutes apart differ by up to 30% on a shared machine)",
        metavar="MODEL",
    )
    latency_batch: int = option(1, "the batch size max_latency_ms is measured at", at_least(1))
    latency_examples: int = option(
        32, "validation inputs timed per candidate (latency_examples // batch calls)", at_least(1)
    )
    budget_minutes: float = option(60, "wall-clock time the search may spend", above(0))
    second_teacher: str | None = option(
        None,
        "the teacher fine-tuned again with another seed: its agreement with the teacher is "
        "the noise floor (how much two trainings disagree), reported and drawn as a line",
        metavar="MODEL",
    )
    # the space: every combination is a candidate, built and timed before any training
    layers: list[int] = option(
        [2, 3, 4], "how many of the teacher's layers a candidate keeps (evenly spread)",
        LAYER_COUNTS, coerce=_numbers(int),
    )  # fmt: skip
    heads: list[float] = option(
        [0.0, 0.5], "shares of attention heads removed", SHARES, coerce=_numbers(float)
    )
    ffn: list[float] = option(
        [0.0, 0.5, 0.75], "shares of FFN neurons removed", SHARES, coerce=_numbers(float)
    )
    width: list[float] = option(
        [0.0], "shares of hidden channels removed", SHARES, coerce=_numbers(float)
    )
    embedding_bits: list[int] = option(
        [8, 4], "bits of the int8 model's embedding table", BITS, coerce=_numbers(int)
    )
    block_size: int = option(
        32, "4-bit embedding tables: values per scale (quantize's block_size)", BLOCK
    )
    vocab: bool = option(True, "trim the vocabulary to the pieces the data uses")
    scoring_examples: int = option(
        1024,
        "training examples that score heads and neurons for a trained trial's pruning (prune's "
        "own default; the frontier's untrained builds score on 64: size and speed do not "
        "depend on which heads go)",
        at_least(1),
    )
    # the training: successive halving over the candidates within the limits
    epochs: float = option(3, "distillation (and recovery) epochs of the last rung", above(0))
    rungs: int = option(
        3, "training rungs; each trains eta times longer than the one before", at_least(1)
    )
    eta: int = option(3, "each rung keeps the best 1/eta of the candidates", at_least(2))
    distill_options: dict = option(
        {},
        "distill options of every trial's distillation and recovery, e.g. '{learning_rate: "
        "2.0e-4, losses: {kl: 1}}' (epochs come from the rungs)",
        coerce=_distill_options,
        metavar="YAML",
    )
    recover_options: dict | None = option(
        None,
        "distill options of every trial's recovery after pruning, the whole set, e.g. "
        "'{learning_rate: 2.0e-4, losses: {kl: 1, hidden: 1}}' to aim the pruned model at the "
        "teacher alone (default: distill_options)",
        coerce=_recover_options,
        metavar="YAML",
    )
    seed: int = option(42, "seed of the candidates' pruning and training", recipe=False)

    @property
    def recovery(self) -> dict:
        """The distill options of a trial's recovery (its epochs come from the rung)."""
        return self.distill_options if self.recover_options is None else self.recover_options

    def check(self) -> None:
        if self.min_agreement is not None and self.max_drop is not None:
            raise PocketsizeError(
                "compress takes min_agreement or max_drop, not both; keep the one you mean"
            )
