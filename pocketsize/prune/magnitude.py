"""Unstructured magnitude pruning: zero the smallest weights of the encoder's Linear layers.

Honest caveat, also printed in every summary: the zeros sit inside dense matrices, so no dense
kernel (PyTorch, ONNX Runtime) runs faster and the safetensors file keeps its size; only a
compressed archive shrinks. Use heads/ffn/vocab pruning for real speed and size.
Uses torch.nn.utils.prune (L1 magnitude), then makes the zeros permanent.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError

NO_SPEEDUP_NOTE = (
    "unstructured sparsity: zeros in dense matrices save no time on dense kernels and no file "
    "size (only a compressed archive shrinks)"
)


def prunable_linears(model) -> list:
    """(name, module) of every nn.Linear in the base model (embeddings and task head excluded)."""
    from torch import nn

    base = model.base_model
    prefix = getattr(model, "base_model_prefix", "")
    return [
        (f"{prefix}.{name}" if prefix else name, m)
        for name, m in base.named_modules()
        if isinstance(m, nn.Linear)
    ]


def magnitude_prune(model, sparsity: float, scope: str = "global") -> dict:
    """Zero `sparsity` of the encoder Linear weights (globally or per layer); report per module."""
    import torch.nn.utils.prune as tprune

    modules = prunable_linears(model)
    if not modules:
        raise PocketsizeError("magnitude pruning found no Linear layers in the model's base model")
    if scope == "global":
        tprune.global_unstructured(
            [(m, "weight") for _, m in modules],
            pruning_method=tprune.L1Unstructured,
            amount=sparsity,
        )
    elif scope == "layer":
        for _, m in modules:
            tprune.l1_unstructured(m, "weight", amount=sparsity)
    else:
        raise PocketsizeError(f"scope={scope!r} is unknown; use 'layer' or 'global'")
    report = {}
    zeros = total = 0
    for name, m in modules:
        tprune.remove(m, "weight")  # bake the mask into the weight tensor
        z, n = int((m.weight == 0).sum()), m.weight.numel()
        report[name] = round(z / n, 4)
        zeros, total = zeros + z, total + n
    return {
        "target": sparsity,
        "scope": scope,
        "achieved": round(zeros / total, 4),
        "per_module": report,
        "note": NO_SPEEDUP_NOTE,
    }
