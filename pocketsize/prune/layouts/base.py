"""What the structured pruner asks of an architecture, and the registry that answers by
`config.model_type` (one small class per layout, the way optimum's exporter declares one config
class per architecture).

A layout says where a model's layers, attention heads and MLP neurons live and how to remove
them so that the result is still a plain transformers model: the config states the new sizes,
and `from_pretrained`, `pipeline` and optimum's exporter take it with no pocketsize code.
Everything the pruner does on top (scoring, planning, recovery, vocabulary) is the same for
every layout.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError

_REGISTRY: dict[str, type[Layout]] = {}


def register(cls):
    """Class decorator: the layout of every model_type in `cls.model_types`."""
    for model_type in cls.model_types:
        _REGISTRY[model_type] = cls
    return cls


def supported_architectures() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def width_architectures() -> tuple[str, ...]:
    """The model types whose layout can remove hidden channels."""
    return tuple(t for t, cls in _REGISTRY.items() if cls.width)


def layout_for(model) -> Layout:
    """The model's layout, checked against its modules; a clear error for an unknown one."""
    model_type = getattr(model.config, "model_type", type(model).__name__)
    cls = _REGISTRY.get(model_type)
    if cls is None:
        raise PocketsizeError(
            f"structured pruning (heads, FFN, depth) does not support architecture "
            f"{model_type!r}; supported: {', '.join(_REGISTRY)} (magnitude sparsity and "
            "vocabulary trimming work on any model with a fast tokenizer)"
        )
    layout = cls(model)
    layout.check()
    return layout


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


