"""BERT's layout: BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, ERNIE (`encoder.layer[i]` with
`attention.self.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
`output.dense`).

Heads go through transformers' own `prune_heads`, which records them in `config.pruned_heads`;
`from_pretrained` re-applies that record before loading the weights, so layers may keep
different head counts and still load with the Auto classes.

Hidden width (ranking and the task head: prune/width.py; whole heads: TransformersHeadPruning):
the result is a plain transformers model that `from_pretrained`, optimum's exporter and ONNX
Runtime's fusions take as is.
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
class BertLayout(TransformersHeadPruning):
    model_types = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie")
    layer_modules = (
        "attention.self.query",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    )
    width = True

    def layers(self) -> list:
        encoder = getattr(self.model.base_model, "encoder", None)
        if encoder is None or not hasattr(encoder, "layer"):
            raise PocketsizeError(
                f"{self.config.model_type} model has no encoder.layer, so its layout is not "
                "BERT's; structured pruning cannot find its heads"
            )
        return list(encoder.layer)

    def attention_output(self, layer):
        return layer.attention.output.dense

    def ffn_inputs(self, layer) -> list:
        return [layer.intermediate.dense]

    def ffn_output(self, layer):
        return layer.output.dense

    # ---- hidden width ----
    def width_norms(self) -> list:
        norms = [self.model.base_model.embeddings.LayerNorm]
        for layer in self.layers():
            norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
        return norms

    def body_modules(self):
        base = self.model.base_model  # its pooler belongs to the task head
        return [*base.embeddings.modules(), *base.encoder.modules()]

    def remove_width(self, keep) -> None:
        emb = self.model.base_model.embeddings
        for table in (emb.word_embeddings, emb.position_embeddings,
                      getattr(emb, "token_type_embeddings", None)):  # fmt: skip
            if table is not None:
                slice_embedding_columns(table, keep)
        emb.LayerNorm = sliced_layer_norm(emb.LayerNorm, keep)
        for layer in self.layers():
            attn = layer.attention
            for part in ("query", "key", "value"):
                linear = getattr(attn.self, part)
                setattr(attn.self, part, keep_inputs(linear, keep))
            attn.output.dense = keep_outputs(attn.output.dense, keep)
            attn.output.LayerNorm = sliced_layer_norm(attn.output.LayerNorm, keep)
            layer.intermediate.dense = keep_inputs(layer.intermediate.dense, keep)
            layer.output.dense = keep_outputs(layer.output.dense, keep)
            layer.output.LayerNorm = sliced_layer_norm(layer.output.LayerNorm, keep)
        layers = self.layers()
        self.record_width(
            len(keep),
            [layer.attention.self.num_attention_heads for layer in layers],
            [layer.attention for layer in layers],
        )
