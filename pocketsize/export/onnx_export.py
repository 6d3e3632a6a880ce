"""ONNX export: the first registered exporter that knows the architecture (optimum's), else
torch.onnx.export (export/exporters.py).

Either way the graph has dynamic batch and sequence axes, is optimised for CPU where that is safe,
and is checked against PyTorch on several input shapes before the output directory appears.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketsize.errors import PocketsizeError
from pocketsize.export.config import ExportConfig
from pocketsize.export.exporters import (
    Source,
    max_length,
    outputs_as_tuple,
    torch_onnx_export,
    transformers_input_names,
    write_graph,
)
from pocketsize.formats import hf_load
from pocketsize.formats.gguf_file import gguf_file_of
from pocketsize.formats.module_dir import is_module_dir, load_module_dir
from pocketsize.formats.onnx_dir import check_onnx_file
from pocketsize.formats.records import RECORD, carried, stage_output, update_record
from pocketsize.formats.side_files import copy_model_side_files, has_tokenizer
from pocketsize.fsutil import check_output_dir
from pocketsize.options import keywords_from
from pocketsize.tasks import get_task, resolve_task, task_of_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Graph:
    """How a plain torch module's graph is traced: a batch of its inputs (a dict name -> tensor
    or a tuple of tensors), the input and output names and the dynamic axes (defaults: made from
    the inputs and what the module returns)."""

    example_inputs: Any = None
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    dynamic_axes: dict | None = None


@dataclass(frozen=True)
class _Job:
    out: Path
    config: ExportConfig
    overwrite: bool
    trust_remote_code: bool


@keywords_from(ExportConfig)
def export(
    model,
    out: str | os.PathLike,
    *,
    config: ExportConfig | None = None,
    task: str | None = None,
    tokenizer=None,
    example_inputs=None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict | None = None,
    overwrite: bool = False,
    trust_module_code: bool = False,
    trust_remote_code: bool = False,
    **options,
) -> Path:
    """Export `model` to an ONNX directory `out` and return its path.

    model: a transformers model directory, a catalogue name / hub id, an in-memory
      PreTrainedModel (pass `tokenizer`), or any torch.nn.Module (pass `example_inputs`, a dict
      name -> tensor or a tuple of tensors; input_names, output_names and dynamic_axes
      default to what the inputs and the module's outputs say).
    config / options: an ExportConfig, or its fields as keywords (exporter, optimize, mobile,
      transformers_js, opset, atol, rtol; pocketsize/export/config.py says what each does).
    trust_module_code: a module directory whose class lives outside pocketsize imports that
      class only with this set (importing runs the module's code).
    trust_remote_code: a directory whose config or tokenizer config names its own code
      (auto_map) runs that code only with this set; without, it is refused in one line.
    The output holds model.onnx, config.json, tokenizer files and stage.json (with the parity figures).
    """
    cfg = ExportConfig.build(config, **options)
    check_output_dir(out, overwrite)
    job = _Job(Path(out), cfg, overwrite, trust_remote_code)
    graph = Graph(example_inputs, input_names, output_names, dynamic_axes)
    if is_module_dir(model) or _is_plain_module(model):
        return _export_plain(model, job, graph, task, trust_module_code)
    with tempfile.TemporaryDirectory(prefix="pocketsize-export-src-") as staging:
        model_dir = _transformers_dir(model, tokenizer, Path(staging), trust_remote_code)
        return _export_transformers(model_dir, job, task)


def _is_plain_module(model) -> bool:
    import torch
    from transformers import PreTrainedModel

    return isinstance(model, torch.nn.Module) and not isinstance(model, PreTrainedModel)


def _transformers_dir(model, tokenizer, staging: Path, trust_remote_code: bool) -> Path:
    """The model as a directory: an in-memory model saved with its tokenizer, else resolved."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        return _resolve_model_dir(model, trust_remote_code)
    if tokenizer is None:
        raise PocketsizeError(
            "an in-memory transformers model needs its tokenizer for an ONNX directory; "
            "pass tokenizer=..."
        )
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    return staging


def _export_plain(model, job: _Job, graph: Graph, task, trust_module_code: bool) -> Path:
    """A non-transformers model: an nn.Module, or a module directory (the BiLSTM student, a
    registered user module) whose tokenizer makes the example inputs."""
    if job.config.transformers_js:
        raise PocketsizeError(
            "transformers.js loads transformers architectures only; export this module without "
            "transformers_js (--transformers-js) and run it with onnxruntime directly"
        )
    if not is_module_dir(model):
        return _export_module(model, job, graph)
    src = Path(model)
    module = load_module_dir(src, trust_module_code)
    if graph.example_inputs is None:
        inputs = _text_example_inputs(src, module, job.trust_remote_code)
        graph = dataclasses.replace(graph, example_inputs=inputs)
    task = task or _task_name(task_of_model(src))
    # the task's outputs, by name (a module returning a dict is exported by those names)
    outputs = list(get_task(task).output_names) if task else ["logits"]
    graph = dataclasses.replace(graph, output_names=graph.output_names or outputs)
    return _export_module(module, job, graph, side_files_from=src, task=task)


def _resolve_model_dir(model, trust_remote_code: bool = False) -> Path:
    path = Path(str(model))
    if not path.exists() or gguf_file_of(str(path)) is not None:
        from pocketsize.assets import resolve_model

        path = Path(resolve_model(str(model)))
    if not path.exists():
        raise PocketsizeError(
            f"model {model} not found; pass a model directory, a catalogue name or a local hub id"
        )
    if path.is_file():
        if path.suffix == ".onnx":
            check_onnx_file(path)
            raise PocketsizeError(
                f"{path} is already an ONNX model; quantize or optimize it instead"
            )
        raise PocketsizeError(f"{path} is a file; pass a model directory (config.json + weights)")
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    if any(path.glob("*.onnx")) and not has_weights:
        raise PocketsizeError(
            f"{path} is already an ONNX directory; quantize or optimize it instead"
        )
    if not (path / "config.json").is_file():
        raise PocketsizeError(
            f"{path} has no config.json; for a non-transformers model load it and pass the module "
            "with example_inputs=..."
        )
    if not has_tokenizer(path):
        raise PocketsizeError(
            f"{path} has no tokenizer files (tokenizer.json or tokenizer_config.json + vocab); "
            "save the tokenizer into the model directory (tokenizer.save_pretrained)"
        )
    from pocketsize.formats.checkpoint import check_own_code, check_weights

    check_own_code(path, trust_remote_code)
    check_weights(path)
    return path


def _task_name(task) -> str | None:
    return task.name if task is not None else None


def _export_transformers(model_dir: Path, job: _Job, task) -> Path:
    from pocketsize.formats.checkpoint import check_tokenizer_fits
    from pocketsize.formats.model_dir import load_model_dir

    config = hf_load.load_config(model_dir, job.trust_remote_code)
    task_obj = resolve_task(task, model=model_dir)
    if task_obj.generates:
        return _export_generative(model_dir, job, task_obj)
    tokenizer = hf_load.load_tokenizer(model_dir, job.trust_remote_code)
    torch_model = load_model_dir(
        model_dir, task_obj.auto_model_class(), trust_remote_code=job.trust_remote_code
    )
    torch_model = task_obj.prepare_model(torch_model, model_dir)
    check_tokenizer_fits(torch_model, tokenizer, model_dir)
    source = Source(
        model_dir, config.model_type, task_obj, torch_model, tokenizer, job.config.opset,
        job.trust_remote_code,
    )  # fmt: skip
    with stage_output(job.out, "export", job.overwrite) as tmp:
        used, notes = write_graph(source, tmp, job.config.exporter)
        onnx_path = tmp / "model.onnx"
        check_onnx_file(onnx_path)
        notes["optimization"] = _maybe_optimize(onnx_path, config.model_type, job.config.optimize)
        parity = _parity_transformers(source, onnx_path, job.config)
        update_record(
            tmp,
            format="onnx",
            file="model.onnx",
            task=task_obj.name,
            model_type=config.model_type,
            exporter=used,
            opset=_opset_of(onnx_path),
            parity_max_abs_diff=parity["max_abs_diff"],
            parity=parity,
            **notes,
            **carried(model_dir),
        )
        _add_layouts(tmp, job.config)
    return job.out


def _export_generative(model_dir: Path, job: _Job, task_obj) -> Path:
    """GPT-2 / T5: optimum with past key values, checked by generating."""
    from pocketsize.export.generative import export_generative

    cfg = job.config
    if cfg.mobile or cfg.exporter == "torch" or cfg.transformers_js:
        raise PocketsizeError(
            f"{task_obj.name} models export through optimum only (past key values), without "
            "the mobile format or the transformers.js layout (not written for generating "
            "models yet); use exporter='auto', mobile=False and transformers_js=False"
        )
    return export_generative(
        model_dir, job.out, task=task_obj, atol=cfg.atol, overwrite=job.overwrite,
        trust_remote_code=job.trust_remote_code,
    )  # fmt: skip


def _add_layouts(tmp: Path, cfg: ExportConfig) -> None:
    """The extra formats asked for, made from the checked model.onnx."""
    if cfg.mobile:
        from pocketsize.formats.ort_format import to_mobile

        to_mobile(tmp)
    if cfg.transformers_js:
        from pocketsize.formats.transformers_js import add_transformers_js_layout

        add_transformers_js_layout(tmp)


def _opset_of(onnx_path: Path) -> int:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _maybe_optimize(onnx_path: Path, model_type: str | None, enabled: bool) -> dict:
    if not enabled:
        return {"applied": False, "reason": "disabled (optimize=False)"}
    from pocketsize.export.optimize import optimize

    return optimize(onnx_path, model_type=model_type)


def _parity_transformers(source: Source, onnx_path: Path, cfg: ExportConfig) -> dict:
    from pocketsize.export.parity import check_parity, sample_inputs

    model, task = source.torch_model, source.task
    input_names = transformers_input_names(model, source.tokenizer)
    wrapper = outputs_as_tuple(model, list(task.output_names), input_names)
    inputs = sample_inputs(source.tokenizer, task, max_length(model))

    def call(**feed):
        return wrapper(*[feed[n] for n in input_names])

    return check_parity(call, onnx_path, inputs, task.output_names, cfg.atol, cfg.rtol)


def _export_module(module, job: _Job, graph: Graph, side_files_from=None, task=None) -> Path:
    """A plain nn.Module (the BiLSTM student, user modules): torch.onnx.export + parity."""
    from pocketsize.export.parity import check_parity

    module, graph, args = _traceable(module, graph)
    cfg = job.config
    with stage_output(job.out, "export", job.overwrite) as tmp:
        onnx_path = tmp / "model.onnx"
        torch_onnx_export(
            module, args, onnx_path, graph.input_names, graph.output_names, graph.dynamic_axes,
            cfg.opset,
        )  # fmt: skip
        check_onnx_file(onnx_path)

        def call(**feed):
            return module(*[feed[n] for n in graph.input_names])

        cases = _module_parity_inputs(args, graph.input_names, graph.dynamic_axes)
        parity = check_parity(call, onnx_path, cases, graph.output_names, cfg.atol, cfg.rtol)
        if side_files_from is not None:
            copy_model_side_files(side_files_from, tmp)  # config (labels) and tokenizer
        update_record(
            tmp,
            format="onnx",
            file="model.onnx",
            task=task,
            model_type=type(module).__name__,
            exporter="torch",
            opset=_opset_of(onnx_path),
            inputs=graph.input_names,
            outputs=graph.output_names,
            dynamic_axes=graph.dynamic_axes,
            parity_max_abs_diff=parity["max_abs_diff"],
            parity=parity,
            optimization={"applied": False, "reason": "not a transformers architecture"},
        )
        _add_layouts(tmp, dataclasses.replace(cfg, transformers_js=False))
    return job.out


def _traceable(module, graph: Graph):
    """(module, graph, positional args) with every name and axis filled in: a module returning
    a dict or a ModelOutput is wrapped to return its tensors as a tuple."""
    import torch

    if graph.example_inputs is None:
        raise PocketsizeError(
            "exporting a plain torch module needs example inputs; pass example_inputs={'input_ids': tensor, ...}"
        )
    args, input_names = _positional(graph.example_inputs, graph.input_names)
    module = module.eval()
    with torch.no_grad():
        sample_out = module(*args)
    output_names = graph.output_names
    if hasattr(sample_out, "keys"):
        # a dict / transformers ModelOutput: export its tensors (by output_names when given)
        output_names = output_names or [k for k, v in sample_out.items() if torch.is_tensor(v)]
        module = outputs_as_tuple(module, output_names)
        sample_out = tuple(sample_out[n] for n in output_names)
    n_out = len(sample_out) if isinstance(sample_out, (tuple, list)) else 1
    output_names = output_names or [f"output_{i}" for i in range(n_out)]
    axes = graph.dynamic_axes or _default_axes(args, input_names, output_names)
    return module, Graph(graph.example_inputs, input_names, output_names, axes), args


def _positional(example_inputs, input_names):
    if isinstance(example_inputs, dict):
        return tuple(example_inputs.values()), input_names or list(example_inputs)
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    return args, input_names or [f"input_{i}" for i in range(len(args))]


def _default_axes(args, input_names, output_names) -> dict:
    """Batch everywhere; a second (sequence) axis for integer id tensors."""
    axes = {
        n: (
            {0: "batch_size", 1: "sequence_length"}
            if not a.is_floating_point() and a.dim() >= 2
            else {0: "batch_size"}
        )
        for n, a in zip(input_names, args)
    }
    axes.update({n: {0: "batch_size"} for n in output_names})
    return axes


def _text_example_inputs(path: Path, module, trust_remote_code: bool = False) -> dict:
    """Token ids (+ mask) from the directory's tokenizer, for the inputs forward() names."""
    import inspect

    import torch

    from pocketsize.export.parity import sample_inputs

    if not has_tokenizer(path):
        raise PocketsizeError(
            f"{path} holds a non-transformers model without a tokenizer; pass example_inputs="
            "{'input_name': tensor, ...} with a batch of its inputs"
        )
    params = inspect.signature(module.forward).parameters
    tokenizer = hf_load.load_tokenizer(path, trust_remote_code)
    batch = sample_inputs(tokenizer, "text-classification")[1]
    return {k: torch.from_numpy(v) for k, v in batch.items() if k in params}


def _module_parity_inputs(args, input_names, dynamic_axes) -> list[dict]:
    """The example inputs, the same repeated to batch 3, and (for a dynamic sequence axis) cut
    to half length."""
    base = {n: a.detach().cpu().numpy() for n, a in zip(input_names, args)}
    cases = [
        base,
        {n: v.repeat(3, axis=0) if 0 in dynamic_axes.get(n, {}) else v for n, v in base.items()},
    ]
    if any(1 in dynamic_axes.get(n, {}) and v.shape[1] > 2 for n, v in base.items()):
        cases.append(
            {
                n: v[:, : max(1, v.shape[1] // 2)] if 1 in dynamic_axes.get(n, {}) else v
                for n, v in base.items()
            }
        )
    return cases


__all__ = ["export", "Graph", "RECORD"]
