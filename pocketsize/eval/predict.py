"""`load_pipeline(DIR)`: any variant as a transformers pipeline, in two lines.

PyTorch directories load with transformers' Auto classes; ONNX directories (and .onnx / .ort
files) load with optimum's ORTModelFor... classes, which transformers.pipeline accepts.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.runtime.registry import runtime_of
from pocketsize.runtime.runners import load_tokenizer, resolve_variant
from pocketsize.tasks import resolve_task


def model_task(model, task=None):
    """The task `model` (a directory or an .onnx/.ort file) was built for, as load_pipeline
    takes it: `task` when given, else what the model records (tasks.resolve_task; a model
    that records none is refused with the list of tasks, never guessed)."""
    variant = resolve_variant("model", model)
    return resolve_task(task, model=variant.model_dir or variant.config)


def load_pipeline(
    model,
    task=None,
    threads: int | None = None,
    trust_remote_code: bool = False,
    trust_module_code: bool = False,
    **pipeline_kwargs,
):
    """A transformers pipeline over a PyTorch dir, an ONNX dir or an .onnx/.ort file;
    pipeline_kwargs go to transformers.pipeline (e.g. aggregation_strategy="simple" for
    token classification). trust_remote_code runs the code a directory's config or tokenizer
    config names (auto_map); trust_module_code imports a module directory's class from outside
    pocketsize; off, such a model is refused in one line."""
    from transformers import pipeline

    variant = resolve_variant("model", model)
    variant.trust_remote_code = trust_remote_code
    variant.trust_module_code = trust_module_code
    task = resolve_task(task, model=variant.model_dir or variant.config)
    if not task.pipeline_task:
        raise PocketsizeError(
            f"{task.name} models have no transformers pipeline; load them with "
            "pocketsize.formats.module_dir.load_module_dir (PyTorch) or onnxruntime (ONNX)"
        )
    tokenizer = load_tokenizer(variant)
    from pocketsize.formats.checkpoint import check_tokenizer_fits

    check_tokenizer_fits(variant.config, tokenizer, variant.model_dir or "the model")
    # a text longer than the model reads is cut to its limit, not an error inside the model
    from pocketsize.formats.model_dir import max_length_of

    tokenizer.model_max_length = max_length_of(variant.config, tokenizer)
    pipeline_kwargs = {**task.pipeline_arguments, **pipeline_kwargs}
    model = runtime_of(variant).pipeline_model(variant, task, threads)
    return pipeline(
        task.pipeline_task,
        model=model,
        tokenizer=tokenizer,
        trust_remote_code=trust_remote_code,
        **pipeline_kwargs,
    )
