"""MPNet's layout (all-mpnet-base-v2): `encoder.layer[i]` with `attention.attn.{q,k,v,o}`,
`intermediate.dense` and `output.dense`, as BERT's but for the attention's names, and one
relative position bias for the whole encoder (`encoder.relative_attention_bias`, one column per
head).

MLP neurons go as BERT's do. Heads do not: every layer adds the same position-bias tensor, one
slice per head, so a layer with fewer heads would need a bias of its own that neither MPNet's
code nor its config can state; hidden width (which sets the head count) is not offered either.
Both are refused before any scoring, with what does work instead.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import Layout, register

_INSTEAD = (
    "prune its MLP neurons (ffn=) and vocabulary (vocab=True), or distil a smaller student "
    "(student='config:layers=3,hidden=384,heads=6', or an existing small embedder)"
)


@register
class MPNetLayout(Layout):
    model_types = ("mpnet",)
    layer_modules = ("attention.attn.q", "attention.attn.o", "intermediate.dense", "output.dense")

    def layers(self) -> list:
        return list(self.model.base_model.encoder.layer)

    def attention_output(self, layer):
        return layer.attention.attn.o

    def check_heads(self, fraction: float, scope: str, kv_groups: bool) -> None:
        raise PocketsizeError(
            "MPNet's layers share one relative position bias with a column per head, so no "
            f"layer can lose heads alone; drop heads= and {_INSTEAD}"
        )

    def ffn_inputs(self, layer) -> list:
        return [layer.intermediate.dense]

    def ffn_output(self, layer):
        return layer.output.dense
