"""What a variant costs to ship: its files on disk and its parameter count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketsize.formats.onnx_dir import BOOKKEEPING_SUFFIXES
from pocketsize.formats.side_files import TOKENIZER_FILES, VOCAB_FILES
from pocketsize.runtime.registry import runtime_of
from pocketsize.runtime.runners import Variant

CONFIG_FILES = ("config.json", "generation_config.json")
# initializer types that hold weights; int64/int32 initializers are shapes and indices
WEIGHT_TYPES = {1, 2, 3, 10, 16, 21, 22}  # float, uint8, int8, float16, bfloat16, uint4, int4
UINT8 = 2
# ONNX Runtime's block-quantized ops: the input that holds the weight (scales, zero points after)
BLOCK_QUANTIZED = {"MatMulNBits": 1, "GatherBlockQuantized": 0}


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
    """Weight elements, counted as the model's values: a 4-bit table or MatMulNBits weight
    holds two values per byte. Quantization scales and zero points, and the residuals of a
    weight kept on its source grid, are bookkeeping, not parameters."""
    graph = _load_graph(path).graph
    readers = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            readers.setdefault(name, (node, index))
    total = 0
    for init in graph.initializer:
        if init.data_type not in WEIGHT_TYPES or not init.dims:
            continue  # scalars are folded constants, not weights
        if init.name.endswith(BOOKKEEPING_SUFFIXES):
            continue
        total += _values(init, *readers.get(init.name, (None, 0)))
    return total


def _values(init, node, index: int) -> int:
    """How many of the model's values initializer `init` holds, read as input `index` of
    `node`: block-quantized ops read their weight at 0 or 1 and bookkeeping after it."""
    elements = int(np.prod(init.dims))
    if node is None or node.op_type not in BLOCK_QUANTIZED:
        return elements
    if index != BLOCK_QUANTIZED[node.op_type]:
        return 0
    attrs = {a.name: a.i for a in node.attribute}
    if node.op_type == "MatMulNBits":
        return attrs["K"] * attrs["N"]
    return elements * (8 // attrs.get("bits", 4)) if init.data_type == UINT8 else elements


def onnx_external_files(path: Path) -> list[str]:
    """Files an ONNX model keeps its weights in (the dynamo exporter writes model.onnx.data)."""
    import onnx

    graph = _load_graph(path).graph
    names = []
    for init in graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            names += [e.value for e in init.external_data if e.key == "location"]
    return list(dict.fromkeys(names))
