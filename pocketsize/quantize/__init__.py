"""Quantization: ONNX Runtime dynamic / static int8, PyTorch int8 / fp16 / bf16, per-node
sensitivity, and an accuracy-budgeted search (method="auto") that always returns a quantized model."""

from pocketsize.quantize.api import QUANTIZED_FILE, layer_sensitivity, quantize
from pocketsize.quantize.dynamic import TARGETS, detect_target
from pocketsize.quantize.torch_int8 import quantize_torch

__all__ = [
    "QUANTIZED_FILE",
    "TARGETS",
    "detect_target",
    "layer_sensitivity",
    "quantize",
    "quantize_torch",
]


# `import pocketsize.quantize` would shadow the lazily exported function `ps.quantize`: make the
# package itself callable (shared helper, as the other stages do).
from pocketsize._callable import make_package_callable  # noqa: E402

make_package_callable(__name__, quantize)
