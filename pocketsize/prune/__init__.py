"""Structured pruning (attention heads, FFN neurons, vocabulary) and magnitude sparsity.

`prune(...)` writes a standard `save_pretrained` directory plus `stage.json`;
`load_pruned(dir)` loads it back (standard Auto class plus the vocabulary [UNK] clamp);
`add_vocab_clamp_to_onnx(path)` adds that clamp to an ONNX graph exported from the plain
checkpoint.
"""

from pocketsize._callable import make_package_callable
from pocketsize.prune.layouts import supported_architectures
from pocketsize.prune.pruner import load_pruned, prune
from pocketsize.prune.vocab import add_vocab_clamp_to_onnx, apply_vocab_clamp

SUPPORTED_ARCHITECTURES = supported_architectures()

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "add_vocab_clamp_to_onnx",
    "apply_vocab_clamp",
    "load_pruned",
    "prune",
]


make_package_callable(__name__, prune)
