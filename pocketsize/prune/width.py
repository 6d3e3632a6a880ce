"""Remove hidden channels (the model's width): the residual stream and its task head.

The residual stream's channels are shared by every layer, so one set of channels is kept
everywhere. Where those channels live inside the model (embeddings, norms, the inputs and
outputs of every projection) is the layout's (`Layout.remove_width`, prune/layouts/); this
module ranks the channels, finds the task head's layers and slices them. Channels are ranked by
their activation on task data at every norm's output, summed over the norms (Minitron,
Muralidharan et al. 2024). A head layer that reads the hidden states loses the same input
columns; one with a hidden-wide space of its own (a pooler, a classification head's dense
layer) keeps its own best outputs, ranked by activation too, and a LayerNorm in the head keeps
the channels of what it reads (ModernBERT's head normalises its dense layer's outputs). Tied
output embeddings are tied again to the sliced input embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts import layout_for


@dataclass
class HeadLayer:
    """A Linear (or LayerNorm) outside the encoder: what its input is and whether its output is
    a hidden-wide space of its own (a pooler, a classification head's dense layer)."""

    name: str
    reads: str  # "hidden" or the name of the HeadLayer whose output it reads
    own_space: bool
    norm: bool = False  # a LayerNorm: it keeps the channels of what it reads


def plan_width(model, fraction: float, kept_heads: int | None = None) -> int:
    """The new hidden size, as the layout rounds it (BERT's: a whole number of heads).

    kept_heads: the most heads a layer will keep (default: what the model has now)."""
    from pocketsize.prune.layouts import width_architectures

    config = model.config
    layout = layout_for(model)
    if not layout.width:
        raise PocketsizeError(
            f"hidden-width pruning does not support {config.model_type!r} yet; it supports "
            f"{', '.join(width_architectures())} (drop width=: heads=, ffn= and a narrower "
            "student still shrink the model)"
        )
    width = config.hidden_size
    if getattr(config, "embedding_size", width) != width:
        raise PocketsizeError(
            f"width pruning needs embeddings as wide as the hidden states; this model's "
            f"embedding_size is {config.embedding_size} and hidden_size {width} (drop width=)"
        )
    return layout.plan_width(fraction, kept_heads)


def head_layers(model, example_batch: dict) -> list[HeadLayer]:
    """Trace one forward pass: which Linear layers (and LayerNorms) outside the layout's body
    read the hidden states, and which read another head layer's output."""
    import torch

    inside = {id(m) for m in layout_for(model).body_modules()}
    width = model.config.hidden_size
    seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, args, out, name=name: seen.append((name, args[0].detach(), out.detach()))
        )
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)) and id(module) not in inside
    ]
    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    states: list = []  # the body's last hidden states, from the same forward pass
    hooks.append(
        model.base_model.register_forward_hook(
            lambda mod, args, out: states.append(
                out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            )
        )
    )
    with torch.no_grad():
        model(**example_batch)
    for h in hooks:
        h.remove()
    hidden = states[0].detach()
    layers: list[HeadLayer] = []
    last_own = None
    for name, x, out in seen:
        if x.shape[-1] != width:
            continue
        if _is_hidden(x, hidden, example_batch.get("attention_mask")):
            reads = "hidden"
        elif last_own is not None:
            reads = last_own
        else:
            raise PocketsizeError(
                f"width pruning cannot tell what {name} reads (neither the hidden states nor "
                "a head layer's output); drop width="
            )
        if name in norms:
            layers.append(HeadLayer(name, reads, own_space=False, norm=True))
            continue
        own = out.shape[-1] == width
        layers.append(HeadLayer(name, reads, own))
        if own:
            last_own = name
    return layers


def _is_hidden(x, hidden, mask=None) -> bool:
    """x is the hidden states or a per-channel pooling of them (the first token, what poolers
    and CLS heads read; the mean over the attended tokens, ModernBERT's classifier_pooling
    'mean'): its channels are the hidden channels, in place. The mean is recomputed here, so
    it is compared to float tolerance."""
    import torch

    def same(a, b):
        return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-6)

    if (x.shape == hidden.shape and torch.equal(x, hidden)) or (
        x.shape == hidden[:, 0].shape and torch.equal(x, hidden[:, 0])
    ):
        return True
    if mask is None or x.shape != hidden[:, 0].shape:
        return False
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return same(x, (hidden * weights).sum(1) / weights.sum(1))


def remove_channels(model, keep, head_plan: list[HeadLayer], head_keeps: dict) -> None:
    """Slice every hidden-wide weight to the channels in `keep` (sorted original indices);
    `head_keeps[name]` are the outputs kept by each head layer with a space of its own."""
    import torch

    from pocketsize.prune.layouts.base import keep_inputs, keep_outputs, sliced_layer_norm

    keep = torch.as_tensor(sorted(keep), dtype=torch.long)
    layout_for(model).remove_width(keep)
    modules = dict(model.named_modules())
    for h in head_plan:
        linear = modules[h.name]
        read = keep if h.reads == "hidden" else head_keeps[h.reads]
        if h.norm:
            _set_module(model, h.name, sliced_layer_norm(linear, torch.as_tensor(read)))
            continue
        linear = keep_inputs(linear, torch.as_tensor(read))
        if h.own_space:
            linear = keep_outputs(linear, torch.as_tensor(head_keeps[h.name]))
        _set_module(model, h.name, linear)
    if getattr(model.config, "tie_word_embeddings", False) and model.get_output_embeddings():
        model.tie_weights()  # the sliced output projection is the sliced input table again


def _set_module(model, name: str, module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)
