"""The top-k teacher cache of a causal LM: what it keeps, the KL it gives, and its record.

The top-k KL over the teacher's k most likely tokens plus "all the others" equals the full
token KL when k is the whole vocabulary and is never above it otherwise; a distillation from
the cache with k = vocabulary trains exactly as one from the live teacher.
"""

from __future__ import annotations

import json

import pytest
import torch
from zoo import LM_MAX_LENGTH, QUICK_GENERATIVE, lm_data, make_tiny_decoder, make_tiny_gpt2

from pocketsize.distill.cache import top_k_parts
from pocketsize.distill.losses import LossContext, token_kl
from pocketsize.errors import PocketsizeError


def _views(k: int, vocab: int = 40, T: float = 2.0):
    torch.manual_seed(0)
    student = {"logits": torch.randn(3, 5, vocab) * 3}
    full = {"logits": torch.randn(3, 5, vocab) * 3}
    cached = top_k_parts("logits", full["logits"], k, T)
    batch = {"labels": torch.tensor([[1] * 5, [1] * 5, [1, 1, 1, -100, -100]])}
    return student, full, cached, batch, LossContext(temperature=T)


def test_top_k_kl_is_the_full_kl_at_k_vocab_and_below_it_otherwise():
    student, full, cached, batch, ctx = _views(k=40)
    exact = token_kl(student, full, batch, ctx)
    assert token_kl(student, cached, batch, ctx).item() == pytest.approx(exact.item(), rel=1e-5)
    previous = 0.0
    for k in (1, 4, 16):  # a coarser split of the outcomes: a smaller KL, growing with k
        _, _, cached, _, _ = _views(k=k)
        value = token_kl(student, cached, batch, ctx).item()
        assert previous <= value < exact.item() and value > 0
        previous = value


def _distill(tmp_path, teacher, data, name, **kw):
    from pocketsize.distill import distill

    out = distill(
        teacher, data, "truncate:0", tmp_path / name, task="causal-lm",
        losses={"token_kl": 1.0}, temperature=2.0, max_steps=6, learning_rate=3e-3,
        shuffle=False, cache_dir=tmp_path / "cache", max_length=LM_MAX_LENGTH,
        **{**QUICK_GENERATIVE, "logging_steps": 1}, **kw,
    )  # fmt: skip
    return json.loads((out / "stage.json").read_text())


def test_distillation_from_the_top_k_cache(tmp_path):
    from transformers import AutoTokenizer

    data = lm_data(n_train=48)
    teacher = make_tiny_gpt2(tmp_path / "teacher", n_layer=2)
    vocab = len(AutoTokenizer.from_pretrained(teacher))

    live = _distill(tmp_path, teacher, data, "live")
    assert live["cache"] == {"used": False}
    whole = _distill(tmp_path, teacher, data, "whole", cache=True, cache_top_k=vocab)
    assert whole["cache"]["used"] and whole["cache"]["top_k"] == vocab
    assert whole["cache"]["top_k_mass"] == pytest.approx(1.0, abs=1e-5)
    kl_live = [e["loss_token_kl"] for e in live["losses"]]
    kl_whole = [e["loss_token_kl"] for e in whole["losses"]]
    assert kl_whole == pytest.approx(kl_live, abs=1e-4)

    top4 = _distill(tmp_path, teacher, data, "top4", cache=True, cache_top_k=4)
    assert top4["cache"]["top_k"] == 4 and not top4["cache"]["hit"]
    assert 0 < top4["cache"]["top_k_mass"] < 1
    again = _distill(tmp_path, teacher, data, "again", cache=True, cache_top_k=4)
    assert again["cache"]["hit"] and again["cache"]["top_k_mass"] == top4["cache"]["top_k_mass"]
    size = {
        r["cache"]["top_k"]: sum(
            f.stat().st_size for f in (tmp_path / "cache" / r["cache"]["key"]).glob("*.npy")
        )
        for r in (whole, top4)
    }
    assert size[4] < size[vocab] / 4

    with pytest.raises(
        PocketsizeError, match="distill option cache_top_k: must be at least 1, not 0"
    ):
        _distill(tmp_path, teacher, data, "bad", cache=True, cache_top_k=0)


def test_a_tokenizer_padding_on_the_left_trains_from_the_cache_as_from_the_live_teacher(
    tmp_path,
):
    """Chat LLMs (SmolLM2, Llama) ship tokenizers that pad on the left, for batched generation.
    The cache stores each row from its first position and a decoder counts positions from the
    first column, so pocketsize's batches pad on the right whatever the tokenizer says; the
    tokenizer saved beside the student keeps its own side."""
    from transformers import AutoTokenizer

    data = lm_data(
        n_train=48
    ).map(  # texts of 3 to 10 words: batches that need padding
        lambda row, i: {"text": " ".join(row["text"].split()[: 3 + i % 8])}, with_indices=True
    )
    teacher = tmp_path / "teacher"
    make_tiny_decoder(teacher)
    tokenizer = AutoTokenizer.from_pretrained(teacher, padding_side="left")
    tokenizer.save_pretrained(teacher)  # in its tokenizer_config.json, as SmolLM2's
    vocab = len(tokenizer)
    live = _distill(tmp_path, teacher, data, "live")
    whole = _distill(tmp_path, teacher, data, "whole", cache=True, cache_top_k=vocab)
    kl_live = [e["loss_token_kl"] for e in live["losses"]]
    kl_whole = [e["loss_token_kl"] for e in whole["losses"]]
    assert kl_whole == pytest.approx(kl_live, abs=1e-4)
    assert AutoTokenizer.from_pretrained(tmp_path / "whole").padding_side == "left"


def test_cli_refuses_a_top_k_cache_without_the_cache(tmp_path, capsys):
    from pocketsize.cli import main

    argv = ["distill", "--teacher", "t", "--data", "d", "--out", str(tmp_path / "o")]
    assert main(argv + ["--no-cache", "--cache-top-k", "8"]) == 2
    assert "cache=off (--no-cache) and cache_top_k contradict" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
