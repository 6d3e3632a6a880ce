"""What a variant costs to ship: its files on disk and its parameter count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketsize.formats.side_files import TOKENIZER_FILES, VOCAB_FILES
from pocketsize.runtime.registry import runtime_of
from pocketsize.runtime.runners import Variant

CONFIG_FILES = ("config.json", "generation_config.json")
# initializer types that hold weights; int64/int32 initializers are shapes and indices
WEIGHT_TYPES = {1, 2, 3, 10, 16, 21, 22}  # float, uint8, int8, float16, bfloat16, uint4, int4


def shipped_files(variant: Variant) -> list[Path]:
    """The files a user would ship: the weights (or the model graphs), config, tokenizer."""
    if variant.path is None:
        return []
    directory = variant.model_dir or variant.path
    files = runtime_of(variant).weight_files(variant)
    tokenizer = TOKENIZER_FILES
    if (directory / "tokenizer.json").is_file():
        # a fast tokenizer (and transformers.js) reads tokenizer.json alone: vocab.txt and its
        # kind are second copies of the vocabulary, for the slow Python tokenizer
        tokenizer = tuple(f for f in TOKENIZER_FILES if f not in VOCAB_FILES)
    files += [directory / f for f in CONFIG_FILES + tokenizer if (directory / f).is_file()]
    return list(dict.fromkeys(f for f in files if f.is_file()))


def size_bytes(variant: Variant, files: list[Path] | None = None) -> tuple[int, str]:
    """(bytes, how it was measured); an in-memory model counts its tensors' bytes.

    `files`: shipped_files(variant) when the caller has them already (listing an ONNX
    variant's files parses its graph)."""
    if variant.path is None:
        model = variant.model
        tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
        return sum(t.numel() * t.element_size() for t in tensors.values()), "in-memory tensors"
    files = shipped_files(variant) if files is None else files
    return sum(f.stat().st_size for f in files), "files on disk"


def param_count(variant: Variant, model=None) -> int | None:
    """All parameters, embeddings included; for ONNX, the elements of the weight initializers."""
    return runtime_of(variant).param_count(variant, model)


def _load_graph(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False)


def onnx_param_count(path: Path) -> int:
    """Weight elements; quantization scales and zero points are bookkeeping, not parameters."""
    graph = _load_graph(path).graph
    total = 0
    for init in graph.initializer:
        if init.data_type not in WEIGHT_TYPES:
            continue
        if not init.dims or init.name.endswith(("_scale", "_zero_point")):
            continue  # scalars are folded constants, not weights
        total += int(np.prod(init.dims))
    return total


def onnx_external_files(path: Path) -> list[str]:
    """Files an ONNX model keeps its weights in (the dynamo exporter writes model.onnx.data)."""
    import onnx

    graph = _load_graph(path).graph
    names = []
    for init in graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            names += [e.value for e in init.external_data if e.key == "location"]
    return list(dict.fromkeys(names))
