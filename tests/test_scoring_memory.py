"""The scoring path keeps every token position's outputs (a causal LM's: the vocabulary per
position). A split whose outputs would not fit in free memory is refused after its first
batch with one line that says how much and what to cut, and distillation's validation skips
itself with a note instead of losing the training."""

from __future__ import annotations

import json
from collections import namedtuple

import numpy as np
import pytest
from zoo import EVAL_QUICK, LM_MAX_LENGTH, QUICK_GENERATIVE, lm_data, make_tiny_gpt2

from pocketsize.runtime.scoring import ScoringMemoryError, stack_outputs

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")

Memory = namedtuple("Memory", "available")


@pytest.fixture
def little_memory(monkeypatch):
    """psutil reports 20 kB free: a tiny LM's logits over a split are more than 0.8 of it."""
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory(available=20_000))


def test_stacked_outputs_are_padded_and_in_feature_order():
    per_batch = [
        (np.array([2, 0]), {"logits": np.ones((2, 3, 4), np.float32)}),
        (np.array([1]), {"logits": np.full((1, 5, 4), 2.0, np.float32)}),
    ]
    logits = stack_outputs(per_batch, ["logits"])["logits"]
    assert logits.shape == (3, 5, 4)
    assert (logits[1] == 2).all() and (logits[[0, 2], :3] == 1).all()
    assert (logits[[0, 2], 3:] == -1e4).all()  # padding never wins an argmax


def test_evaluate_refuses_a_split_whose_logits_would_not_fit(tmp_path, little_memory):
    from pocketsize.eval import evaluate

    teacher = make_tiny_gpt2(tmp_path / "lm")
    with pytest.raises(
        ScoringMemoryError,
        match=r"scoring 24 examples keeps [\d,]+ bytes of outputs per token position",
    ):
        evaluate({"lm": teacher}, lm_data()["test"], task="causal-lm", **EVAL_QUICK)


def test_distillation_goes_on_without_validation_when_it_would_not_fit(
    tmp_path, little_memory, capsys
):
    from pocketsize.distill import distill

    teacher = make_tiny_gpt2(tmp_path / "teacher")
    out = distill(teacher, lm_data(n_train=32), "truncate:0", tmp_path / "student",
                  task="causal-lm", max_steps=2, max_length=LM_MAX_LENGTH,
                  **QUICK_GENERATIVE)  # fmt: skip
    assert (out / "model.safetensors").is_file()
    assert "note: validation skipped from here on: scoring 16 examples" in capsys.readouterr().err
    record = json.loads((out / "stage.json").read_text())
    assert record["losses"]  # trained to the end