class Layout:
    model_types: tuple[str, ...] = ()
    # module paths inside one layer that the methods below use (checked before any work)
    layer_modules: tuple[str, ...] = ()
    ffn_key = "intermediate_size"  # the config key of the MLP size
    # how many blocks of `ffn_size` rows each up/gate Linear stacks (ModernBERT's Wi holds the
    # input and the gate halves: neuron j is rows j and ffn_size + j)
    ffn_input_blocks = 1
    # can layers keep different head counts (BERT's config.pruned_heads records them)?
    per_layer_heads = False
    # can the layer count shrink with no other change (pre-norm residual blocks)?
    depth = False
    # can hidden channels go (plan_width, width_norms, body_modules, remove_width)?
    width = False

    def __init__(self, model):
        self.model = model
        self.config = model.config

    def check(self) -> None:
        layers = self.layers()
        for path in self.layer_modules:
            if _get(layers[0], path) is None:
                raise PocketsizeError(
                    f"{self.config.model_type} model has no {path} in its layers, so its layout "
                    f"is not the one pocketsize knows for {self.config.model_type}; supported: "
                    f"{', '.join(_REGISTRY)}"
                )

    # ---- layers ----
    def layers(self) -> list:
        raise NotImplementedError

    # ---- attention heads ----
    def head_size(self) -> int:
        return self.config.hidden_size // self.config.num_attention_heads

    def current_heads(self, layer_index: int) -> list[int]:
        """Indices (in the unpruned layer) of the heads a layer still holds."""
        return list(range(self.config.num_attention_heads))

    def attention_output(self, layer):
        """The Linear whose input is the heads' outputs side by side (what head scores read)."""
        raise NotImplementedError

    def check_heads(self, fraction: float, scope: str, kv_groups: bool) -> None:
        """Refuse, before any scoring, head settings this layout cannot carry out."""
        if kv_groups:
            raise PocketsizeError(
                f"kv_groups=True removes whole key/value groups of grouped-query decoders; "
                f"{self.config.model_type} has none (drop kv_groups)"
            )
        self.check_scope(scope)

    def check_scope(self, scope: str) -> None:
        if scope != "layer" and not self.per_layer_heads:
            raise PocketsizeError(
                f"scope={scope!r} would leave layers with different head counts, which a "
                f"{self.config.model_type} config cannot state; use scope='layer'"
            )

    def check_heads_and_width(self, heads: float, width: float) -> None:
        """Refuse a combination of heads= and width= that the config cannot state (DeBERTa:
        fewer heads only together with the hidden size they leave)."""

    def plan_heads(self, scores: list, fraction: float, scope: str, kv_groups=False) -> dict:
        """{layer: [head indices to remove]}, lowest scores first."""
        from pocketsize.prune.heads import plan_head_removal

        self.check_heads(fraction, scope, kv_groups)
        return plan_head_removal(self, scores, fraction, scope)

    def remove_heads(self, plan: dict) -> None:
        raise NotImplementedError

    # ---- MLP neurons ----
    def ffn_size(self) -> int:
        return getattr(self.config, self.ffn_key)

    def ffn_inputs(self, layer) -> list:
        """The Linears whose output rows are the MLP neurons (up, and gate where there is one)."""
        raise NotImplementedError

    def ffn_output(self, layer):
        """The Linear that reads the MLP neurons (one input column each)."""
        raise NotImplementedError

    def remove_neurons(self, plan: dict) -> None:
        """Remove the planned neurons; every layer loses the same number (one config size)."""
        import torch

        if not plan:
            return
        size = self.ffn_size()
        layers = self.layers()
        counts = {len(plan.get(i, [])) for i in range(len(layers))}
        if len(counts) != 1:
            raise PocketsizeError(
                "FFN pruning must remove the same number of neurons in every layer"
            )
        for i, layer in enumerate(layers):
            gone = set(plan.get(i, []))
            keep = torch.tensor([j for j in range(size) if j not in gone], dtype=torch.long)
            rows = torch.cat([keep + b * size for b in range(self.ffn_input_blocks)])
            for linear in self.ffn_inputs(layer):
                _replace(layer, linear, keep_outputs(linear, rows))
            output = self.ffn_output(layer)
            _replace(layer, output, keep_inputs(output, keep))
        setattr(self.config, self.ffn_key, size - counts.pop())

    # ---- depth ----
    def check_depth(self, fraction: float) -> int:
        """How many layers depth=fraction removes, refusing what this layout cannot do."""
        if not self.depth:
            raise PocketsizeError(
                f"depth pruning needs residual blocks that can be dropped without touching the "
                f"rest; {self.config.model_type} has post-norm layers (drop depth=, or distil a "
                "student with fewer layers: student='truncate:0,2,4')"
            )
        n = len(self.layers())
        n_remove = int(round(fraction * n))
        if not 0 < n_remove < n:
            raise PocketsizeError(
                f"depth={fraction} removes {n_remove} of {n} layers; choose a fraction that "
                f"removes at least one and keeps at least one ({1 / n:.3f} to {(n - 1) / n:.3f})"
            )
        return n_remove

    def plan_depth(self, influence, n_remove: int) -> list[int]:
        """The layers to drop: the `n_remove` of least block influence."""
        import torch

        return sorted(torch.argsort(influence)[:n_remove].tolist())

    def remove_layers(self, keep: list[int]) -> None:
        from pocketsize.formats.layer_lists import keep_layers

        keep_layers(self.model, keep)

    # ---- hidden width ----
    def plan_width(self, fraction: float, kept_heads: int | None) -> int:
        """The hidden size left by removing `fraction` of it (refusing what cannot load)."""
        raise NotImplementedError

    def width_norms(self) -> list:
        """The norms whose outputs rank the hidden channels (Minitron)."""
        raise NotImplementedError

    def body_modules(self):
        """The modules that remove_width slices; a Linear outside them that reads the hidden
        states belongs to the task head."""
        return self.model.base_model.modules()

    def remove_width(self, keep) -> None:
        """Keep the hidden channels at `keep` everywhere inside the body; update the config."""
        raise NotImplementedError


