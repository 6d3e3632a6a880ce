"""The Llama layout, shared by Llama, Mistral, Qwen2, Qwen3 and SmolLM3 decoders
(`model.layers[i]` with `self_attn.{q,k,v,o}_proj` and `mlp.{gate,up,down}_proj`).

Their configs state one head count, one key/value head count and one MLP size for all layers,
so every layer keeps the same numbers (each layer chooses its own best units). Grouped-query
attention ties query heads to key/value heads: query head h reads key/value head h // g
(g = heads / kv heads), so pruning either removes the same number of query heads from every
group (the cache keeps its shape), or whole groups with their key/value head (the cache
shrinks). `head_dim` is written into the config, because after pruning it no longer equals
hidden_size / num_attention_heads. The blocks are pre-norm residual blocks, so whole layers can
go (depth pruning) with `layer_idx` and per-layer config lists renumbered.

Hidden width: the embedding's columns, every RMSNorm, the inputs of Q/K/V and of the gate and
up projections, and the outputs of the attention and MLP output projections lose the same
channels (the task head and tied output embeddings: prune/width.py). The explicit `head_dim`
leaves the heads untouched. RMSNorm divides by the root mean square over all channels, so the
kept norm weights are scaled by sqrt(old / new width): a channel that carries nothing then
leaves every output unchanged, instead of shifting every norm's scale.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import Layout, keep_inputs, keep_outputs, register


@register
class LlamaLayout(Layout):
    model_types = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
    layer_modules = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
    depth = True
    width = True

    def layers(self) -> list:
        return list(self.model.base_model.layers)

    def head_size(self) -> int:
        return getattr(self.config, "head_dim", None) or (
            self.config.hidden_size // self.config.num_attention_heads
        )

    def group_size(self) -> int:
        return self.config.num_attention_heads // self.kv_heads()

    def kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads

    def attention_output(self, layer):
        return layer.self_attn.o_proj

    def _head_unit(self, fraction: float, kv_groups: bool):
        """(whole groups?, units per layer, units removed): query heads of each group, or whole
        key/value groups (asked for, or the only choice when each group has one query head)."""
        g, kv = self.group_size(), self.kv_heads()
        whole_groups = bool(kv_groups) or g == 1
        per = kv if whole_groups else g
        return whole_groups, per, int(round(fraction * per))

    def check_heads(self, fraction: float, scope: str, kv_groups: bool) -> None:
        self.check_scope(scope)
        whole_groups, per, n_remove = self._head_unit(fraction, kv_groups)
        unit = "key/value group" if whole_groups else "query head of each group"
        if n_remove >= per:
            raise PocketsizeError(
                f"heads={fraction} would remove every {unit} ({n_remove} of {per}); use at most "
                f"{(per - 1) / per:.3f}" + ("" if whole_groups else " or kv_groups=True")
            )
        if n_remove == 0:
            raise PocketsizeError(
                f"heads={fraction} removes no {unit}: {per} per layer, so the smallest step is "
                f"{1 / per:.3f}"
            )

    def plan_heads(self, scores: list, fraction: float, scope: str, kv_groups=False) -> dict:
        """{layer: [query heads to remove]}: round(fraction x g) of each group's query heads,
        or round(fraction x kv heads) whole groups ranked by their query heads' summed scores."""
        import torch

        self.check_heads(fraction, scope, kv_groups)
        whole_groups, _, n_remove = self._head_unit(fraction, kv_groups)
        g, kv = self.group_size(), self.kv_heads()
        plan = {}
        for i, s in enumerate(scores):
            groups = s.reshape(kv, g)
            if whole_groups:
                gone = torch.argsort(groups.sum(1))[:n_remove].tolist()
                plan[i] = sorted(k * g + j for k in gone for j in range(g))
            else:
                order = torch.argsort(groups, dim=1)[:, :n_remove]
                plan[i] = sorted(k * g + int(j) for k in range(kv) for j in order[k])
        return plan

    def remove_heads(self, plan: dict) -> None:
        import torch

        if not plan:
            return
        size, g, kv = self.head_size(), self.group_size(), self.kv_heads()
        n_heads = self.config.num_attention_heads

        def channels(heads):
            return torch.tensor([h * size + c for h in heads for c in range(size)])

        shapes = set()
        for i, layer in enumerate(self.layers()):
            gone = set(plan.get(i, []))
            q_keep = [h for h in range(n_heads) if h not in gone]
            kv_keep = [k for k in range(kv) if any(k * g + j not in gone for j in range(g))]
            per_group = {sum(k * g + j not in gone for j in range(g)) for k in kv_keep}
            if len(per_group) != 1:
                raise PocketsizeError(
                    f"layer {i} would keep different numbers of query heads per key/value "
                    "group, which grouped-query attention cannot run"
                )
            attn = layer.self_attn
            attn.q_proj = keep_outputs(attn.q_proj, channels(q_keep))
            attn.k_proj = keep_outputs(attn.k_proj, channels(kv_keep))
            attn.v_proj = keep_outputs(attn.v_proj, channels(kv_keep))
            attn.o_proj = keep_inputs(attn.o_proj, channels(q_keep))
            attn.num_key_value_groups = len(q_keep) // len(kv_keep)
            shapes.add((len(q_keep), len(kv_keep)))
        if len(shapes) != 1:
            raise PocketsizeError(
                "head pruning must leave every layer with the same head counts (the config "
                f"states one), got {sorted(shapes)}"
            )
        ((heads, kv_heads),) = shapes
        self.config.head_dim = size
        self.config.num_attention_heads = heads
        self.config.num_key_value_heads = kv_heads

    def ffn_inputs(self, layer) -> list:
        return [layer.mlp.gate_proj, layer.mlp.up_proj]

    def ffn_output(self, layer):
        return layer.mlp.down_proj

    # ---- hidden width ----
    def plan_width(self, fraction: float, kept_heads: int | None) -> int:
        width = self.config.hidden_size
        step = 8 if width % 8 == 0 and width >= 64 else 1  # kernels like multiples of 8
        new = int(round((1 - fraction) * width / step)) * step
        if not 0 < new < width:
            raise PocketsizeError(
                f"width={fraction} leaves {new} of {width} hidden channels; choose a fraction "
                "that removes some and keeps some"
            )
        return new

    def width_norms(self) -> list:
        norms = []
        for layer in self.layers():
            norms += [layer.input_layernorm, layer.post_attention_layernorm]
        return norms + [self.model.base_model.norm]

    def remove_width(self, keep) -> None:
        import torch

        base = self.model.base_model
        head_dim = self.head_size()
        scale = (self.config.hidden_size / len(keep)) ** 0.5

        def slice_norm(norm):
            norm.weight = torch.nn.Parameter(norm.weight.detach()[keep] * scale)

        table = base.embed_tokens  # in place: a VocabClampedEmbedding keeps its clamp
        table.weight = torch.nn.Parameter(table.weight.detach()[:, keep].clone())
        table.embedding_dim = len(keep)
        for layer in self.layers():
            attn, mlp = layer.self_attn, layer.mlp
            attn.q_proj = keep_inputs(attn.q_proj, keep)
            attn.k_proj = keep_inputs(attn.k_proj, keep)
            attn.v_proj = keep_inputs(attn.v_proj, keep)
            attn.o_proj = keep_outputs(attn.o_proj, keep)
            mlp.gate_proj = keep_inputs(mlp.gate_proj, keep)
            mlp.up_proj = keep_inputs(mlp.up_proj, keep)
            mlp.down_proj = keep_outputs(mlp.down_proj, keep)
            slice_norm(layer.input_layernorm)
            slice_norm(layer.post_attention_layernorm)
        slice_norm(base.norm)
        self.config.head_dim = head_dim
        self.config.hidden_size = len(keep)
