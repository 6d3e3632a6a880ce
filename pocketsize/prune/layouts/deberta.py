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
    HeadsWithWidth,
    keep_inputs,
    keep_outputs,
    register,
    slice_embedding_columns,
    sliced_layer_norm,
)
from pocketsize.prune.layouts.bert import BertLayout

# the position projections v2 has of its own (v3 shares the content ones: share_att_key)
POSITION_PROJECTIONS = ("pos_key_proj", "pos_query_proj")


@register
class DebertaV2Layout(HeadsWithWidth):
    model_types = ("deberta-v2",)
    layer_modules = ("attention.output.dense", "intermediate.dense", "output.dense")
    name = "DeBERTa"

    def layers(self) -> list:
        return list(self.model.base_model.encoder.layer)

    def head_size(self) -> int:
        default = self.config.hidden_size // self.config.num_attention_heads
        return getattr(self.config, "attention_head_size", default)

    def attention_output(self, layer):
        return layer.attention.output.dense

    def remove_heads(self, plan: dict) -> None:
        # stated, as hidden_size / num_attention_heads no longer gives it once heads go
        self.config.attention_head_size = self.head_size()
        super().remove_heads(plan)

    def keep_heads(self, layer, channels, n_kept: int) -> None:
        attn = layer.attention.self
        for name in ("query_proj", "key_proj", "value_proj", *POSITION_PROJECTIONS):
            if hasattr(attn, name):
                setattr(attn, name, keep_outputs(getattr(attn, name), channels))
        layer.attention.output.dense = keep_inputs(layer.attention.output.dense, channels)
        attn.num_attention_heads, attn.all_head_size = n_kept, len(channels)

    def ffn_inputs(self, layer) -> list:
        return [layer.intermediate.dense]

    def ffn_output(self, layer):
        return layer.output.dense

    def check_heads_and_width(self, heads: float, width: float) -> None:
        if (heads or width) and getattr(self.config, "conv_kernel_size", 0):
            raise PocketsizeError(
                "this DeBERTa-v2 has a convolution layer (conv_kernel_size), whose channels "
                "width pruning does not slice, and its heads go only with width; drop heads= "
                "and width= and prune ffn=, or distil a student with fewer heads or a narrower "
                "width (student='config:heads=N' / 'config:hidden=N')"
            )
        super().check_heads_and_width(heads, width)

    # the post-norm layers are BERT's: the same norms rank the channels, the pooler is the head's
    width_norms = BertLayout.width_norms
    body_modules = BertLayout.body_modules

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
