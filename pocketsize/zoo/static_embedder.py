"""A static sentence embedder: one vector per token, averaged over the text, normalized.

The smallest point of the sentence-embedding frontier (model2vec's idea): no attention, no
layers, a single table lookup and a mean, so it runs in microseconds and ships as one table.
pocketsize builds it from a teacher (distill/students.py: the teacher's own token embeddings,
reduced by PCA, then trained on the teacher's sentence embeddings) and loads model2vec's
static models into it (quantize/baselines.py), so both run through the same stages.
"""

from __future__ import annotations

import torch
from torch import nn

from pocketsize.formats.module_dir import register_module


@register_module("static-embedder")
class StaticEmbedder(nn.Module):
    """Token ids -> mean of their vectors over the real (unmasked, not skipped) tokens."""

    def __init__(
        self,
        vocab_size: int,
        dim: int = 256,
        normalize: bool = True,
        skip_ids: list[int] | None = None,
    ):
        super().__init__()
        skip_ids = sorted(int(i) for i in skip_ids or [])
        self.config = dict(vocab_size=vocab_size, dim=dim, normalize=normalize, skip_ids=skip_ids)
        self.embeddings = nn.Embedding(vocab_size, dim)
        # tokens that carry no meaning of their own ([CLS], [SEP]), left out of the mean as
        # model2vec leaves them out; a buffer, so the ONNX graph holds them as a constant
        self.register_buffer("skip", torch.tensor(skip_ids or [-1], dtype=torch.long), False)

    def forward(self, input_ids, attention_mask=None):
        keep = (input_ids.unsqueeze(-1) != self.skip).all(-1)
        if attention_mask is not None:
            keep = keep & attention_mask.bool()
        weights = keep.unsqueeze(-1).to(self.embeddings.weight.dtype)
        summed = (self.embeddings(input_ids) * weights).sum(1)
        pooled = summed / weights.sum(1).clamp(min=1.0)
        if self.config["normalize"]:
            pooled = nn.functional.normalize(pooled, p=2, dim=-1)
        return {"sentence_embedding": pooled}
