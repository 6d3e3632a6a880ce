"""`prune`'s options: one typed config whose fields are grouped by the pass that reads them
(prune/passes.py); the keywords of `prune`, the flags of `pocketsize prune` and the recipe's
`prune:` keys are made from it (pocketsize/options.py). The keys stay flat, as recipes write
them (`heads: 0.5`, `recover_options: {...}`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from pocketsize.errors import PocketsizeError
from pocketsize.options import Check, Config, at_least, option

Scope = Literal["layer", "global"]
# Fewer examples than this give head rankings that change from one sample to the next.
MIN_SCORING_EXAMPLES = 32
FRACTION = Check(
    lambda v: 0 < v < 1, "a fraction to remove strictly between 0 and 1 (0.5 removes half)"
)


def _paths(value):
    """A file given as a path object is a path; a single corpus name is a list of one."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _corpora(value):
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value or ()]


def distill_options_of(value):
    """recover_options: a mapping, or from a CLI YAML flow text such as '{epochs: 3, losses:
    {kl: 1}}'; checked as distill's options here, not after the scoring work."""
    from pocketsize.prune.recovery import recovery_arguments

    options = _yaml_mapping(value) if isinstance(value, str) else value
    if not isinstance(options, dict):
        raise PocketsizeError(
            f"expected a mapping of distill options, got {options!r}; e.g. '{{epochs: 3}}'"
        )
    recovery_arguments(options)
    return options


def _yaml_mapping(text: str):
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PocketsizeError(
            f"cannot read {text!r} as options; write them like '{{epochs: 3, losses: {{kl: 1}}}}'"
        ) from e
    return parsed if parsed is not None else {}


@dataclass(frozen=True)
class PruneConfig(Config):
    """What to remove (each pass optional, in this order) and how to score it."""

    verb = "prune"

    # depth: whole layers, the ones that change the hidden states least (block influence)
    depth: float | None = option(None, "fraction of layers to remove", FRACTION)
    # heads: attention heads by mask gradient
    heads: float | None = option(None, "fraction of attention heads to remove", FRACTION)
    scope: Scope = option("layer", "heads removed per layer, or ranked over the whole model")
    kv_groups: bool = option(
        False, "grouped-query decoders: --heads removes whole key/value groups"
    )
    # ffn: FFN neurons
    ffn: float | None = option(None, "fraction of FFN neurons to remove", FRACTION)
    ffn_score: Literal["activation", "magnitude"] = option(
        "activation", "FFN neuron score: activation x gradient on task data, or weight magnitude"
    )
    # width: hidden channels, in whole heads
    width: float | None = option(
        None, "fraction of hidden channels to remove (rounded to whole heads)", FRACTION
    )
    # recovery: distillation from the unpruned model (or recover_teacher) after the above
    recover: bool = option(False, "distil from the unpruned model after removing structure")
    recover_options: dict = option(
        {},
        "distill options of the recovery, e.g. '{epochs: 3, losses: {kl: 1}}' (default: 1 epoch)",
        coerce=distill_options_of,
        metavar="YAML",
    )
    recover_teacher: Any = option(
        None,
        "what recovery distils from: a model directory or catalogue name (default: the "
        "unpruned model)",
        coerce=_paths,
        metavar="MODEL",
    )
    # sparsity: unstructured magnitude zeros (after recovery, which would regrow them)
    sparsity: float | None = option(
        None, "unstructured magnitude sparsity of the Linear weights (no speed-up)", FRACTION
    )
    sparsity_scope: Scope = option("global", "sparsity per layer, or over the whole model")
    # vocab: the pieces the data uses (last: it renumbers the tokenizer)
    vocab: bool = option(False, "trim the vocabulary to the pieces the data uses")
    vocab_splits: list = option(["train", "validation"], "the splits whose text's pieces are kept")
    vocab_min_count: int = option(
        1,
        "keep a piece only when the text uses it this often (rarer ones read as [UNK]); "
        "special tokens and vocab_keep are always kept",
        at_least(1),
    )
    vocab_extra_text: Any = option(
        None,
        "a text file (one text a line) whose pieces are also kept (Python: also a list of texts)",
        coerce=_paths,
        old_flags={"--vocab-extra": None},
        metavar="FILE",
    )
    vocab_corpora: list = option(
        [],
        "datasets whose text's pieces are also kept: NAME, NAME:SPLIT or NAME:SPLIT:N (a sample)",
        coerce=_corpora,
        old_flags={"--vocab-corpus": None},
        metavar="DATASET",
    )
    vocab_keep: Any = option(
        None,
        "a file of tokens (one a line) always kept (Python: also a list of tokens)",
        coerce=_paths,
        metavar="FILE",
    )
    # scoring: the examples that importance is measured on
    max_examples: int = option(1024, "examples to score importance on", at_least(1))
    min_examples: int = option(
        MIN_SCORING_EXAMPLES, "fewest examples that scoring accepts (refused below)", at_least(1)
    )
    batch_size: int = option(16, "examples per scoring batch", at_least(1))
    max_length: int | None = option(
        None, "token limit of the scoring examples (default: the task's)", at_least(1)
    )
    seed: int = option(0, "seed of the scoring sample", recipe=False)

    def check(self) -> None:
        from pocketsize.prune.passes import passes_for

        if not passes_for(self):
            raise PocketsizeError(
                "nothing to prune; give heads=, ffn=, width=, depth=, vocab=True and/or "
                "sparsity= (--heads 0.5 ...)"
            )
        if self.kv_groups and not self.heads:
            raise PocketsizeError("kv_groups=True says how heads= removes heads; give heads= too")
        if self.recover_teacher is not None and not self.recover:
            raise PocketsizeError(
                "recover_teacher= needs recover=True (it is what recovery distils from)"
            )
        if self.recover and not self.structured:
            raise PocketsizeError(
                "recover=True only applies after removing layers, heads, FFN neurons or hidden "
                "channels"
            )

    @property
    def structured(self) -> bool:
        return bool(self.heads or self.ffn or self.width or self.depth)

    @property
    def needs_data(self) -> bool:
        return self.scores_on_data or self.vocab or self.recover

    @property
    def scores_on_data(self) -> bool:
        """Whether a scoring split is drawn: every score but the FFN weights' magnitude."""
        return bool(
            self.heads or self.width or self.depth or (self.ffn and self.ffn_score == "activation")
        )
