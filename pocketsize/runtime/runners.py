"""One interface over every kind of model a variant can be: PyTorch, ONNX, ORT mobile format
(which runtime runs which variant: registry.py).

A runner takes a padded batch of numpy arrays (input_ids, attention_mask, token_type_ids) and
returns the task's outputs as numpy arrays. `prepare` (conversion to the runtime's own types)
is split from `forward` so that latency timing covers the model and nothing else.

Nothing heavy is imported at module level: the peak-memory child process imports only the
runtime its variant needs (onnxruntime alone for ONNX variants).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.formats import hf_load
from pocketsize.formats.gguf_file import gguf_file_of
from pocketsize.formats.model_dir import load_model_dir, read_config
from pocketsize.formats.module_dir import is_module_dir
from pocketsize.formats.onnx_dir import graph_files, model_file
from pocketsize.formats.side_files import has_tokenizer
from pocketsize.runtime.devices import CPU_PROVIDER, provider_note

# the inputs a tokenizer gives us; an ONNX graph needing anything else cannot be fed
FEEDABLE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def default_threads() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Variant:
    """A model to evaluate, resolved to where it lives; loading happens in its runtime's runner (registry.py)."""

    name: str
    kind: str  # "torch" | "onnx" | "ort"
    path: Path | None  # torch: the save_pretrained dir; onnx/ort: the model file
    model_dir: Path | None  # where config.json and the tokenizer live
    config: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # an in-memory torch model, when given one
    tokenizer: Any = None
    trust_module_code: bool = False  # import a module directory's class from outside pocketsize
    trust_remote_code: bool = False  # run the code a directory's auto_map names (transformers)

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else "in-memory model"


def resolve_variant(name: str, spec: Any) -> Variant:
    """Turn what the user passed (a path, a model, (model, tokenizer)) into a Variant."""
    if isinstance(spec, Variant):
        return spec
    tokenizer = None
    if isinstance(spec, dict) and "model" in spec:
        spec, tokenizer = spec["model"], spec.get("tokenizer")
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        spec, tokenizer = spec
    if isinstance(spec, (str, os.PathLike)):
        variant = _resolve_path(name, Path(spec))
    elif hasattr(spec, "forward") and hasattr(spec, "parameters"):
        config = spec.config.to_dict() if hasattr(getattr(spec, "config", None), "to_dict") else {}
        variant = Variant(name, "torch", None, None, config, model=spec)
        origin = getattr(spec, "name_or_path", "") or config.get("_name_or_path", "")
        if tokenizer is None and origin and Path(origin).is_dir():
            variant.model_dir = Path(origin)
    else:
        raise PocketsizeError(
            f"variant {name!r}: cannot evaluate a {type(spec).__name__}; pass a model directory, "
            "an .onnx/.ort file, a transformers model or a (model, tokenizer) pair"
        )
    variant.tokenizer = tokenizer
    return variant


def _resolve_path(name: str, path: Path) -> Variant:
    if gguf_file_of(str(path)) is not None:  # its dequantized directory (formats/gguf_file.py)
        from pocketsize.assets import resolve_model

        path = Path(resolve_model(str(path)))
    if not path.exists():
        path = _catalogue_path(name, path)
    from pocketsize.runtime.registry import runtime_for

    if path.is_file():
        runtime = runtime_for(path)
        if runtime is None:
            raise PocketsizeError(
                f"variant {name!r}: {path} is not an .onnx or .ort file; pass the model directory"
            )
        return Variant(name, runtime.kind, path, path.parent, read_config(path.parent))
    runtime = runtime_for(path)  # a directory that is itself the model (save_pretrained)
    if runtime is not None:
        return Variant(name, runtime.kind, path, path, read_config(path))
    if not any(path.glob("*.onnx")) and not any(path.glob("*.ort")):
        raise PocketsizeError(
            f"{path} holds no model (no *.onnx, *.ort, model.safetensors or "
            "pytorch_model.bin); pass a save_pretrained or optimum ONNX directory"
        )
    found = model_file(path)
    return Variant(name, runtime_for(found).kind, found, path, read_config(path))


