"""The layout transformers.js loads a model from (in Node through onnxruntime-node, in the
browser through onnxruntime-web): config.json and tokenizer.json at the top, the graph in
`onnx/` under the name of its precision (`dtype`): model.onnx (fp32), model_fp16.onnx (fp16),
model_quantized.onnx (q8: int8 weights, dynamic or static), model_q4.onnx (q4: 4-bit weights).

pocketsize's own loaders keep reading the graph at the directory's top; the copy in `onnx/` is
a hard link where the file system allows it, so the directory does not hold the model twice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats.onnx_dir import model_file
from pocketsize.formats.records import update_record
from pocketsize.fsutil import write_json

FILE_OF_DTYPE = {
    "fp32": "model.onnx",
    "fp16": "model_fp16.onnx",
    "q8": "model_quantized.onnx",
    "q4": "model_q4.onnx",
}


def dtype_of(graph_path) -> str:
    """transformers.js's name for a graph's precision, read from its operators and weights."""
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if ops & {"MatMulNBits", "GatherBlockQuantized"}:
        return "q4"
    if ops & {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "QLinearMatMul"}:
        return "q8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def add_transformers_js_layout(model_dir, dtype: str | None = None) -> Path:
    """Put the directory's graph where transformers.js looks for its precision (`dtype`,
    default: read from the graph); returns the path in `onnx/`."""
    model_dir = Path(model_dir)
    source = model_file(model_dir, allow_ort=False)
    dtype = dtype or dtype_of(source)
    if dtype not in FILE_OF_DTYPE:
        raise PocketsizeError(
            f"transformers.js has no dtype {dtype!r} pocketsize writes; one of "
            f"{', '.join(FILE_OF_DTYPE)}"
        )
    if not (model_dir / "tokenizer.json").is_file():
        raise PocketsizeError(
            f"transformers.js reads tokenizer.json, which {model_dir} lacks; save a fast "
            "tokenizer beside the model (AutoTokenizer.from_pretrained(..., use_fast=True))"
        )
    if any(model_dir.glob("*.onnx_data")) or any(model_dir.glob("*.onnx.data")):
        raise PocketsizeError(
            f"{model_dir} keeps its weights in an external data file, which this layout does "
            "not carry yet; export a model under 2 GB (one .onnx file)"
        )
    _state_token_limit(model_dir)
    target = model_dir / "onnx" / FILE_OF_DTYPE[dtype]
    target.parent.mkdir(exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)
    update_record(model_dir, transformers_js={"dtype": dtype, "file": f"onnx/{target.name}"})
    return target


def _state_token_limit(model_dir: Path) -> None:
    """transformers.js truncates to tokenizer_config.json's model_max_length; where that is
    missing or beyond the model's positions, a long text would run past the position table."""
    from pocketsize.formats.model_dir import positions_of, read_config

    path = model_dir / "tokenizer_config.json"
    settings = json.loads(path.read_text()) if path.is_file() else {}
    stated = settings.get("model_max_length")
    limit = positions_of(read_config(model_dir))
    if limit and (not isinstance(stated, int) or stated > limit):
        settings["model_max_length"] = limit
        write_json(path, settings)