class TransformersHeadPruning(Layout):
    """Layouts whose models implement transformers' `prune_heads` and re-apply
    `config.pruned_heads` in `from_pretrained`: layers may keep different head counts.

    Their attention computes head_size = hidden_size / num_attention_heads, so a narrower width
    is a whole number of heads: the config states width / head_size heads, and a layer that
    keeps fewer records the rest in `pruned_heads` (a layer keeping k heads holds them in
    positions 0..k-1)."""

    per_layer_heads = True

    def plan_width(self, fraction: float, kept_heads: int | None) -> int:
        width, size = self.config.hidden_size, self.head_size()
        new = int(round((1 - fraction) * width / size)) * size
        if kept_heads is None:
            kept_heads = max(len(self.current_heads(i)) for i in range(len(self.layers())))
        if new < max(kept_heads, 1) * size:
            most = 1 - kept_heads * size / width
            fix = f"or at most width={most:.3f}" if most > 0 else "first"
            raise PocketsizeError(
                f"width={fraction} leaves {new} channels, room for {new // size} heads of size "
                f"{size}, but a layer keeps {kept_heads}; remove heads too (heads=) {fix}"
            )
        return new

    def record_width(self, width: int, heads_per_layer: list[int], attentions: list) -> None:
        """State the new width in the config: width / head_size heads, each layer's surplus
        recorded as pruned (on the config and on the layer's attention module)."""
        n_heads = width // self.head_size()
        self.config.hidden_size = width
        self.config.num_attention_heads = n_heads
        pruned = {i: list(range(k, n_heads)) for i, k in enumerate(heads_per_layer) if k < n_heads}
        self.config.pruned_heads = pruned
        for i, attention in enumerate(attentions):
            attention.pruned_heads = set(pruned.get(i, []))

    def current_heads(self, layer_index: int) -> list[int]:
        pruned = {int(k): v for k, v in (self.config.pruned_heads or {}).items()}
        gone = {int(h) for h in pruned.get(layer_index, [])}
        return [h for h in range(self.config.num_attention_heads) if h not in gone]

    def remove_heads(self, plan: dict) -> None:
        if plan:
            layers = self.layers()
            dtypes = [next(layer.parameters()).dtype for layer in layers]
            self.model.prune_heads({int(k): list(v) for k, v in plan.items()})
            for layer, dtype in zip(layers, dtypes):
                restore_linear_dtypes(layer, dtype)


class HeadsWithWidth(Layout):
    """Layouts whose attention output projection is built hidden x hidden whatever the head
    count (DeBERTa, ModernBERT): a model with fewer heads loads only in the hidden size they
    leave, so heads and width go together, in the same share, with one head count in every
    layer, and the head size stays what it was."""

    width = True
    name = ""  # the architecture, as messages name it

    def check_heads_and_width(self, heads: float, width: float) -> None:
        if heads and not width:
            raise PocketsizeError(
                f"{self.name} builds its attention output projection hidden x hidden whatever "
                "its head count, so a model with fewer heads loads only with a hidden size of "
                "the kept heads: give width= removing the same share as heads= (heads=0.5, "
                "width=0.5), or prune ffn= alone, or distil a student with fewer heads "
                "(student='config:heads=N')"
            )

    def remove_heads(self, plan: dict) -> None:
        import torch

        if not plan:
            return
        size, n_heads = self.head_size(), self.config.num_attention_heads
        counts = {len(plan.get(i, [])) for i in range(len(self.layers()))}
        if len(counts) != 1:
            raise PocketsizeError(f"{self.name}'s layers must all keep the same number of heads")
        for i, layer in enumerate(self.layers()):
            kept = [h for h in range(n_heads) if h not in set(plan.get(i, []))]
            channels = torch.tensor([h * size + c for h in kept for c in range(size)])
            self.keep_heads(layer, channels, len(kept))
        self.config.num_attention_heads = n_heads - counts.pop()

    def keep_heads(self, layer, channels, n_kept: int) -> None:
        """Keep, in one layer, the heads whose channels (of the heads side by side) are given."""
        raise NotImplementedError

    def plan_width(self, fraction: float, kept_heads: int | None) -> int:
        width, size = self.config.hidden_size, self.head_size()
        kept = kept_heads if kept_heads is not None else self.config.num_attention_heads
        if kept * size != width and abs((1 - fraction) * width - kept * size) <= size / 2:
            return kept * size  # the share heads= leaves, however the two fractions round
        new = int(round((1 - fraction) * width / size)) * size
        if new != kept * size and kept * size == width:
            n = width // size
            raise PocketsizeError(
                f"{self.name}'s hidden size is its heads times the head size, so its width goes "
                "only with its heads: give heads= removing the same share as width= (heads=0.5, "
                f"width=0.5; with {n} heads, a heads= share below {0.5 / n:.3g} removes none), "
                "or distil a narrower student (student='config:hidden=N')"
            )
        if new != kept * size:
            raise PocketsizeError(
                f"{self.name}'s hidden size must equal its heads times the head size ({size}): "
                f"width={fraction} leaves {new} channels but the layers keep {kept} heads "
                f"({kept * size} channels); use width={1 - kept * size / width:.4g} with these "
                "heads, or heads= and width= that remove the same share (heads=0.5, width=0.5)"
            )
        return new


