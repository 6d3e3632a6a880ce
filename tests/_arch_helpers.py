"""Shared pieces of the per-architecture tests (tests/test_arch_*.py)."""

from __future__ import annotations

import numpy as np
from conftest import NEGATIVE, NEUTRAL, POSITIVE

# Settings that keep a Trainer run on a tiny model short.
QUICK = dict(progress=False, evaluate=False, batch_size=16, logging_steps=1)
# Evaluation without the slow parts (latency timing and the peak-memory child processes).
EVAL_QUICK = dict(latency=False, memory=False, progress=False, bootstrap_samples=50)


def loss_recorder():
    """A TrainerCallback that keeps every logged training loss, and the list it fills."""
    from transformers import TrainerCallback

    losses: list[float] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return Record(), losses


def assert_decreased(losses: list[float], k: int = 3) -> None:
    """The mean of the last k logged losses is below the mean of the first k."""
    assert len(losses) >= 2 * k, losses
    first, last = np.mean(losses[:k]), np.mean(losses[-k:])
    assert last < first, f"loss did not decrease: first {first:.4f}, last {last:.4f} ({losses})"


def make_word_tokenizer(path=None, words=None, append_eos=False):
    """A real word-level tokenizer (tokenizers library) wrapped for transformers; no hub.

    append_eos: end every encoded text with <eos>, as T5's tokenizer does.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["<pad>", "<unk>", "<eos>"] + (words or POSITIVE + NEGATIVE + NEUTRAL)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if append_eos:
        core.post_processor = processors.TemplateProcessing(
            single="$A <eos>", special_tokens=[("<eos>", 2)]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
        bos_token="<eos>",
        model_input_names=["input_ids", "attention_mask"],
    )
    if path is not None:
        tok.save_pretrained(path)
    return tok
