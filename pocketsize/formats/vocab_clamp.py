"""The [UNK] clamp of a vocabulary-trimmed model: part of how such a model directory loads.

`pocketsize.prune` trims a model's vocabulary to the K pieces its task text uses and renumbers
the tokenizer so those pieces get ids 0..K-1 (the others K..V-1; see pocketsize/prune/vocab.py
for why). Every loader maps ids >= K to [UNK] right before the embedding lookup: in PyTorch
with `VocabClampedEmbedding` (installed by `apply_vocab_clamp` after `from_pretrained`), in
ONNX with a Less + Where in front of the graph (`add_vocab_clamp_to_onnx`). The config records
the trim under `pocketsize_vocab_trim`; models without it are left alone.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from pocketsize.errors import PocketsizeError

CONFIG_KEY = "pocketsize_vocab_trim"


@functools.cache
def embedding_class():
    import torch
    from torch import nn

    class VocabClampedEmbedding(nn.Embedding):
        """nn.Embedding whose out-of-vocabulary ids (>= num_embeddings) read the [UNK] row.

        Same parameter name (`weight`) as nn.Embedding, so checkpoints stay standard.
        """

        def __init__(self, num_embeddings, embedding_dim, unk_token_id, padding_idx=None):
            super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
            self.unk_token_id = int(unk_token_id)

        def forward(self, input_ids):
            in_vocab = input_ids < self.num_embeddings
            ids = torch.where(in_vocab, input_ids, torch.full_like(input_ids, self.unk_token_id))
            return super().forward(ids)

    return VocabClampedEmbedding


def apply_vocab_clamp(model):
    """Re-install the [UNK] clamp on a model loaded with from_pretrained; a no-op otherwise."""
    info = getattr(model.config, CONFIG_KEY, None)
    cls = embedding_class()
    old = model.get_input_embeddings()
    if not info or isinstance(old, cls):
        return model
    emb = cls(old.num_embeddings, old.embedding_dim, info["unk_token_id"], old.padding_idx)
    emb.weight = old.weight
    model.set_input_embeddings(emb)
    return model


def add_vocab_clamp_to_onnx(onnx_path, kept_vocab_size: int | None = None, unk_token_id=None):
    """Insert `input_ids = Where(input_ids < K, input_ids, unk)` in front of an ONNX graph.

    For graphs exported from the plain checkpoint (e.g. optimum's `main_export(dir)`), which
    loses the PyTorch clamp. K and unk come from the config.json next to the model when not
    given. Idempotent; returns True when the graph was changed.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    onnx_path = Path(onnx_path)
    if kept_vocab_size is None:
        config = json.loads((onnx_path.parent / "config.json").read_text(encoding="utf-8"))
        info = config.get(CONFIG_KEY)
        if not info:
            return False
        kept_vocab_size, unk_token_id = info["kept_vocab_size"], info["unk_token_id"]
    model = onnx.load(str(onnx_path))
    graph = model.graph
    if any(n.name == "pocketsize_vocab_clamp" for n in graph.node):
        return False
    inputs = {i.name: i for i in graph.input}
    if "input_ids" not in inputs:
        raise PocketsizeError(f"{onnx_path} has no input_ids input to clamp")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inputs["input_ids"].type.tensor_type.elem_type)
    clamped = "input_ids_in_kept_vocab"
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == "input_ids":
                node.input[k] = clamped
    graph.initializer.extend(
        [
            numpy_helper.from_array(
                np.array(kept_vocab_size, dtype=dtype), "pocketsize_kept_vocab"
            ),
            numpy_helper.from_array(np.array(unk_token_id, dtype=dtype), "pocketsize_unk_id"),
        ]
    )
    less = helper.make_node(
        "Less",
        ["input_ids", "pocketsize_kept_vocab"],
        ["input_ids_is_kept"],
        name="pocketsize_vocab_in_range",
    )
    where = helper.make_node(
        "Where",
        ["input_ids_is_kept", "input_ids", "pocketsize_unk_id"],
        [clamped],
        name="pocketsize_vocab_clamp",
    )
    graph.node.insert(0, where)
    graph.node.insert(0, less)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))
    return True
