"""The training stages' options: `TrainingConfig` (how to train, shared by finetune, distill and
pruning's recovery) apart from `DistillConfig`'s distillation settings, as TextBrewer keeps its
TrainingConfig apart from its DistillationConfig. The keywords of `finetune` / `distill`, their
CLI flags and the recipe's `teacher.finetune` / `distill` / `prune.recover_options` keys are
all made from these classes (pocketsize/options.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from pocketsize.errors import PocketsizeError
from pocketsize.options import (
    Config,
    above,
    at_least,
    on_off,
    option,
    share,
    whole_or,
)

OnOffAuto = Literal["auto", "on", "off"]


def _path_text(value):
    return os.fspath(value) if isinstance(value, os.PathLike) else value


@dataclass(frozen=True)
class TrainingConfig(Config):
    """How a model is trained: transformers' Trainer settings, with CPU-friendly defaults."""

    verb = "training"

    epochs: float = option(2, "passes over the training examples", above(0))
    batch_size: int = option(32, "examples per step (per process)", at_least(1))
    learning_rate: float = option(5e-5, "peak learning rate", above(0), old_flags={"--lr": None})
    max_length: int | None = option(
        None, "token limit per example (default: fitted to the data)", at_least(1)
    )
    max_steps: int = option(-1, "stop after this many steps (-1: the epochs decide)", whole_or(-1))
    save_steps: int | None = option(
        None, "checkpoint every N steps (default: every epoch)", at_least(1)
    )
    warmup_ratio: float = option(0.06, "share of the steps spent warming up", share())
    weight_decay: float = option(0.01, "AdamW weight decay", at_least(0))
    optim: str | None = option(
        None,
        "the optimizer, by transformers' TrainingArguments name: adamw_torch, sgd, adafactor, "
        "... (default: transformers' own)",
    )
    gradient_accumulation_steps: int = option(
        1, "batches whose gradients add up to one step", at_least(1)
    )
    logging_steps: int = option(50, "log the losses every N steps", at_least(1))
    bf16: OnOffAuto = option(
        "auto",
        "bfloat16 autocast; auto = on where the CPU/GPU has native bf16",
        coerce=on_off,
    )
    fp16: bool = option(False, "float16 mixed precision (a CUDA GPU without native bf16)")
    seed: int = option(0, "seed of the initialisation, the shuffling and dropout", recipe=False)
    shuffle: bool = option(
        True, "shuffle the examples (off: in order every epoch, for comparing runs)"
    )
    evaluate: bool = option(True, "score the validation split after every epoch")

    def check(self) -> None:
        if self.fp16 and self.bf16 == "on":
            raise PocketsizeError(
                f"{self.verb}: fp16 and bf16 autocast cannot both be on; pass bf16=False (--bf16 off)"
            )

    @property
    def bf16_setting(self) -> bool | str:
        """bf16 as distill/training.resolve_bf16 takes it: True, False or "auto"."""
        return {"on": True, "off": False}.get(self.bf16, self.bf16)


@dataclass(frozen=True)
class FinetuneConfig(TrainingConfig):
    """`pocketsize finetune`: a task head on a base encoder, or further training of a model."""

    verb = "finetune"


@dataclass(frozen=True)
class DistillConfig(TrainingConfig):
    """`pocketsize distill`: the training settings plus what the student learns from."""

    verb = "distill"

    epochs: float = option(3, "passes over the training examples", above(0))
    learning_rate: float | None = option(
        None,
        "peak learning rate (default: by student type: 2e-4 truncate, 1e-3 bilstm, else 5e-5)",
        above(0),
        old_flags={"--lr": None},
    )
    losses: dict | str | list | None = option(
        None,
        "weighted losses, e.g. kl=1,hidden=1 (default: the task's own: kl+ce, token_kl+token_ce)",
        old_flags={"--loss": None},
        metavar="NAME=WEIGHT,...",
    )
    temperature: float = option(2.0, "softmax temperature of the soft targets", above(0))
    layer_map: str | list = option(
        "auto",
        "student:teacher layer pairs for hidden/attention losses: auto | uniform | last:K | 0:1,1:3",
    )
    projection: bool = option(True, "allow linear projections where hidden widths differ")
    transfer: Any = option(
        None,
        "extra unlabelled text labelled by the teacher: a text file, or datasets as "
        "NAME, NAME:SPLIT or NAME:SPLIT:N (a sample), comma-separated "
        "(Python: also a list of texts or a Dataset)",
        coerce=_path_text,
        metavar="FILE_OR_NAME",
    )
    augment: int = option(0, "augmented copies per training text", at_least(0))
    cache: OnOffAuto = option(
        "auto",
        "cache the teacher's outputs on disk: auto = when every loss reads outputs only (with "
        "hidden-state losses: kept in memory from the first epoch for the later ones); "
        "off = the live teacher at every step",
        coerce=on_off,
        old_flags={"--no-cache": "off"},
    )
    cache_dir: str | None = option(
        None, "where the teacher-output cache lives (default: the user cache)", coerce=_path_text
    )
    cache_top_k: int | None = option(
        None,
        "cache a causal LM teacher as its K largest logits per position (top-k token KL); "
        "setting it turns that cache on (with --cache on alone: 64)",
        at_least(1),
        metavar="K",
    )

    def check(self) -> None:
        super().check()
        if self.cache == "off" and self.cache_top_k is not None:
            raise PocketsizeError(
                "distill: cache=off (--no-cache) and cache_top_k contradict each other; drop one"
            )
        if self.losses is not None:
            from pocketsize.distill.losses import parse_losses

            parse_losses(self.losses)  # unknown names and all-zero weights, before any work

    @property
    def cache_setting(self) -> bool | str:
        """cache as the distiller decides it: True, False or "auto" (a top-k asked for is on)."""
        if self.cache == "auto" and self.cache_top_k is not None:
            return True
        return {"on": True, "off": False}.get(self.cache, self.cache)

    @property
    def top_k(self) -> int:
        return self.cache_top_k if self.cache_top_k is not None else 64
