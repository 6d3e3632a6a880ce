"""Remove FFN (intermediate) neurons: rows of `intermediate.dense`, columns of `output.dense`.

Design: every layer keeps the SAME number of neurons (each layer chooses its own best ones), so
`config.intermediate_size` states the new size and the result is a plain transformers model:
`from_pretrained`, `pipeline`, optimum's ONNX exporter and `ORTModelFor...` all work with no
pocketsize code. Different sizes per layer would need a config field plus a custom loader (or
zero-padding that keeps the FLOPs), which breaks every standard loader; the small gain from
uneven sizes is not worth that.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.arch import encoder_layers


def plan_ffn_removal(model, scores: list, fraction: float) -> dict:
    """{layer: [neuron indices to remove]}: the lowest-scoring round(fraction * size) per layer."""
    import torch

    size = model.config.intermediate_size
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
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    if not plan:
        return
    size = model.config.intermediate_size
    layers = encoder_layers(model)
    counts = {len(plan.get(i, [])) for i in range(len(layers))}
    if len(counts) != 1:
        raise PocketsizeError("FFN pruning must remove the same number of neurons in every layer")
    for i, layer in enumerate(layers):
        gone = set(plan.get(i, []))
        keep = torch.tensor([j for j in range(size) if j not in gone], dtype=torch.long)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=1)
    model.config.intermediate_size = size - counts.pop()
