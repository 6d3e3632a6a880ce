"""`load_pipeline(DIR)`: any variant as a transformers pipeline, in two lines.

PyTorch directories load with transformers' Auto classes; ONNX directories (and .onnx / .ort
files) load with optimum's ORTModelFor... classes, which transformers.pipeline accepts.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.eval.runners import default_threads, load_tokenizer, resolve_variant
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


def load_pipeline(model, task=None, threads: int | None = None, **pipeline_kwargs):
    """A transformers pipeline over a PyTorch dir, an ONNX dir or an .onnx/.ort file;
    pipeline_kwargs go to transformers.pipeline (e.g. aggregation_strategy="simple" for
    token classification)."""
    from transformers import pipeline

    variant = resolve_variant("model", model)
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
    if task.pipeline_task == "text-classification":
        pipeline_kwargs.setdefault("truncation", True)
    if variant.kind == "torch":
        from pocketsize.eval.runners import load_torch_model

        return pipeline(
            task.pipeline_task,
            model=load_torch_model(variant, task),
            tokenizer=tokenizer,
            **pipeline_kwargs,
        )
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    ort_class = task.ort_model_class()
    if variant.kind == "ort":
        # from_pretrained looks for .onnx files only (and would try to export the directory)
        from transformers import AutoConfig

        session = ort.InferenceSession(
            str(variant.path), options, providers=["CPUExecutionProvider"]
        )
        config = AutoConfig.from_pretrained(str(variant.model_dir))
        ort_model = ort_class(config=config, session=session, model_save_dir=variant.model_dir)
    else:
        from pocketsize.formats.onnx_dir import graph_files

        ort_model = ort_class.from_pretrained(
            str(variant.model_dir), session_options=options, **graph_files(variant.path)
        )
    return pipeline(task.pipeline_task, model=ort_model, tokenizer=tokenizer, **pipeline_kwargs)
