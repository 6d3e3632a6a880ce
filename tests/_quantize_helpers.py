"""Tiny models for the export / quantize tests: a quickly trained classifier and broken variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from zoo import make_cls_dataset, make_tiny_bert


def prefill_logits(path, ids: np.ndarray) -> np.ndarray:
    """One prefill of `ids` (batch 1, empty past) through the causal-LM graph at `path`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None],
    }
    for i in session.get_inputs():
        if i.name.startswith("past_key_values."):
            feeds[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    names = {i.name for i in session.get_inputs()}
    return session.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0]


def train_tiny_classifier(path: Path, steps: int = 15, seed: int = 0) -> Path:
    """A tiny BERT that really learns make_cls_dataset's sentiment words (full-batch Adam, ~2 s),
    so that a broken quantization shows up as a drop in accuracy."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    make_tiny_bert(path, "text-classification", seed=seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    data = make_cls_dataset()["train"]
    enc = tok(list(data["text"]), padding=True, return_tensors="pt")
    labels = torch.tensor(list(data["label"]))
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(path)
    return path


def break_unused_embedding(path: Path, token: str = "[MASK]", value: float = 1e3) -> Path:
    """Put a huge outlier in the embedding row of a token the data never uses: the float model is
    unchanged, but per-tensor int8 of the embedding table rounds every other row to ~0."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[tok.convert_tokens_to_ids(token), 0] = value
    model.save_pretrained(path)
    return path


def break_ffn_weight(path: Path, layer: int = 1, value: float = 50.0) -> Path:
    """One huge weight in one layer's FFN input projection (an outlier that per-tensor int8 of that
    layer cannot represent without zeroing the rest of its weights)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        model.bert.encoder.layer[layer].intermediate.dense.weight[0, 0] = value
    model.save_pretrained(path)
    return path
