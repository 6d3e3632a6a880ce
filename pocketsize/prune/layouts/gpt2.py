"""GPT-2's layout (`transformer.h[i]` with a fused `attn.c_attn` for Q, K and V, `attn.c_proj`,
`mlp.c_fc` and `mlp.c_proj`; all of them transformers' `Conv1D`, which stores its weight as
[inputs, outputs], the transpose of a Linear's).

Heads go through transformers' own `prune_heads` (GPT-2 implements it and re-applies
`config.pruned_heads` when it loads), so layers may keep different head counts. The MLP size is
`n_inner` (None means 4 x n_embd). The blocks are pre-norm residual blocks, so whole layers can
go, unless `scale_attn_by_inverse_layer_idx` makes a layer's attention depend on its index.

Hidden width: the token and position tables, every LayerNorm (ln_1, ln_2, ln_f), the inputs of
c_attn and c_fc and the outputs of both c_proj lose the same channels. GPT-2 derives the head
size as n_embd / n_head, so the narrower width is a whole number of heads of the old size, and a
layer that keeps fewer heads records the rest in `pruned_heads` (TransformersHeadPruning).
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
class GPT2Layout(TransformersHeadPruning):
    model_types = ("gpt2",)
    layer_modules = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ffn_key = "n_inner"
    depth = True
    width = True

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

    # ---- hidden width ----
    def width_norms(self) -> list:
        norms = [norm for layer in self.layers() for norm in (layer.ln_1, layer.ln_2)]
        return [*norms, self.model.base_model.ln_f]

    def remove_width(self, keep) -> None:
        base = self.model.base_model
        # n_inner=None means 4 x the width: state the MLP size before the width changes
        self.config.n_inner = self.ffn_size()
        slice_embedding_columns(base.wte, keep)
        slice_embedding_columns(base.wpe, keep)
        for layer in self.layers():
            layer.ln_1 = sliced_layer_norm(layer.ln_1, keep)
            layer.attn.c_attn = keep_inputs(layer.attn.c_attn, keep)
            layer.attn.c_proj = keep_outputs(layer.attn.c_proj, keep)
            layer.ln_2 = sliced_layer_norm(layer.ln_2, keep)
            layer.mlp.c_fc = keep_inputs(layer.mlp.c_fc, keep)
            layer.mlp.c_proj = keep_outputs(layer.mlp.c_proj, keep)
        base.ln_f = sliced_layer_norm(base.ln_f, keep)
        base.embed_dim = len(keep)
        layers = self.layers()
        self.record_width(
            len(keep), [layer.attn.num_heads for layer in layers], [layer.attn for layer in layers]
        )
