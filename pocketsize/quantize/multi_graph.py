"""Quantization of a multi-graph export (T5: an encoder and two decoders), graph by graph."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pocketsize.errors import PocketsizeError


def quantize_graphs(onnx_dir, out, *, overwrite: bool = False, **settings) -> Path:
    """Dynamic int8 of every graph of a generative export (T5: encoder and both decoders).

    Each graph goes through quantize(method="dynamic"); the merged decoder, an alternative to
    the decoder pair, is left out.
    """
    from pocketsize.formats.onnx_dir import QUANTIZED_FILE, source_graphs
    from pocketsize.formats.records import inherited, read_record, stage_output, update_record
    from pocketsize.formats.side_files import copy_model_side_files
    from pocketsize.fsutil import check_output_dir
    from pocketsize.quantize.api import quantize

    onnx_dir = Path(onnx_dir)
    check_output_dir(out, overwrite)
    graphs = source_graphs(onnx_dir)
    if not graphs:
        raise PocketsizeError(f"{onnx_dir} holds no .onnx graphs; export the model first")
    source_record = read_record(onnx_dir)
    with stage_output(out, "quantize", overwrite) as tmp, tempfile.TemporaryDirectory() as work:
        for graph in graphs:
            done = quantize(graph, method="dynamic", out=Path(work) / graph.stem, **settings)
            shutil.move(done / QUANTIZED_FILE, tmp / f"{graph.stem}_quantized.onnx")
        copy_model_side_files(onnx_dir, tmp)
        files = sorted(p.name for p in tmp.glob("*.onnx"))
        first = "model_quantized.onnx"
        if first not in files:
            first = "encoder_model_quantized.onnx"
        made = {"file": first, "files": files, "quantization": {"method": "dynamic", **settings}}
        update_record(tmp, **{**inherited(source_record), **made})
    return Path(out)
