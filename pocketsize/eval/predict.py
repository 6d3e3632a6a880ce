"""`load_pipeline(DIR)`: any variant as a transformers pipeline, in two lines.

PyTorch directories load with transformers' Auto classes; ONNX directories (and .onnx / .ort
files) load with optimum's ORTModelFor... classes, which transformers.pipeline accepts.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.runtime.registry import runtime_of
from pocketsize.runtime.runners import load_tokenizer, resolve_variant
from pocketsize.tasks import get_task, task_of_model


def task_from_config(config: dict, directory=None):
    """The task a saved model was built for (pocketsize.tasks.task_of_model); a model with no
    recorded task and no architecture is taken for a text classifier."""
    found = task_of_model(directory if directory is not None else config)
    architectures = config.get("architectures") or []
    if found is not None or not architectures:
        return found or get_task("text-classification")
    raise PocketsizeError(
        f"cannot tell the task of a {architectures[0]} model; pass task= one of "
        "text-classification, extractive-qa, token-classification, causal-lm, seq2seq"
    )


def model_task(model):
    """The task `model` (a directory or an .onnx/.ort file) was built for, as load_pipeline
    takes it."""
    variant = resolve_variant("model", model)
    return task_from_config(variant.config, variant.model_dir)


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
    task = (
        get_task(task) if task is not None else task_from_config(variant.config, variant.model_dir)
    )
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
