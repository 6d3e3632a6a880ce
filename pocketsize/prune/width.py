"""Remove hidden channels (the model's width) from a BERT-layout encoder and its task head.

The residual stream's channels are shared by every layer, so one set of channels is kept
everywhere: the columns of each embedding table, every LayerNorm, the inputs of Q/K/V and of
the FFN's first projection, the outputs of the attention and FFN output projections, and the
inputs of the head's layers that read the hidden states. Channels are ranked by their
activation on task data at every LayerNorm output, summed over the LayerNorms (Minitron,
Muralidharan et al. 2024). A pooler or a classification head's dense layer (hidden -> hidden
in the config) keeps its own best outputs, ranked by activation too.

Attention ties width to heads: transformers computes head_size = hidden_size /
num_attention_heads, so the new width is a multiple of the head size, the config states
width / head_size heads, and each layer's surplus heads are recorded in `pruned_heads` (a layer
keeping k heads holds them in positions 0..k-1). The result is a plain transformers model that
`from_pretrained`, optimum's exporter and ONNX Runtime's fusions take as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts import layout_for


@dataclass
class HeadLayer:
    """A Linear outside the encoder: what its input is and whether its output is a hidden-wide
    space of its own (a pooler, a classification head's dense layer)."""

    name: str
    reads: str  # "hidden" or the name of the HeadLayer whose output it reads
    own_space: bool


def plan_width(model, fraction: float, kept_heads: int | None = None) -> int:
    """The new hidden size: (1 - fraction) x width, rounded to a whole number of heads.

    kept_heads: the most heads a layer will keep (default: what the model has now)."""
    config = model.config
    layout = layout_for(model)
    if not layout.width:
        raise PocketsizeError(
            f"hidden-width pruning knows BERT-layout encoders only, not {config.model_type!r}; "
            "drop width= (heads=, ffn= and a narrower student still shrink the model)"
        )
    width, size = config.hidden_size, layout.head_size()
    if getattr(config, "embedding_size", width) != width:
        raise PocketsizeError(
            f"width pruning needs embeddings as wide as the hidden states; this model's "
            f"embedding_size is {config.embedding_size} and hidden_size {width} (drop width=)"
        )
    new = int(round((1 - fraction) * width / size)) * size
    if kept_heads is None:
        kept_heads = max(len(layout.current_heads(i)) for i in range(len(layout.layers())))
    if new < max(kept_heads, 1) * size:
        most = 1 - kept_heads * size / width
        fix = f"or at most width={most:.3f}" if most > 0 else "first"
        raise PocketsizeError(
            f"width={fraction} leaves {new} channels, room for {new // size} heads of size "
            f"{size}, but a layer keeps {kept_heads}; remove heads too (heads=) {fix}"
        )
    return new


def head_layers(model, example_batch: dict) -> list[HeadLayer]:
    """Trace one forward pass: which Linear layers outside the encoder read the hidden states,
    and which read another head layer's output."""
    import torch

    base = model.base_model
    inside = {id(m) for m in base.embeddings.modules()} | {id(m) for m in base.encoder.modules()}
    width = model.config.hidden_size
    seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, args, out, name=name: seen.append((name, args[0].detach(), out.detach()))
        )
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and id(module) not in inside
    ]
    with torch.no_grad():
        hidden = model.base_model(**example_batch).last_hidden_state
        seen.clear()
        model(**example_batch)
    for h in hooks:
        h.remove()
    layers: list[HeadLayer] = []
    last_own = None
    for name, x, out in seen:
        if x.shape[-1] != width:
            continue
        if _is_hidden(x, hidden):
            reads = "hidden"
        elif last_own is not None:
            reads = last_own
        else:
            raise PocketsizeError(
                f"width pruning cannot tell what {name} reads (neither the hidden states nor "
                "a head layer's output); drop width="
            )
        own = out.shape[-1] == width
        layers.append(HeadLayer(name, reads, own))
        if own:
            last_own = name
    return layers


def _is_hidden(x, hidden) -> bool:
    """x is the hidden states or their first token (what poolers and CLS heads read)."""
    import torch

    return (x.shape == hidden.shape and torch.equal(x, hidden)) or (
        x.shape == hidden[:, 0].shape and torch.equal(x, hidden[:, 0])
    )


def remove_channels(model, keep, head_plan: list[HeadLayer], head_keeps: dict) -> None:
    """Slice every hidden-wide weight to the channels in `keep` (sorted original indices);
    `head_keeps[name]` are the outputs kept by each head layer with a space of its own."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    keep = torch.as_tensor(sorted(keep), dtype=torch.long)
    base = model.base_model
    layout = layout_for(model)
    size = layout.head_size()
    emb = base.embeddings
    for table in (emb.word_embeddings, emb.position_embeddings,
                  getattr(emb, "token_type_embeddings", None)):  # fmt: skip
        if table is not None:
            # in place, so that a VocabClampedEmbedding keeps its class and clamp
            table.weight = torch.nn.Parameter(table.weight.detach()[:, keep].clone())
            table.embedding_dim = len(keep)
    emb.LayerNorm = _sliced_layer_norm(emb.LayerNorm, keep)
    heads_per_layer = []
    for layer in layout.layers():
        attn = layer.attention
        for part in ("query", "key", "value"):
            setattr(attn.self, part, prune_linear_layer(getattr(attn.self, part), keep, dim=1))
        attn.output.dense = prune_linear_layer(attn.output.dense, keep, dim=0)
        attn.output.LayerNorm = _sliced_layer_norm(attn.output.LayerNorm, keep)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=1)
        layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=0)
        layer.output.LayerNorm = _sliced_layer_norm(layer.output.LayerNorm, keep)
        heads_per_layer.append(attn.self.num_attention_heads)
    modules = dict(model.named_modules())
    for h in head_plan:
        linear = modules[h.name]
        read = keep if h.reads == "hidden" else head_keeps[h.reads]
        linear = prune_linear_layer(linear, torch.as_tensor(read), dim=1)
        if h.own_space:
            linear = prune_linear_layer(linear, torch.as_tensor(head_keeps[h.name]), dim=0)
        _set_module(model, h.name, linear)

    width = len(keep)
    n_heads = width // size
    model.config.hidden_size = width
    model.config.num_attention_heads = n_heads
    # each layer holds its k heads in positions 0..k-1; the config's other heads are "pruned"
    pruned = {i: list(range(k, n_heads)) for i, k in enumerate(heads_per_layer) if k < n_heads}
    model.config.pruned_heads = pruned
    for i, layer in enumerate(layout.layers()):
        layer.attention.pruned_heads = set(pruned.get(i, []))


def _sliced_layer_norm(norm, keep):
    import torch

    new = torch.nn.LayerNorm(len(keep), eps=norm.eps, elementwise_affine=True)
    with torch.no_grad():
        new.weight.copy_(norm.weight[keep])
        new.bias.copy_(norm.bias[keep])
    return new


def _set_module(model, name: str, module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)
