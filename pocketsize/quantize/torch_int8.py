"""PyTorch-side compression for a model that stays in PyTorch: dynamic int8 Linear, fp16 / bf16."""

from __future__ import annotations

import warnings

from pocketsize.errors import PocketsizeError

TORCH_DTYPES = ("int8", "fp16", "bf16")


def quantize_torch(model, dtype: str = "int8"):
    """Return a compressed copy of a torch module.

    int8: dynamic int8 for every nn.Linear (weights int8, activations quantized on the fly) via
    torch.ao; runs on CPU and is not serialisable to safetensors, so it is meant for in-process
    use or export. fp16 / bf16: a cast of all floating-point weights (save_pretrained works).
    """
    import copy

    import torch

    if dtype not in TORCH_DTYPES:
        raise PocketsizeError(
            f"unknown PyTorch dtype {dtype!r}; use one of {', '.join(TORCH_DTYPES)}"
        )
    if not isinstance(model, torch.nn.Module):
        raise PocketsizeError(
            f"expected a torch.nn.Module, got {type(model).__name__}; load the model first"
        )
    model = copy.deepcopy(model).eval()
    if dtype == "fp16":
        return model.to(torch.float16)
    if dtype == "bf16":
        return model.to(torch.bfloat16)
    engines = torch.backends.quantized.supported_engines
    torch.backends.quantized.engine = (
        "qnnpack"
        if "fbgemm" not in engines and "qnnpack" in engines
        else torch.backends.quantized.engine
    )
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which measured slower on
        # this CPU (STACK.md); the API still works in torch 2.13.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
