"""What a user gets from another tool alone, built the way that tool's documentation says, so
that a report can put pocketsize's result beside it (recipe: `eval: {baselines: [...]}`).

optimum-int8: optimum's exporter, ORTOptimizer at O2 and ORTQuantizer's dynamic int8 with the
AutoQuantizationConfig of this CPU. Nothing of pocketsize touches the model (a sentence
embedder's graph gets the pooling sentence-transformers would run after it: Task.complete_graph).
st-int8, model2vec: the sentence embedders' peers (quantize/embedding_baselines.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats import hf_load
from pocketsize.formats.records import stage_output, update_record
from pocketsize.fsutil import check_output_dir

log = logging.getLogger(__name__)


def optimum_int8(model_dir, out, *, task, overwrite: bool = False) -> Path:
    """Export `model_dir` with optimum, optimise at O2 and quantize with ORTQuantizer into `out`
    (an ONNX directory with the tokenizer and a stage.json saying how it was made)."""
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    out = check_output_dir(out, overwrite)
    ort_class = task.ort_model_class()
    if ort_class is None:
        raise PocketsizeError(f"optimum has no ORTModel class for {task.name}; drop the baseline")
    qconfig = _quantization_config()
    # the tokenizer first: a directory needing its own code is refused before the slow export
    tokenizer = hf_load.load_tokenizer(model_dir)
    with stage_output(out, "baseline", overwrite) as tmp:
        exported, optimized = tmp / "exported", tmp / "optimized"
        hf_load.load_model(ort_class, model_dir, export=True).save_pretrained(exported)
        # ORTOptimizer / ORTQuantizer read the exported config.json without trust_remote_code:
        # safe, since the load above refused a model that needs its own code
        ORTOptimizer.from_pretrained(exported).optimize(
            save_dir=optimized, optimization_config=AutoOptimizationConfig.O2()
        )
        try:
            ORTQuantizer.from_pretrained(optimized, file_name="model_optimized.onnx").quantize(
                save_dir=tmp, quantization_config=qconfig
            )
            how = "O2 + dynamic int8"
        except RuntimeError as e:
            # optimum 2.1's ORTQuantizer cannot pass onnxruntime's DefaultTensorType option, so
            # it fails on an O2-fused graph ("Unable to find data type for weight_name"): a user
            # of optimum alone then quantizes the plain export.
            log.info("optimum: O2 + quantize failed (%s); plain export", str(e).splitlines()[0])
            ORTQuantizer.from_pretrained(exported).quantize(
                save_dir=tmp, quantization_config=qconfig
            )
            how = "dynamic int8 of the plain export"
        shutil.rmtree(exported)
        shutil.rmtree(optimized)
        tokenizer.save_pretrained(tmp)
        task.complete_graph(tmp, model_dir)  # e.g. an embedder's pooling, run after the graph
        update_record(
            tmp,
            format="onnx",
            file=next(tmp.glob("*.onnx")).name,
            task=task.name,
            baseline="optimum-int8",
            how=f"optimum only: {how}, weights {getattr(qconfig, 'weights_dtype', '?')}",
            source=str(model_dir),
        )
    return out


def _quantization_config():
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    from pocketsize.quantize.dynamic import detect_target

    # the same CPU presets as pocketsize's own `target="auto"` (avx2 / avx512 / avx512_vnni /
    # arm64), so that the two int8 models are made for the same kernels
    return getattr(AutoQuantizationConfig, detect_target())(is_static=False)


def st_int8(model_dir, out, *, task, overwrite: bool = False) -> Path:
    from pocketsize.quantize.embedding_baselines import sentence_transformers_int8

    return sentence_transformers_int8(model_dir, out, task=task, overwrite=overwrite)


def model2vec(model_dir, out, *, task, overwrite: bool = False) -> Path:
    from pocketsize.quantize.embedding_baselines import model2vec_static

    return model2vec_static(model_dir, out, task=task, overwrite=overwrite)


BASELINES: dict[str, Callable] = {
    "optimum-int8": optimum_int8,
    "st-int8": st_int8,  # sentence embedders: sentence-transformers' own int8 ONNX
    "model2vec": model2vec,  # sentence embedders: model2vec's static distillation
}


def parse_baseline(entry: str) -> tuple[str | None, str | None]:
    """(tool, model) of a recipe's baseline entry: "optimum-int8" (the tool, on the teacher),
    "st-int8:minilm-l6" (the tool, on another model) or "minilm-l6" (another model as it
    ships: a catalogue name or a directory); None where the entry leaves it to the teacher or
    names no tool."""
    tool, colon, model = str(entry).partition(":")
    if colon:
        return tool, model
    return (entry, None) if entry in BASELINES else (None, entry)


def check_baselines(names) -> None:
    import os

    from pocketsize.assets.catalogue import is_catalogued

    for entry in names or []:
        tool, model = parse_baseline(entry)
        if tool is not None and tool not in BASELINES:
            raise PocketsizeError(
                f"unknown baseline tool {tool!r} in {entry!r}; known: {', '.join(BASELINES)}"
            )
        if model is not None and not (is_catalogued(model) or os.path.isdir(model)):
            raise PocketsizeError(
                f"baseline {entry!r}: {model!r} is neither a baseline tool ({', '.join(BASELINES)}) "
                "nor a catalogue model or model directory; write TOOL, TOOL:MODEL or MODEL"
            )