def _catalogue_path(name: str, ref: Path) -> Path:
    """A name that is no local path may be a catalogue model (e.g. minilm-l6)."""
    try:
        from pocketsize.assets import resolve_model

        resolved = Path(resolve_model(str(ref)))
    except (PocketsizeError, OSError):
        resolved = ref
    if not resolved.exists():
        raise PocketsizeError(
            f"variant {name!r}: {ref} does not exist; pass a model directory or an .onnx/.ort file"
        )
    return resolved


def load_tokenizer(variant: Variant):
    if variant.tokenizer is not None:
        return variant.tokenizer
    if variant.model_dir is None or not has_tokenizer(variant.model_dir):
        where = variant.model_dir or "the in-memory model"
        raise PocketsizeError(
            f"variant {variant.name!r}: no tokenizer found in {where}; save the tokenizer next to "
            "the model (tokenizer.save_pretrained(DIR)) or pass (model, tokenizer)"
        )
    variant.tokenizer = hf_load.load_tokenizer(variant.model_dir, variant.trust_remote_code)
    return variant.tokenizer


# ---- runners ----


class TorchRunner:
    """A PyTorch model in eval mode, run under inference_mode on `device` (default: wherever
    its weights are, so a model fresh from training on the GPU is scored there).

    forward() returns numpy arrays, so a timed call on CUDA ends with the copy of its outputs
    to the host, which waits for the GPU's work: the time is the model's, not a kernel launch's.
    """

    def __init__(
        self,
        model,
        output_names: tuple[str, ...],
        feedable=FEEDABLE_INPUTS,
        generate=None,
        device=None,
    ):
        import torch

        self.torch = torch
        if device is not None:
            model = model.to(device)
        first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        self.device = (
            torch.device(device) if device is not None else getattr(first, "device", "cpu")
        )
        self.runs_on = str(self.device)
        self.model = model.eval()
        self.output_names = output_names
        self.generate = generate  # generation settings: forward() generates (seq2seq)
        params = inspect.signature(model.forward).parameters
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
        self.input_names = [n for n in feedable if n in params or takes_kwargs]
        if feedable[0] not in self.input_names:
            raise PocketsizeError(
                f"the model's forward() takes {', '.join(params)} but the runner feeds "
                f"{', '.join(feedable)}; wrap it so that it takes {feedable[0]}"
            )

    def prepare(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        # token ids are int64; non-text inputs (e.g. pixel values) stay floating point
        return {
            k: self.torch.from_numpy(
                np.ascontiguousarray(
                    batch[k],
                    dtype=np.float32 if np.issubdtype(batch[k].dtype, np.floating) else np.int64,
                )
            ).to(self.device)
            for k in self.input_names
            if k in batch
        }

    def forward(self, prepared: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.generate is not None:
            return generated_output(self.model, prepared, self.generate, self.output_names)
        with self.torch.inference_mode():
            out = self.model(**prepared)
        if isinstance(out, self.torch.Tensor):
            out = (out,)
        result = {}
        for i, name in enumerate(self.output_names):
            value = out[name] if hasattr(out, "keys") and name in out.keys() else out[i]
            result[name] = host_array(value)
        return result

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.forward(self.prepare(batch))


class OnnxRunner:
    """An onnxruntime InferenceSession over an .onnx or .ort file, with fixed thread counts,
    on `providers` (CPU by default; see devices.py). With the CUDA provider, session.run copies
    the numpy inputs to the GPU and the outputs back, as a user's call does."""

    def __init__(
        self,
        path: Path,
        output_names: tuple[str, ...],
        threads: int,
        name: str = "",
        feedable=FEEDABLE_INPUTS,
        providers: tuple[str, ...] = (CPU_PROVIDER,),
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # ORT's default thread spinning stays on (as users deploy it); latency.py times the
        # variants in blocks so that a spinning pool never competes with another variant's call.
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self.runs_on = self.session.get_providers()[0]
        self.note = provider_note(tuple(providers), self.session.get_providers(), name)
        inputs = {i.name: i for i in self.session.get_inputs()}
        unfeedable = [n for n in inputs if n not in feedable]
        if unfeedable or feedable[0] not in inputs:
            raise PocketsizeError(
                f"variant {name!r}: {Path(path).name} has inputs {', '.join(inputs)} but the "
                f"runner can feed only {', '.join(feedable)} ({feedable[0]} required); "
                "re-export the model for this task"
            )
        self.primary_input = feedable[0]
        self.input_types = {n: _numpy_type(i.type) for n, i in inputs.items()}
        have = [o.name for o in self.session.get_outputs()]
        if all(n in have for n in output_names):
            self.fetch = list(output_names)
        elif len(have) == len(output_names):
            self.fetch = have  # unnamed exports: take the outputs in order
        else:
            raise PocketsizeError(
                f"variant {name!r}: {Path(path).name} has outputs {', '.join(have)} but the task "
                f"needs {', '.join(output_names)}; export it for this task"
            )
        self.output_names = output_names
        self.output_shapes = {
            o.name: o.shape for o in self.session.get_outputs() if o.name in self.fetch
        }

    def prepare(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name, dtype in self.input_types.items():
            if name in batch:
                feed[name] = np.ascontiguousarray(batch[name], dtype=dtype)
            elif name == "token_type_ids":
                feed[name] = np.zeros_like(batch[self.primary_input], dtype=dtype)
            else:  # attention_mask
                feed[name] = np.ones_like(batch[self.primary_input], dtype=dtype)
        return feed

    def forward(self, prepared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.fetch, prepared)
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(self.output_names, values)}

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.forward(self.prepare(batch))


def _numpy_type(onnx_type: str):
    if "float" in onnx_type:
        return np.float32
    return np.int32 if "int32" in onnx_type else np.int64


def _auto_class(task, variant: Variant):
    # a module directory needs no Auto class (and array tasks have none)
    return None if variant.path is None or is_module_dir(variant.path) else task.auto_model_class()


def load_torch_model(variant: Variant, task):
    if variant.model is None:
        model = load_model_dir(
            variant.path,
            _auto_class(task, variant),
            variant.trust_module_code,
            variant.trust_remote_code,
        )
        variant.model = task.prepare_model(model, variant.path)
    return variant.model


class OrtModelRunner:
    """An ONNX variant run through optimum's ORTModelFor... class of the task.

    Generative graphs (GPT-2 with past key values, T5's encoder + decoder) take inputs a
    tokenizer does not give; optimum's classes feed them (an empty past for a full forward).
    """

    def __init__(
        self, variant: Variant, task, threads: int, providers: tuple[str, ...] = (CPU_PROVIDER,)
    ):
        import onnxruntime as ort
        import torch

        self.torch = torch
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        files = graph_files(variant.path)
        self.model = hf_load.load_model(
            task.ort_model_class(),
            variant.model_dir,
            variant.trust_remote_code,
            session_options=options,
            providers=list(providers),
            **files,
        )
        used = self.model.providers if hasattr(self.model, "providers") else [providers[0]]
        self.runs_on = used[0]
        self.note = provider_note(tuple(providers), list(used), variant.name)
        self.output_names = task.output_names
        self.input_names = task.input_names
        self.generate = task.generation_settings

    def prepare(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        # on the CUDA provider optimum binds the inputs where they lie: put them on its device
        return {
            k: self.torch.from_numpy(np.ascontiguousarray(batch[k], dtype=np.int64)).to(
                self.model.device
            )
            for k in self.input_names
            if k in batch
        }

    def forward(self, prepared: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.generate is not None:
            return generated_output(self.model, prepared, self.generate, self.output_names)
        out = self.model(**prepared)
        return {n: host_array(out[n]) for n in self.output_names}

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.forward(self.prepare(batch))


def generated_output(model, prepared: dict, settings: dict, output_names) -> dict:
    """Greedy (or beam) generation; the new token ids as a float array (exact below 2**24)."""
    import torch

    with torch.inference_mode():
        ids = model.generate(**prepared, **settings)
    if not getattr(model.config, "is_encoder_decoder", False):
        ids = ids[:, prepared["input_ids"].shape[1] :]  # decoder-only: drop the prompt
    return {output_names[0]: ids.cpu().numpy().astype(np.float32)}


def host_array(value) -> np.ndarray:
    """An output as float32 numpy on the host (a torch tensor may be on the GPU)."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)