def sliced_layer_norm(norm, keep):
    """A LayerNorm over the channels at `keep` only, on the device and in the dtype of `norm`
    (a model pruned on the GPU, or cast to bf16, stays so)."""
    import torch

    new = torch.nn.LayerNorm(
        len(keep), eps=norm.eps, bias=norm.bias is not None,
        device=norm.weight.device, dtype=norm.weight.dtype,
    )  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(norm.weight[keep])
        if norm.bias is not None:
            new.bias.copy_(norm.bias[keep])
    return new


def slice_embedding_columns(table, keep) -> None:
    """Keep the columns at `keep`, in place, so that a VocabClampedEmbedding keeps its class
    and clamp."""
    import torch

    table.weight = torch.nn.Parameter(table.weight.detach()[:, keep].clone())
    table.embedding_dim = len(keep)


def weight_out_in(module):
    """A Linear's or a GPT-2 Conv1D's weight as [outputs, inputs] (Conv1D stores [in, out])."""
    from transformers.pytorch_utils import Conv1D

    return module.weight.T if isinstance(module, Conv1D) else module.weight


def keep_outputs(module, index):
    """A copy of a Linear or Conv1D with only the outputs at `index` (same device and dtype)."""
    from transformers.pytorch_utils import Conv1D, prune_conv1d_layer, prune_linear_layer

    if isinstance(module, Conv1D):
        return _in_dtype_of(module, prune_conv1d_layer(module, index, dim=1))
    return _in_dtype_of(module, prune_linear_layer(module, index, dim=0))


def keep_inputs(module, index):
    """A copy of a Linear or Conv1D that reads only the inputs at `index` (same device, dtype)."""
    from transformers.pytorch_utils import Conv1D, prune_conv1d_layer, prune_linear_layer

    if isinstance(module, Conv1D):
        return _in_dtype_of(module, prune_conv1d_layer(module, index, dim=0))
    return _in_dtype_of(module, prune_linear_layer(module, index, dim=1))


def _in_dtype_of(old, new):
    # transformers' prune_*_layer build the copy on the old device but in the default dtype,
    # so a bf16 model would come out part float32
    return new.to(dtype=old.weight.dtype)


def restore_linear_dtypes(layer, dtype) -> None:
    """Every Linear / Conv1D of `layer` back in `dtype`, after transformers' own prune_heads
    rebuilt some of them in the default dtype."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for module in layer.modules():
        if isinstance(module, (torch.nn.Linear, Conv1D)) and module.weight.dtype != dtype:
            module.to(dtype=dtype)


def _replace(root, old, new) -> None:
    """Put `new` where `old` sits inside `root`'s modules."""
    for name, module in root.named_modules():
        if module is old:
            parent, _, attr = name.rpartition(".")
            setattr(root.get_submodule(parent) if parent else root, attr, new)
            return
    raise PocketsizeError(f"internal: module {type(old).__name__} not found in its layer")
