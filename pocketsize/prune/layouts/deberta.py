"""DeBERTa-v2/v3's layout (`encoder.layer[i]` with `attention.self.{query,key,value}_proj`,
`attention.output.dense`, `intermediate.dense`, `output.dense`; model_type 'deberta-v2' for both
versions).

MLP neurons go on their own. Heads and hidden width go only together: DeBERTa builds its
attention output projection hidden_size x hidden_size whatever its head count, so a model with
fewer heads loads only when the hidden size shrinks to the kept heads times the head size
(heads=0.5 with width=0.5). Every layer keeps the same heads count (one config number), the head
size is stated in the config (`attention_head_size`), and the relative position table, its
LayerNorm and v2's own position projections lose the same channels. The layers are post-norm
(no depth pruning: distil a truncated student).
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import (
    Layout,
    keep_inputs,
    keep_outputs,
    register,
    slice_embedding_columns,
    sliced_layer_norm,
)

# the position projections v2 has of its own (v3 shares the content ones: share_att_key)
POSITION_PROJECTIONS = ("pos_key_proj", "pos_query_proj")


@register
class DebertaV2Layout(Layout):
    model_types = ("deberta-v2",)
    layer_modules = ("attention.output.dense", "intermediate.dense", "output.dense")
    width = True

    def layers(self) -> list:
        return list(self.model.base_model.encoder.layer)

    def head_size(self) -> int:
        default = self.config.hidden_size // self.config.num_attention_heads
        return getattr(self.config, "attention_head_size", default)

    def attention_output(self, layer):
        return layer.attention.output.dense

    def check_heads_and_width(self, heads: float, width: float) -> None:
        if heads and not width:
            raise PocketsizeError(
                "DeBERTa builds its attention output projection from hidden_size, so a model "
                "with fewer heads loads only with a hidden size of the kept heads: give width= "
                "removing the same share as heads= (heads=0.5, width=0.5), or prune ffn= alone, "
                "or distil a student with fewer heads (student='config:heads=N')"
            )

    def remove_heads(self, plan: dict) -> None:
        import torch

        if not plan:
            return
        size, n_heads = self.head_size(), self.config.num_attention_heads
        counts = {len(plan.get(i, [])) for i in range(len(self.layers()))}
        if len(counts) != 1:
            raise PocketsizeError("DeBERTa's layers must all keep the same number of heads")
        for i, layer in enumerate(self.layers()):
            kept = [h for h in range(n_heads) if h not in set(plan.get(i, []))]
            channels = torch.tensor([h * size + c for h in kept for c in range(size)])
            attn = layer.attention.self
            for name in ("query_proj", "key_proj", "value_proj", *POSITION_PROJECTIONS):
                if hasattr(attn, name):
                    setattr(attn, name, keep_outputs(getattr(attn, name), channels))
            layer.attention.output.dense = keep_inputs(layer.attention.output.dense, channels)
            attn.num_attention_heads, attn.all_head_size = len(kept), len(kept) * size
        # the head size stays what it was once hidden_size no longer divides into it
        self.config.attention_head_size = size
        self.config.num_attention_heads = n_heads - counts.pop()

    def ffn_inputs(self, layer) -> list:
        return [layer.intermediate.dense]

    def ffn_output(self, layer):
        return layer.output.dense

    # ---- hidden width ----
    def plan_width(self, fraction: float, kept_heads: int | None) -> int:
        width, size = self.config.hidden_size, self.head_size()
        kept = kept_heads if kept_heads is not None else self.config.num_attention_heads
        new = int(round((1 - fraction) * width / size)) * size
        if getattr(self.config, "conv_kernel_size", 0):
            raise PocketsizeError(
                "this DeBERTa-v2 has a convolution layer (conv_kernel_size), whose channels "
                "width pruning does not slice; drop width= (and heads=) and prune ffn=, or "
                "distil a narrower student (student='config:hidden=N')"
            )
        if new != kept * size and kept == self.config.num_attention_heads == width // size:
            raise PocketsizeError(
                "DeBERTa's hidden size is its heads times the head size, so its width goes only "
                "with its heads: give heads= removing the same share as width= (heads=0.5, "
                "width=0.5), or distil a narrower student (student='config:hidden=N')"
            )
        if new != kept * size:
            raise PocketsizeError(
                f"DeBERTa's hidden size must equal its heads times the head size ({size}): "
                f"width={fraction} leaves {new} channels but the layers keep {kept} heads "
                f"({kept * size} channels); use width={1 - kept * size / width:.4g} with these "
                "heads, or heads= and width= that remove the same share (heads=0.5, width=0.5)"
            )
        return new

    def width_norms(self) -> list:
        norms = [self.model.base_model.embeddings.LayerNorm]
        for layer in self.layers():
            norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
        return norms

    def body_modules(self):
        base = self.model.base_model  # the classifier's pooler belongs to the task head
        return [*base.embeddings.modules(), *base.encoder.modules()]

    def remove_width(self, keep) -> None:
        base = self.model.base_model
        emb = base.embeddings
        for table in (emb.word_embeddings, getattr(emb, "position_embeddings", None),
                      getattr(emb, "token_type_embeddings", None)):  # fmt: skip
            if table is not None:
                slice_embedding_columns(table, keep)
        emb.LayerNorm = sliced_layer_norm(emb.LayerNorm, keep)
        encoder = base.encoder
        if getattr(encoder, "rel_embeddings", None) is not None:
            slice_embedding_columns(encoder.rel_embeddings, keep)
        if getattr(encoder, "LayerNorm", None) is not None:  # norm_rel_ebd="layer_norm"
            encoder.LayerNorm = sliced_layer_norm(encoder.LayerNorm, keep)
        for layer in self.layers():
            attn = layer.attention.self
            for name in ("query_proj", "key_proj", "value_proj", *POSITION_PROJECTIONS):
                if hasattr(attn, name):
                    setattr(attn, name, keep_inputs(getattr(attn, name), keep))
            out = layer.attention.output
            out.dense = keep_outputs(out.dense, keep)
            out.LayerNorm = sliced_layer_norm(out.LayerNorm, keep)
            layer.intermediate.dense = keep_inputs(layer.intermediate.dense, keep)
            layer.output.dense = keep_outputs(layer.output.dense, keep)
            layer.output.LayerNorm = sliced_layer_norm(layer.output.LayerNorm, keep)
        width = len(keep)
        self.config.attention_head_size = self.head_size()
        self.config.hidden_size = width
        self.config.num_attention_heads = width // self.config.attention_head_size
        # both default to hidden_size and are saved beside it (width.py refused a narrower
        # embedding_size); the pooler reads and keeps the width
        for key in ("embedding_size", "pooler_hidden_size"):
            if getattr(self.config, key, None) is not None:
                setattr(self.config, key, width)
