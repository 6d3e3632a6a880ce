"""BERT's layout: BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, ERNIE (`encoder.layer[i]` with
`attention.self.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
`output.dense`).

Heads go through transformers' own `prune_heads`, which records them in `config.pruned_heads`;
`from_pretrained` re-applies that record before loading the weights, so layers may keep
different head counts and still load with the Auto classes. Hidden width: prune/width.py.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import TransformersHeadPruning, register


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
