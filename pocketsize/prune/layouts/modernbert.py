"""ModernBERT's layout (`model.layers[i]` with a fused `attn.Wqkv`, `attn.Wo`, and a gated MLP
whose `mlp.Wi` stacks the input and gate projections: neuron j is rows j and I + j of Wi and
column j of `mlp.Wo`).

MLP neurons and whole layers can go on their own; heads and hidden width only together.
ModernBERT computes its head size as hidden_size / num_attention_heads and builds its output
projection hidden x hidden, so a model with fewer heads loads only when the hidden size shrinks
to the kept heads times the head size (heads=0.5 with width=0.5), one head count in every
layer. The fused Wqkv then loses each removed head's rows in its query, key and value blocks.
Width narrows the token table, every LayerNorm (the embedding norm, each layer's attention and
MLP norms, the final norm) and every projection's hidden side; the task head's dense layer keeps
its own best outputs and its LayerNorm follows them (prune/width.py).

The layers are pre-norm residual blocks, but a layer's position decides what it computes when
the model loads: every n-th layer (n = `global_attn_every_n_layers`) attends globally, the
others in a local window, and layer 0 has no attention norm. Depth pruning therefore drops whole
runs of n layers that start at a global layer, after the first run, so every kept layer keeps
its kind (formats/layer_lists.py refuses any other selection, for truncated students too). A
run's score is the sum of its layers' block influence.
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


@register
class ModernBertLayout(HeadsWithWidth):
    model_types = ("modernbert",)
    layer_modules = ("attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo")
    ffn_input_blocks = 2
    depth = True
    name = "ModernBERT"

    def layers(self) -> list:
        return list(self.model.base_model.layers)

    def attention_output(self, layer):
        return layer.attn.Wo

    def head_size(self) -> int:
        # the live modules keep it while heads and width change (the config derives it)
        return self.layers()[0].attn.head_dim

    def keep_heads(self, layer, channels, n_kept: int) -> None:
        import torch

        attn = layer.attn
        rows = torch.cat([channels + b * attn.all_head_size for b in range(3)])  # q, k, v
        attn.Wqkv = keep_outputs(attn.Wqkv, rows)
        attn.Wo = keep_inputs(attn.Wo, channels)
        attn.num_heads, attn.all_head_size = n_kept, len(channels)

    # ---- hidden width ----
    def width_norms(self) -> list:
        base = self.model.base_model
        norms = [base.embeddings.norm]
        for layer in self.layers():
            norms += [n for n in (layer.attn_norm, layer.mlp_norm) if hasattr(n, "weight")]
        return [*norms, base.final_norm]

    def remove_width(self, keep) -> None:
        base = self.model.base_model
        slice_embedding_columns(base.embeddings.tok_embeddings, keep)
        base.embeddings.norm = sliced_layer_norm(base.embeddings.norm, keep)
        for layer in self.layers():
            if hasattr(layer.attn_norm, "weight"):  # layer 0's is an Identity
                layer.attn_norm = sliced_layer_norm(layer.attn_norm, keep)
            layer.attn.Wqkv = keep_inputs(layer.attn.Wqkv, keep)
            layer.attn.Wo = keep_outputs(layer.attn.Wo, keep)
            layer.mlp_norm = sliced_layer_norm(layer.mlp_norm, keep)
            layer.mlp.Wi = keep_inputs(layer.mlp.Wi, keep)
            layer.mlp.Wo = keep_outputs(layer.mlp.Wo, keep)
        base.final_norm = sliced_layer_norm(base.final_norm, keep)
        self.config.num_attention_heads = len(keep) // self.head_size()
        self.config.hidden_size = len(keep)

    def _runs(self) -> list[list[int]]:
        """The layers droppable together: n at a time from layer n on (the last run may be
        shorter: nothing follows it)."""
        n, depth = self.config.global_attn_every_n_layers, len(self.layers())
        return [list(range(s, min(s + n, depth))) for s in range(n, depth, n)]

    def _runs_to_remove(self, fraction: float, n_remove: int) -> int:
        n, runs = self.config.global_attn_every_n_layers, self._runs()
        k = max(1, int(round(n_remove / n)))
        if k > len(runs):
            raise PocketsizeError(
                f"depth={fraction} would drop {k} runs of {n} layers, but ModernBERT's "
                f"{len(self.layers())} layers have {len(runs)} that can go (one layer in {n} is "
                "global and a kept layer must keep its kind); use a smaller depth= or distil a "
                "student with fewer layers (student='config:layers=N')"
            )
        return k

    def check_depth(self, fraction: float) -> int:
        n_remove = super().check_depth(fraction)
        self._runs_to_remove(fraction, n_remove)
        return n_remove

    def plan_depth(self, influence, n_remove: int) -> list[int]:
        k = self._runs_to_remove(n_remove / len(influence), n_remove)
        ranked = sorted(self._runs(), key=lambda run: float(influence[run].sum()))
        return sorted(i for run in ranked[:k] for i in run)

    def ffn_inputs(self, layer) -> list:
        return [layer.mlp.Wi]

    def ffn_output(self, layer):
        return layer.mlp.Wo
