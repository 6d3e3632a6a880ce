"""DistilBERT's layout (`transformer.layer[i]` with `attention.{q,k,v,out}_lin` and
`ffn.lin1` / `ffn.lin2`; its config maps hidden_size and num_attention_heads to `dim` and
`n_heads`, and states the FFN size as `hidden_dim`).

Like BERT it implements transformers' `prune_heads` and re-applies `config.pruned_heads` when it
loads, so layers may keep different head counts, and its width goes in whole heads the same way.
Its layers are post-norm (no depth pruning: distil a truncated student instead). A config with
fixed sinusoidal position embeddings (`sinusoidal_pos_embds`) recomputes them from the width
when it loads, so its width stays.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import (
    TransformersHeadPruning,
    keep_inputs,
    keep_outputs,
    register,
    slice_embedding_columns,
    sliced_layer_norm,
)


@register
class DistilBertLayout(TransformersHeadPruning):
    model_types = ("distilbert",)
    layer_modules = ("attention.q_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")
    ffn_key = "hidden_dim"
    width = True

    def layers(self) -> list:
        return list(self.model.base_model.transformer.layer)

    def attention_output(self, layer):
        return layer.attention.out_lin

    def ffn_inputs(self, layer) -> list:
        return [layer.ffn.lin1]

    def ffn_output(self, layer):
        return layer.ffn.lin2

    # ---- hidden width ----
    def plan_width(self, fraction: float, kept_heads: int | None) -> int:
        if getattr(self.config, "sinusoidal_pos_embds", False):
            raise PocketsizeError(
                "this DistilBERT recomputes its sinusoidal position embeddings from the width "
                "when it loads (sinusoidal_pos_embds), so its width cannot shrink; drop width="
            )
        return super().plan_width(fraction, kept_heads)

    def width_norms(self) -> list:
        norms = [self.model.base_model.embeddings.LayerNorm]
        for layer in self.layers():
            norms += [layer.sa_layer_norm, layer.output_layer_norm]
        return norms

    def body_modules(self):
        base = self.model.base_model
        return [*base.embeddings.modules(), *base.transformer.modules()]

    def remove_width(self, keep) -> None:
        emb = self.model.base_model.embeddings
        slice_embedding_columns(emb.word_embeddings, keep)
        slice_embedding_columns(emb.position_embeddings, keep)
        emb.LayerNorm = sliced_layer_norm(emb.LayerNorm, keep)
        for layer in self.layers():
            attn = layer.attention
            for part in ("q_lin", "k_lin", "v_lin"):
                setattr(attn, part, keep_inputs(getattr(attn, part), keep))
            attn.out_lin = keep_outputs(attn.out_lin, keep)
            layer.sa_layer_norm = sliced_layer_norm(layer.sa_layer_norm, keep)
            layer.ffn.lin1 = keep_inputs(layer.ffn.lin1, keep)
            layer.ffn.lin2 = keep_outputs(layer.ffn.lin2, keep)
            layer.output_layer_norm = sliced_layer_norm(layer.output_layer_norm, keep)
        layers = self.layers()
        self.record_width(
            len(keep),
            [layer.attention.n_heads for layer in layers],
            [layer.attention for layer in layers],
        )
