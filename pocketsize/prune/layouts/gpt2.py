"""GPT-2's layout (`transformer.h[i]` with a fused `attn.c_attn` for Q, K and V, `attn.c_proj`,
`mlp.c_fc` and `mlp.c_proj`; all of them transformers' `Conv1D`, which stores its weight as
[inputs, outputs], the transpose of a Linear's).

Heads go through transformers' own `prune_heads` (GPT-2 implements it and re-applies
`config.pruned_heads` when it loads), so layers may keep different head counts. The MLP size is
`n_inner` (None means 4 x n_embd). The blocks are pre-norm residual blocks, so whole layers can
go, unless `scale_attn_by_inverse_layer_idx` makes a layer's attention depend on its index.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import TransformersHeadPruning, register


@register
class GPT2Layout(TransformersHeadPruning):
    model_types = ("gpt2",)
    layer_modules = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ffn_key = "n_inner"
    depth = True

    def layers(self) -> list:
        return list(self.model.base_model.h)

    def attention_output(self, layer):
        return layer.attn.c_proj

    def ffn_size(self) -> int:
        return self.config.n_inner or 4 * self.config.n_embd

    def check_depth(self, fraction: float) -> int:
        if self.config.scale_attn_by_inverse_layer_idx:
            raise PocketsizeError(
                "this GPT-2 scales each layer's attention by 1 / (layer index + 1) "
                "(scale_attn_by_inverse_layer_idx), so dropping layers would change the ones "
                "that stay; drop depth=, or distil a student with fewer layers"
            )
        return super().check_depth(fraction)

    def ffn_inputs(self, layer) -> list:
        return [layer.mlp.c_fc]

    def ffn_output(self, layer):
        return layer.mlp.c_proj
