"""DistilBERT's layout (`transformer.layer[i]` with `attention.{q,k,v,out}_lin` and
`ffn.lin1` / `ffn.lin2`; its config maps hidden_size and num_attention_heads to `dim` and
`n_heads`, and states the FFN size as `hidden_dim`).

Like BERT it implements transformers' `prune_heads` and re-applies `config.pruned_heads` when it
loads, so layers may keep different head counts. Its layers are post-norm (no depth pruning:
distil a truncated student instead); hidden width is not sliced (prune/width.py knows BERT's
module names only).
"""

from __future__ import annotations

from pocketsize.prune.layouts.base import TransformersHeadPruning, register


@register
class DistilBertLayout(TransformersHeadPruning):
    model_types = ("distilbert",)
    layer_modules = ("attention.q_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")
    ffn_key = "hidden_dim"

    def layers(self) -> list:
        return list(self.model.base_model.transformer.layer)

    def attention_output(self, layer):
        return layer.attention.out_lin

    def ffn_inputs(self, layer) -> list:
        return [layer.ffn.lin1]

    def ffn_output(self, layer):
        return layer.ffn.lin2
