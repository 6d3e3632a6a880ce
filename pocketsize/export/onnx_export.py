"""ONNX export: optimum's exporter for architectures it knows, torch.onnx.export for the rest.

Either way the graph has dynamic batch and sequence axes, is optimised for CPU where that is safe,
and is checked against PyTorch on several input shapes before the output directory appears.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats import hf_load
from pocketsize.formats.module_dir import is_module_dir, load_module_dir
from pocketsize.formats.onnx_dir import MANIFEST, check_onnx_file, write_manifest
from pocketsize.formats.side_files import copy_model_side_files, has_tokenizer
from pocketsize.fsutil import atomic_dir, check_output_dir
from pocketsize.tasks import get_task, task_names, task_of_model

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def export(
    model,
    out: str | os.PathLike,
    *,
    task: str | None = None,
    tokenizer=None,
    example_inputs=None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict | None = None,
    exporter: str = "auto",
    optimize: bool = True,
    mobile: bool = False,
    opset: int | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    overwrite: bool = False,
    trust_module_code: bool = False,
    trust_remote_code: bool = False,
    transformers_js: bool = False,
) -> Path:
    """Export `model` to an ONNX directory `out` and return its path.

    model: a transformers model directory, a catalogue name / hub id, an in-memory
      PreTrainedModel (pass `tokenizer`), or any torch.nn.Module (pass `example_inputs`, a dict
      name -> tensor or a tuple of tensors).
    exporter: "auto" (optimum where it knows the architecture, else torch), "optimum" or "torch".
    optimize: ONNX Runtime transformer fusions where the model type is known (skipped otherwise).
    mobile: also write the ONNX Runtime mobile format (model.ort), checked against the .onnx.
    transformers_js: also lay the model out as transformers.js loads it (onnx/model.onnx beside
      config.json and tokenizer.json; formats/transformers_js.py), for Node and the browser.
    trust_module_code: a module directory whose class lives outside pocketsize imports that
      class only with this set (importing runs the module's code).
    trust_remote_code: a directory whose config or tokenizer config names its own code
      (auto_map) runs that code only with this set; without, it is refused in one line.
    The output holds model.onnx, config.json, tokenizer files, parity.json and pocketsize.json.
    """
    import torch

    if exporter not in ("auto", "optimum", "torch"):
        raise PocketsizeError(f"unknown exporter {exporter!r}; use 'auto', 'optimum' or 'torch'")
    check_output_dir(out, overwrite)
    from transformers import PreTrainedModel

    if transformers_js and (
        is_module_dir(model)
        or (isinstance(model, torch.nn.Module) and not isinstance(model, PreTrainedModel))
    ):
        raise PocketsizeError(
            "transformers.js loads transformers architectures only; export this module without "
            "transformers_js (--transformers-js) and run it with onnxruntime directly"
        )
    if is_module_dir(model):
        # a non-transformers model directory (BiLSTM student, registered user module)
        src = Path(model)
        module = load_module_dir(src, trust_module_code)
        if example_inputs is None:
            example_inputs = _text_example_inputs(src, module, trust_remote_code)
        return _export_module(
            module,
            out,
            example_inputs,
            input_names,
            output_names or ["logits"],
            dynamic_axes,
            opset,
            atol,
            rtol,
            mobile,
            overwrite,
            side_files_from=src,
            task=task or _task_name(task_of_model(src)),
        )
    if isinstance(model, torch.nn.Module) and not isinstance(model, PreTrainedModel):
        return _export_module(
            model,
            out,
            example_inputs,
            input_names,
            output_names,
            dynamic_axes,
            opset,
            atol,
            rtol,
            mobile,
            overwrite,
        )
    with tempfile.TemporaryDirectory(prefix="pocketsize-export-src-") as staging:
        if isinstance(model, PreTrainedModel):
            if tokenizer is None:
                raise PocketsizeError(
                    "an in-memory transformers model needs its tokenizer for an ONNX directory; "
                    "pass tokenizer=..."
                )
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            model_dir = Path(staging)
        else:
            model_dir = _resolve_model_dir(model, trust_remote_code)
        return _export_transformers(
            model_dir, out, task, exporter, optimize, mobile, opset, atol, rtol, overwrite,
            transformers_js, trust_remote_code,
        )  # fmt: skip


def _resolve_model_dir(model, trust_remote_code: bool = False) -> Path:
    path = Path(str(model))
    if not path.exists():
        try:
            from pocketsize.assets import resolve_model

            path = Path(resolve_model(str(model)))
        except ImportError:
            pass
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


def optimum_supports(model_type: str, optimum_task: str | None) -> bool:
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the architectures)
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers"
        )
    except (KeyError, ValueError):
        return False
    return optimum_task in tasks


def _export_transformers(
    model_dir, out, task, exporter, optimize, mobile, opset, atol, rtol, overwrite, transformers_js,
    trust_remote_code=False,
):  # fmt: skip
    from pocketsize.formats.checkpoint import check_tokenizer_fits
    from pocketsize.formats.model_dir import load_model_dir
    from pocketsize.formats.vocab_clamp import add_vocab_clamp_to_onnx

    config = hf_load.load_config(model_dir, trust_remote_code)
    task_obj = get_task(task) if task is not None else task_of_model(model_dir)
    if task_obj is None:
        raise PocketsizeError(
            f"cannot tell the task of a {config.architectures} model; pass task= one of "
            f"{', '.join(task_names())}"
        )
    if task_obj.generates:
        # GPT-2 / T5: optimum with past key values, checked by generating
        from pocketsize.export.generative import export_generative

        if mobile or exporter == "torch" or transformers_js:
            raise PocketsizeError(
                f"{task_obj.name} models export through optimum only (past key values), without "
                "the mobile format or the transformers.js layout (not written for generating "
                "models yet); use exporter='auto', mobile=False and transformers_js=False"
            )
        return export_generative(
            model_dir, out, task=task_obj, atol=atol, overwrite=overwrite,
            trust_remote_code=trust_remote_code,
        )  # fmt: skip
    tokenizer = hf_load.load_tokenizer(model_dir, trust_remote_code)
    torch_model = load_model_dir(
        model_dir, task_obj.auto_model_class(), trust_remote_code=trust_remote_code
    )
    check_tokenizer_fits(torch_model, tokenizer, model_dir)
    notes = {}
    with atomic_dir(out, overwrite) as tmp:
        used = exporter
        if exporter in ("auto", "optimum"):
            if optimum_supports(config.model_type, task_obj.optimum_task):
                try:
                    _optimum_export(model_dir, tmp, task_obj.optimum_task, opset, trust_remote_code)
                    used = "optimum"
                except Exception as e:  # e.g. a pruned model with uneven layers
                    if exporter == "optimum":
                        raise PocketsizeError(
                            f"optimum's exporter failed ({type(e).__name__}: {e}); use exporter='torch'"
                        ) from None
                    notes["optimum_failed"] = f"{type(e).__name__}: {e}"
                    log.warning("optimum export failed (%s); falling back to torch.onnx.export", e)
                    used = "torch"
            elif exporter == "optimum":
                raise PocketsizeError(
                    f"optimum's exporter does not support {config.model_type} for {task_obj.name}; "
                    "use exporter='torch'"
                )
            else:
                used = "torch"
        if used == "torch":
            _torch_export_transformers(torch_model, tokenizer, tmp, task_obj, opset)
            copy_model_side_files(model_dir, tmp)
        onnx_path = tmp / "model.onnx"
        check_onnx_file(onnx_path)
        if used == "optimum":
            # optimum exports the plain checkpoint; a vocabulary-trimmed model needs its clamp.
            add_vocab_clamp_to_onnx(onnx_path)
        notes["optimization"] = _maybe_optimize(onnx_path, config.model_type, optimize)
        parity = _parity_transformers(torch_model, tokenizer, onnx_path, task_obj, atol, rtol, tmp)
        write_manifest(
            tmp,
            format="onnx",
            file="model.onnx",
            task=task_obj.name,
            model_type=config.model_type,
            exporter=used,
            opset=_opset_of(onnx_path),
            parity_max_abs_diff=parity["max_abs_diff"],
            **notes,
        )
        if mobile:
            from pocketsize.formats.ort_format import to_mobile

            to_mobile(tmp)
        if transformers_js:
            from pocketsize.formats.transformers_js import add_transformers_js_layout

            add_transformers_js_layout(tmp)
    return Path(out)


def _optimum_export(
    model_dir: Path, dest: Path, optimum_task: str, opset: int | None, trust_remote_code: bool
) -> None:
    # Validation is ours (parity.py, several shapes, after optimisation), not optimum's.
    hf_load.optimum_export(
        model_dir,
        dest,
        trust_remote_code,
        task=optimum_task,
        opset=opset,
        do_validation=False,
        local_files_only=True,
    )


def _transformers_input_names(model, tokenizer) -> list[str]:
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


def _torch_export_transformers(model, tokenizer, dest: Path, task_obj, opset: int) -> None:
    import torch

    from pocketsize.export.parity import sample_inputs

    input_names = _transformers_input_names(model, tokenizer)
    output_names = list(task_obj.output_names)
    dummy = sample_inputs(tokenizer, task_obj, _max_length(model))[1]  # batch 2, padded
    args = tuple(torch.from_numpy(dummy[n]) for n in input_names)
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in input_names}
    # per-token heads (QA spans) give one logit per token: their outputs have a sequence axis
    per_token = task_obj.per_token_outputs
    axes.update(
        {n: dict(axes[input_names[0]]) if per_token else {0: "batch_size"} for n in output_names}
    )
    _torch_onnx_export(
        outputs_as_tuple(model, output_names, input_names),
        args,
        dest / "model.onnx",
        input_names,
        output_names,
        axes,
        opset,
    )


def _torch_onnx_export(module, args, path, input_names, output_names, axes, opset) -> None:
    import torch

    opset = opset or DEFAULT_OPSET
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
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:
        raise PocketsizeError(
            f"torch.onnx.export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "check that the model runs on the example inputs"
        ) from None


def _opset_of(onnx_path: Path) -> int:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _max_length(model) -> int:
    positions = getattr(model.config, "max_position_embeddings", None)
    # XLNet has no position limit and reports -1
    return int(min(positions, 128)) if positions and positions > 0 else 128


def _maybe_optimize(onnx_path: Path, model_type: str | None, enabled: bool) -> dict:
    if not enabled:
        return {"applied": False, "reason": "disabled (optimize=False)"}
    from pocketsize.export.optimize import optimize

    return optimize(onnx_path, model_type=model_type)


def _parity_transformers(torch_model, tokenizer, onnx_path, task_obj, atol, rtol, dest) -> dict:
    from pocketsize.export.parity import check_parity, sample_inputs

    input_names = _transformers_input_names(torch_model, tokenizer)
    wrapper = outputs_as_tuple(torch_model, list(task_obj.output_names), input_names)
    inputs = sample_inputs(tokenizer, task_obj, _max_length(torch_model))

    def call(**feed):
        return wrapper(*[feed[n] for n in input_names])

    return check_parity(
        call, onnx_path, inputs, task_obj.output_names, atol, rtol, dest / "parity.json"
    )


def _export_module(
    module,
    out,
    example_inputs,
    input_names,
    output_names,
    dynamic_axes,
    opset,
    atol,
    rtol,
    mobile,
    overwrite,
    side_files_from=None,
    task=None,
):
    """A plain nn.Module (the BiLSTM student, user modules): torch.onnx.export + parity."""
    import torch

    from pocketsize.export.parity import check_parity

    if example_inputs is None:
        raise PocketsizeError(
            "exporting a plain torch module needs example inputs; pass example_inputs={'input_ids': tensor, ...}"
        )
    if isinstance(example_inputs, dict):
        input_names = input_names or list(example_inputs)
        args = tuple(example_inputs.values())
    else:
        args = (
            tuple(example_inputs)
            if isinstance(example_inputs, (tuple, list))
            else (example_inputs,)
        )
        input_names = input_names or [f"input_{i}" for i in range(len(args))]
    module = module.eval()
    with torch.no_grad():
        sample_out = module(*args)
    if hasattr(sample_out, "keys"):
        # a dict / transformers ModelOutput: export its tensors (by output_names when given)
        names = output_names or [k for k, v in sample_out.items() if torch.is_tensor(v)]
        module = outputs_as_tuple(module, names)
        sample_out = tuple(sample_out[n] for n in names)
    n_out = len(sample_out) if isinstance(sample_out, (tuple, list)) else 1
    output_names = output_names or [f"output_{i}" for i in range(n_out)]
    if dynamic_axes is None:
        # batch everywhere; a second (sequence) axis for integer id tensors
        dynamic_axes = {
            n: (
                {0: "batch_size", 1: "sequence_length"}
                if not a.is_floating_point() and a.dim() >= 2
                else {0: "batch_size"}
            )
            for n, a in zip(input_names, args)
        }
        dynamic_axes.update({n: {0: "batch_size"} for n in output_names})
    with atomic_dir(out, overwrite) as tmp:
        onnx_path = tmp / "model.onnx"
        _torch_onnx_export(module, args, onnx_path, input_names, output_names, dynamic_axes, opset)
        check_onnx_file(onnx_path)

        def call(**feed):
            return module(*[feed[n] for n in input_names])

        cases = _module_parity_inputs(args, input_names, dynamic_axes)
        parity = check_parity(call, onnx_path, cases, output_names, atol, rtol, tmp / "parity.json")
        if side_files_from is not None:
            copy_model_side_files(side_files_from, tmp)  # config (labels) and tokenizer
        write_manifest(
            tmp,
            format="onnx",
            file="model.onnx",
            task=task,
            model_type=type(module).__name__,
            exporter="torch",
            opset=_opset_of(onnx_path),
            inputs=input_names,
            outputs=output_names,
            dynamic_axes=dynamic_axes,
            parity_max_abs_diff=parity["max_abs_diff"],
            optimization={"applied": False, "reason": "not a transformers architecture"},
        )
        if mobile:
            from pocketsize.formats.ort_format import to_mobile

            to_mobile(tmp)
    return Path(out)


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


__all__ = ["export", "MANIFEST", "optimum_supports"]
