"""ModernBERT's layout (`model.layers[i]` with a fused `attn.Wqkv`, `attn.Wo`, and a gated MLP
whose `mlp.Wi` stacks the input and gate projections: neuron j is rows j and I + j of Wi and
column j of `mlp.Wo`).

MLP neurons and whole layers can go, heads cannot: the config cannot state a head size
(ModernBERT computes it as hidden_size / num_attention_heads, and its output projection is
hidden x hidden), so fewer heads would not load.

The layers are pre-norm residual blocks, but a layer's position decides what it computes when
the model loads: every n-th layer (n = `global_attn_every_n_layers`) attends globally, the
others in a local window, and layer 0 has no attention norm. Depth pruning therefore drops whole
runs of n layers that start at a global layer, after the first run, so every kept layer keeps
its kind (formats/layer_lists.py refuses any other selection, for truncated students too). A
run's score is the sum of its layers' block influence.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import Layout, register


@register
class ModernBertLayout(Layout):
    model_types = ("modernbert",)
    layer_modules = ("attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo")
    ffn_input_blocks = 2
    depth = True

    def layers(self) -> list:
        return list(self.model.base_model.layers)

    def attention_output(self, layer):
        return layer.attn.Wo

    def check_heads(self, fraction: float, scope: str, kv_groups: bool) -> None:
        raise PocketsizeError(
            "ModernBERT's config cannot state a head size (it is hidden_size / "
            "num_attention_heads), so a model with fewer heads would not load; drop heads= and "
            "prune ffn= (MLP neurons), or distil a student with fewer heads "
            "(student='config:heads=N')"
        )

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
