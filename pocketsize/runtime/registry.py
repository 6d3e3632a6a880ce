"""The runtimes a variant can run on, one small class each: PyTorch, ONNX Runtime on an .onnx
graph (one graph, or optimum's ORTModel over a generative export's graphs), and ONNX Runtime's
mobile format (.ort). Each says which models are its own (`detect`), makes the runner that
scores and times them, lists the files a user ships and counts the parameters, and builds the
model a transformers pipeline runs. Stages ask `runtime_of(variant)` instead of comparing kinds.

A new runtime (e.g. another inference engine) is one class here, added with
`register_runtime`; its runner follows runners.py's prepare / forward interface.
"""

from __future__ import annotations

from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats.model_dir import TORCH_WEIGHT_PATTERNS, is_torch_dir
from pocketsize.runtime.devices import CPU, Placement
from pocketsize.runtime.runners import (
    OnnxRunner,
    OrtModelRunner,
    TorchRunner,
    Variant,
    default_threads,
    load_torch_model,
)


class Runtime:
    kind = ""

    def detect(self, path: Path) -> bool:
        """Whether `path` (a model file, or a directory) is a model of this runtime."""
        raise NotImplementedError

    def preload(self, task) -> None:
        """Import what running this runtime's models needs (the peak-memory child imports it
        before its baseline is taken, so the libraries are not counted as the model's)."""

    def runner(self, variant: Variant, task, threads: int, placement: Placement = CPU):
        raise NotImplementedError

    def weight_files(self, variant: Variant) -> list[Path]:
        """The files holding the model (config and tokenizer files are added by cost.py)."""
        raise NotImplementedError

    def param_count(self, variant: Variant, model=None) -> int | None:
        raise NotImplementedError

    def pipeline_model(self, variant: Variant, task, threads: int | None):
        """The model object a transformers pipeline of the task runs."""
        raise NotImplementedError


class TorchRuntime(Runtime):
    kind = "torch"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and is_torch_dir(path)

    def preload(self, task) -> None:
        import torch  # noqa: F401
        import transformers  # noqa: F401

    def runner(self, variant, task, threads, placement=CPU):
        return TorchRunner(
            load_torch_model(variant, task),
            task.output_names,
            task.input_names,
            task.generation_settings,
            device=placement.torch_device,
        )

    def weight_files(self, variant):
        directory = variant.model_dir or variant.path
        return [f for pattern in TORCH_WEIGHT_PATTERNS for f in sorted(directory.glob(pattern))]

    def param_count(self, variant, model=None):
        model = model or variant.model
        unique = {id(p): p for p in model.parameters()}
        return int(sum(p.numel() for p in unique.values()))

    def pipeline_model(self, variant, task, threads):
        return load_torch_model(variant, task)


class OnnxRuntime(Runtime):
    """An .onnx graph: one InferenceSession, or, for a task that generates (past key values,
    an encoder and decoders), optimum's ORTModel class of the task over the export's graphs."""

    kind = "onnx"

    def detect(self, path: Path) -> bool:
        return path.suffix == ".onnx"

    def preload(self, task) -> None:
        import onnxruntime  # noqa: F401

        if task.generates:
            import optimum.onnxruntime  # noqa: F401

    def runner(self, variant, task, threads, placement=CPU):
        if task.generates:
            return OrtModelRunner(variant, task, threads, placement.ort_providers)
        return _one_graph(variant, task, threads, placement)

    def graphs(self, variant) -> list[Path]:
        """The model file, plus the decoder graphs that go with an encoder-decoder's encoder."""
        from pocketsize.formats.onnx_dir import graph_files

        if not variant.path.name.startswith("encoder_model"):
            return [variant.path]
        names = graph_files(variant.path).values()
        return [variant.model_dir / n for n in names if (variant.model_dir / n).is_file()]

    def weight_files(self, variant):
        from pocketsize.runtime.cost import onnx_external_files

        files = []
        for graph in self.graphs(variant):
            files += [graph, *(graph.parent / f for f in onnx_external_files(graph))]
        return files

    def param_count(self, variant, model=None):
        from pocketsize.runtime.cost import onnx_param_count

        # encoder-decoder: the decoder with past shares the decoder's weights; count it once
        graphs = [g for g in self.graphs(variant) if "with_past" not in g.name]
        return sum(onnx_param_count(g) for g in graphs)

    def pipeline_model(self, variant, task, threads):
        from pocketsize.formats import hf_load
        from pocketsize.formats.onnx_dir import graph_files

        return hf_load.load_model(
            task.ort_model_class(),
            variant.model_dir,
            variant.trust_remote_code,
            session_options=_session_options(threads),
            **graph_files(variant.path),
        )


class OrtFormatRuntime(Runtime):
    """ONNX Runtime's mobile format: one .ort file, run by an InferenceSession."""

    kind = "ort"

    def detect(self, path: Path) -> bool:
        return path.suffix == ".ort"

    def preload(self, task) -> None:
        import onnxruntime  # noqa: F401

    def runner(self, variant, task, threads, placement=CPU):
        if task.generates:
            raise PocketsizeError(
                f"variant {variant.name!r}: {task.name} runs ONNX directories through optimum; "
                "pass the exported directory, not an .ort file"
            )
        return _one_graph(variant, task, threads, placement)

    def weight_files(self, variant):
        return [variant.path]

    def param_count(self, variant, model=None):
        from pocketsize.runtime.cost import onnx_param_count

        # the mobile format has no public reader; its .onnx twin has the same weights
        twin = variant.path.with_suffix(".onnx")
        return onnx_param_count(twin) if twin.is_file() else None

    def pipeline_model(self, variant, task, threads):
        import onnxruntime as ort

        from pocketsize.formats import hf_load

        # from_pretrained looks for .onnx files only (and would try to export the directory)
        session = ort.InferenceSession(
            str(variant.path), _session_options(threads), providers=["CPUExecutionProvider"]
        )
        config = hf_load.load_config(variant.model_dir, variant.trust_remote_code)
        return task.ort_model_class()(
            config=config, session=session, model_save_dir=variant.model_dir
        )


def _one_graph(variant, task, threads: int, placement: Placement) -> OnnxRunner:
    """One InferenceSession over the variant's file (.onnx or .ort)."""
    return OnnxRunner(
        variant.path,
        task.output_names,
        threads,
        variant.name,
        task.input_names,
        placement.ort_providers,
    )


def _session_options(threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    return options


RUNTIMES: dict[str, Runtime] = {}


def register_runtime(runtime: Runtime) -> Runtime:
    RUNTIMES[runtime.kind] = runtime
    return runtime


for _runtime in (TorchRuntime(), OnnxRuntime(), OrtFormatRuntime()):
    register_runtime(_runtime)


def runtime_of(variant: Variant) -> Runtime:
    return RUNTIMES[variant.kind]


def runtime_for(path: Path) -> Runtime | None:
    """The runtime whose model `path` (a file or a directory) is; None when none claims it."""
    return next((r for r in RUNTIMES.values() if r.detect(Path(path))), None)


def make_runner(variant: Variant, task, threads: int, placement: Placement = CPU):
    """Load the variant's model into its runtime's runner, where `placement` puts it."""
    return runtime_of(variant).runner(variant, task, threads, placement)
