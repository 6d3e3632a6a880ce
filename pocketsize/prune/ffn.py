"""Remove FFN (MLP) neurons: output rows of the layer's up (and gate) projections, input columns
of its down projection. Where those live is the layout's (prune/layouts/).

Design: every layer keeps the SAME number of neurons (each layer chooses its own best ones), so
one config size (`intermediate_size`, DistilBERT's `hidden_dim`) states the new size and the
result is a plain transformers model: `from_pretrained`, `pipeline`, optimum's ONNX exporter
and `ORTModelFor...` all work with no pocketsize code. Different sizes per layer would need a
config field plus a custom loader (or zero-padding that keeps the FLOPs), which breaks every
standard loader; the small gain from uneven sizes is not worth that.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError


def plan_ffn_removal(layout, scores: list, fraction: float) -> dict:
    """{layer: [neuron indices to remove]}: the lowest-scoring round(fraction * size) per layer."""
    import torch

    size = layout.ffn_size()
    n_remove = int(round(fraction * size))
    if n_remove >= size:
        raise PocketsizeError(
            f"ffn={fraction} would remove all {size} FFN neurons of every layer; "
            f"use at most {(size - 1) / size:.3f}"
        )
    return {
        i: sorted(torch.argsort(s)[:n_remove].tolist()) for i, s in enumerate(scores) if n_remove
    }


def remove_neurons(model, plan: dict) -> None:
    """Remove the planned neurons of `model` (any registered layout)."""
    from pocketsize.prune.layouts import layout_for

    layout_for(model).remove_neurons(plan)
