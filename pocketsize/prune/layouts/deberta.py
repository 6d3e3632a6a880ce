"""DeBERTa-v2/v3's layout (`encoder.layer[i]` with `attention.self.{query,key,value}_proj`,
`attention.output.dense`, `intermediate.dense`, `output.dense`; model_type 'deberta-v2' for both
versions).

Only MLP neurons can go (and the vocabulary, as on any model). DeBERTa does not implement
transformers' `prune_heads`, and although its config may state `attention_head_size`, the
attention's output projection is built hidden_size x hidden_size, so a model with fewer heads
would not load. The layers are post-norm (no depth pruning: distil a truncated student).
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import Layout, register


@register
class DebertaV2Layout(Layout):
    model_types = ("deberta-v2",)
    layer_modules = ("attention.output.dense", "intermediate.dense", "output.dense")

    def layers(self) -> list:
        return list(self.model.base_model.encoder.layer)

    def attention_output(self, layer):
        return layer.attention.output.dense

    def check_heads(self, fraction: float, scope: str, kv_groups: bool) -> None:
        raise PocketsizeError(
            "DeBERTa builds its attention output projection from hidden_size, whatever its "
            "head count, so a model with fewer heads would not load; drop heads= and prune "
            "ffn= (MLP neurons), or distil a student with fewer heads (student='config:heads=N')"
        )

    def ffn_inputs(self, layer) -> list:
        return [layer.intermediate.dense]

    def ffn_output(self, layer):
        return layer.output.dense
