"""MPNet's layout (all-mpnet-base-v2): `encoder.layer[i]` with `attention.attn.{q,k,v,o}`,
`intermediate.dense` and `output.dense`, as BERT's but for the attention's names, and one
relative position bias for the whole encoder (`encoder.relative_attention_bias`, one column per
head).

MLP neurons go as BERT's do. Heads and hidden width go only together, as DeBERTa's: MPNet builds
its attention output projection hidden x hidden and takes the head size as hidden / heads, so a
model with fewer heads loads only when the hidden size shrinks to the kept heads times the head
size (heads=0.5 with width=0.5). And since every layer adds the same position bias, one column
per head, every layer keeps the same heads: the heads ranked lowest over all the layers go, and
the bias loses their columns.
"""

from __future__ import annotations

from pocketsize.prune.layouts.base import (
    HeadsWithWidth,
    keep_inputs,
    keep_outputs,
    register,
    slice_embedding_columns,
    sliced_layer_norm,
)
from pocketsize.prune.layouts.bert import BertLayout


@register
class MPNetLayout(HeadsWithWidth):
    model_types = ("mpnet",)
    layer_modules = ("attention.attn.q", "attention.attn.o", "intermediate.dense", "output.dense")
    name = "MPNet"

    def layers(self) -> list:
        return list(self.model.base_model.encoder.layer)

    def head_size(self) -> int:
        # the live modules keep it while heads and width change (the config derives it as
        # hidden / heads, which holds again once the width follows the heads)
        return self.layers()[0].attention.attn.attention_head_size

    def attention_output(self, layer):
        return layer.attention.attn.o

    def plan_heads(self, scores: list, fraction: float, scope: str, kv_groups=False) -> dict:
        """The same heads from every layer: the lowest by their scores summed over the layers,
        each layer's scores normalised first (Michel et al. 2019), so no layer outweighs."""
        import torch

        self.check_heads(fraction, scope, kv_groups)
        n_heads = self.config.num_attention_heads
        total = sum(s / (s.norm() + 1e-20) for s in scores)
        n_remove = int(round(fraction * n_heads))
        gone = sorted(torch.argsort(total)[:n_remove].tolist())
        return {i: gone for i in range(len(self.layers()))} if gone else {}

    def remove_heads(self, plan: dict) -> None:
        import torch

        if not plan:
            return
        n_heads = self.config.num_attention_heads
        kept = torch.tensor([h for h in range(n_heads) if h not in set(plan[0])])
        super().remove_heads(plan)
        encoder = self.model.base_model.encoder
        slice_embedding_columns(encoder.relative_attention_bias, kept)
        encoder.n_heads = len(kept)

    def keep_heads(self, layer, channels, n_kept: int) -> None:
        attn = layer.attention.attn
        for name in ("q", "k", "v"):
            setattr(attn, name, keep_outputs(getattr(attn, name), channels))
        attn.o = keep_inputs(attn.o, channels)
        attn.num_attention_heads, attn.all_head_size = n_kept, len(channels)

    def ffn_inputs(self, layer) -> list:
        return [layer.intermediate.dense]

    def ffn_output(self, layer):
        return layer.output.dense

    # ---- hidden width ----
    def width_norms(self) -> list:
        norms = [self.model.base_model.embeddings.LayerNorm]
        for layer in self.layers():
            norms += [layer.attention.LayerNorm, layer.output.LayerNorm]
        return norms

    body_modules = BertLayout.body_modules  # embeddings and encoder; the pooler is the head's

    def remove_width(self, keep) -> None:
        emb = self.model.base_model.embeddings
        for table in (emb.word_embeddings, emb.position_embeddings):
            slice_embedding_columns(table, keep)
        emb.LayerNorm = sliced_layer_norm(emb.LayerNorm, keep)
        for layer in self.layers():
            attn = layer.attention.attn
            for name in ("q", "k", "v"):
                setattr(attn, name, keep_inputs(getattr(attn, name), keep))
            attn.o = keep_outputs(attn.o, keep)
            layer.attention.LayerNorm = sliced_layer_norm(layer.attention.LayerNorm, keep)
            layer.intermediate.dense = keep_inputs(layer.intermediate.dense, keep)
            layer.output.dense = keep_outputs(layer.output.dense, keep)
            layer.output.LayerNorm = sliced_layer_norm(layer.output.LayerNorm, keep)
        self.config.num_attention_heads = len(keep) // self.head_size()
        self.config.hidden_size = len(keep)
