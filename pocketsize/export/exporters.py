"""The exporters a transformers model can go through, in the order "auto" tries them: optimum's
(it knows the architectures' ONNX configs) and torch.onnx's (any model that traces). Each is a
small registered class; what is optimum-specific lives in `OptimumExporter` and
formats/hf_load.py, so another exporter (a transformers-5 path) is one more class here.

An exporter writes `model.onnx` and the side files (config, tokenizer) into a directory; the
export stage then checks, optimises and parity-checks whatever was written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats import hf_load

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


@dataclass
class Source:
    """A transformers model directory and what its export needs."""

    model_dir: Path
    model_type: str
    task: object  # the pocketsize Task
    torch_model: object
    tokenizer: object
    opset: int | None
    trust_remote_code: bool = False


class Exporter:
    name = "exporter"

    def supports(self, source: Source) -> bool:
        raise NotImplementedError

    def write(self, source: Source, dest: Path) -> None:
        raise NotImplementedError


class OptimumExporter(Exporter):
    name = "optimum"

    def supports(self, source: Source) -> bool:
        import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the architectures)
        from optimum.exporters.tasks import TasksManager

        try:
            tasks = TasksManager.get_supported_tasks_for_model_type(
                source.model_type, exporter="onnx", library_name="transformers"
            )
        except (KeyError, ValueError):
            return False
        return source.task.optimum_task in tasks

    def write(self, source: Source, dest: Path) -> None:
        from pocketsize.formats.vocab_clamp import add_vocab_clamp_to_onnx

        # Validation is ours (parity.py, several shapes, after optimisation), not optimum's.
        hf_load.optimum_export(
            source.model_dir,
            dest,
            source.trust_remote_code,
            task=source.task.optimum_task,
            opset=source.opset,
            do_validation=False,
            local_files_only=True,
        )
        # optimum exports the plain checkpoint; a vocabulary-trimmed model needs its clamp.
        add_vocab_clamp_to_onnx(dest / "model.onnx")


class TorchExporter(Exporter):
    """torch.onnx.export of the model wrapped to return the task's outputs as a tuple."""

    name = "torch"

    def supports(self, source: Source) -> bool:
        return True  # anything that traces; a failure is reported as torch.onnx's own

    def write(self, source: Source, dest: Path) -> None:
        import torch

        from pocketsize.export.parity import sample_inputs
        from pocketsize.formats.side_files import copy_model_side_files

        model, task = source.torch_model, source.task
        input_names = transformers_input_names(model, source.tokenizer)
        output_axes = task.export_output_axes()  # per-token outputs have a sequence axis
        output_names = list(output_axes)
        dummy = sample_inputs(source.tokenizer, task, max_length(model))[1]  # batch 2, padded
        args = tuple(torch.from_numpy(dummy[n]) for n in input_names)
        axes = {n: {0: "batch_size", 1: "sequence_length"} for n in input_names}
        axes.update(output_axes)
        torch_onnx_export(
            outputs_as_tuple(model, output_names, input_names),
            args,
            dest / "model.onnx",
            input_names,
            output_names,
            axes,
            source.opset,
        )
        copy_model_side_files(source.model_dir, dest)


EXPORTERS: dict[str, Exporter] = {}


def register_exporter(exporter: Exporter) -> Exporter:
    """Add an exporter; "auto" tries them in the order registered (torch.onnx stays last)."""
    EXPORTERS.pop("torch", None)
    EXPORTERS[exporter.name] = exporter
    EXPORTERS.setdefault("torch", _TORCH)
    return exporter


_TORCH = TorchExporter()
EXPORTERS["torch"] = _TORCH
register_exporter(OptimumExporter())


def write_graph(source: Source, dest: Path, asked: str) -> tuple[str, dict]:
    """Write model.onnx with the exporter asked for, or with the first that supports the model
    and succeeds ("auto"). Returns the exporter used and notes on the ones that failed."""
    if asked != "auto":
        exporter = EXPORTERS[asked]
        if not exporter.supports(source):
            raise PocketsizeError(
                f"{asked}'s exporter does not support {source.model_type} for "
                f"{source.task.name}; use exporter='torch'"
            )
        _write_or_explain(exporter, source, dest, asked)
        return asked, {}
    notes = {}
    for exporter in EXPORTERS.values():
        if exporter is _TORCH or not exporter.supports(source):
            continue
        try:
            exporter.write(source, dest)
            return exporter.name, notes
        except Exception as e:  # e.g. optimum on a pruned model with uneven layers
            notes[f"{exporter.name}_failed"] = f"{type(e).__name__}: {e}"
            log.warning("%s's export failed (%s); trying the next exporter", exporter.name, e)
            _clear(dest)
    _TORCH.write(source, dest)
    return "torch", notes


def _write_or_explain(exporter: Exporter, source: Source, dest: Path, asked: str) -> None:
    if exporter is _TORCH:
        exporter.write(source, dest)  # raises its own one-line error
        return
    try:
        exporter.write(source, dest)
    except Exception as e:
        raise PocketsizeError(
            f"{asked}'s exporter failed ({type(e).__name__}: {e}); use exporter='torch'"
        ) from None


def _clear(dest: Path) -> None:
    """What a failed exporter left behind, so the next one starts from an empty directory (but
    for the stage's record, begun before any exporter ran)."""
    import shutil

    from pocketsize.formats.records import RECORD

    for path in dest.iterdir():
        if path.name != RECORD:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


# --------------------------------------------------------------------------- torch.onnx helpers


def transformers_input_names(model, tokenizer) -> list[str]:
    import inspect

    params = inspect.signature(model.forward).parameters
    return [n for n in tokenizer.model_input_names if n in params]


def outputs_as_tuple(module, output_names, input_names=None):
    """A torch module that torch.onnx.export can trace: positional tensors in, the named outputs
    of `module` as a tuple out. With `input_names`, `module` is called with those keywords
    (a transformers model, return_dict=True); without, positionally (a module returning a dict)."""
    import torch

    class OutputsAsTuple(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = module  # "model": the prefix of every exported node name

        def forward(self, *args):
            if input_names is None:
                out = self.model(*args)
            else:
                out = self.model(**dict(zip(input_names, args)), return_dict=True)
            return tuple(out[n] for n in output_names)

    return OutputsAsTuple().eval()


def torch_onnx_export(module, args, path, input_names, output_names, axes, opset) -> None:
    import torch

    try:
        with torch.inference_mode(False), torch.no_grad():
            # dynamo=False: the TorchScript exporter writes one self-contained file whose
            # subgraphs ONNX Runtime's fusions recognise (STACK.md).
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=opset or DEFAULT_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:
        raise PocketsizeError(
            f"torch.onnx.export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "check that the model runs on the example inputs"
        ) from None


def max_length(model) -> int:
    positions = getattr(model.config, "max_position_embeddings", None)
    # XLNet has no position limit and reports -1
    return int(min(positions, 128)) if positions and positions > 0 else 128
