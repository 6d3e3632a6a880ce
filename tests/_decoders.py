"""Tiny random Llama-layout decoders (Llama, Mistral, Qwen2, Qwen3) with a word-level
tokenizer, for the pruning and per-architecture tests."""

from __future__ import annotations

import torch
from _arch_helpers import make_word_tokenizer

HEAD_DIM = 8


def decoder_config(model_type, vocab_size, tokenizer, **overrides):
    from transformers import AutoConfig

    extra = {
        # alternating full and sliding-window layers (window shorter than the test texts), so
        # a layer_types list that did not follow the kept layers changes the logits
        "qwen2": dict(use_sliding_window=True, sliding_window=4, max_window_layers=0,
                      layer_types=["full_attention", "sliding_attention"] * 2),
        "mistral": dict(sliding_window=None),
        # rotary positions in every other layer only
        "smollm3": dict(no_rope_layers=[1, 0, 1, 0]),
    }.get(model_type, {})  # fmt: skip
    kw = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=HEAD_DIM,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    kw.update(extra)
    kw.update(overrides)
    return AutoConfig.for_model(model_type, **kw)


def make_tiny_decoder(path, model_type="llama", seed=0, **overrides):
    from transformers import AutoModelForCausalLM

    tokenizer = make_word_tokenizer(path)
    config = decoder_config(model_type, len(tokenizer), tokenizer, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random biases too (Qwen2 has q/k/v biases), so slicing them shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(path)
    return model, tokenizer
