"""The task adapter interface and its registry.

A task answers the questions every stage asks: which transformers / optimum classes hold the
model, how to turn a dataset split into model features, how to turn model outputs into
predictions, how to score them. Adding a task = one module that registers one Task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pocketsize.errors import PocketsizeError

_REGISTRY: dict[str, Callable[[], Task]] = {}
_ALIASES = {
    "classification": "text-classification",
    "sequence-classification": "text-classification",
    "qa": "extractive-qa",
    "question-answering": "extractive-qa",
    "text-generation": "causal-lm",
    "causal": "causal-lm",
    "text2text-generation": "seq2seq",
    "text2text": "seq2seq",
}


class Task:
    """Base class. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    # names of the model outputs that carry the task's predictions, in ONNX output order
    output_names: tuple[str, ...] = ()
    # the task's headline metric, a key of score()'s result; higher is better
    primary_metric: str = ""
    # the transformers.pipeline task name
    pipeline_task: str = ""

    def auto_model_class(self):
        raise NotImplementedError

    def ort_model_class(self):
        raise NotImplementedError

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        """Tokenize a datasets.Dataset into unpadded model features (a datasets.Dataset)."""
        raise NotImplementedError

    def collator(self, tokenizer):
        """A callable that pads a list of features into a batch of tensors."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def predict(self, outputs: dict[str, Any], features, examples) -> list:
        """Turn stacked model outputs (numpy arrays by output name) into one prediction per example."""
        raise NotImplementedError

    def score(self, predictions: list, examples) -> dict[str, Any]:
        """Metrics of predictions against the examples' references; includes primary_metric."""
        raise NotImplementedError

    def example_scores(self, predictions: list, examples):
        """Per-example values (numpy float array) whose mean is score()[primary_metric].

        The evaluation harness bootstraps over these, so the primary metric must be a mean of
        per-example scores (accuracy, SQuAD F1 are).
        """
        raise NotImplementedError

    def agreement(self, predictions: list, reference_predictions: list):
        """Per-example agreement (numpy float array in [0, 1]) of two models' predictions."""
        raise NotImplementedError

    def show_example(self, example: dict) -> dict[str, Any]:
        """The input fields of one example worth showing in a report (e.g. the text)."""
        return {k: v for k, v in example.items() if isinstance(v, str)}

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


def register_task(name: str, factory: Callable[[], Task]) -> None:
    _REGISTRY[name] = factory


def _load_builtin() -> None:
    # Imported here so that registering the built-in tasks costs nothing until a task is asked for.
    import pocketsize.tasks.causal_lm  # noqa: F401
    import pocketsize.tasks.classification  # noqa: F401
    import pocketsize.tasks.generic  # noqa: F401
    import pocketsize.tasks.seq2seq  # noqa: F401

    try:
        import pocketsize.tasks.qa  # noqa: F401
    except ImportError:
        pass


def task_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_task(name: str | Task) -> Task:
    if isinstance(name, Task):
        return name
    _load_builtin()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise PocketsizeError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]()


# A saved model's task, by the suffix of its config's architecture name (transformers naming).
ARCHITECTURE_SUFFIXES = (
    ("ForQuestionAnswering", "extractive-qa"),
    ("ForSequenceClassification", "text-classification"),
    ("LMHeadModel", "causal-lm"),
    ("ForCausalLM", "causal-lm"),
    ("ForConditionalGeneration", "seq2seq"),
)


def task_from_architectures(architectures) -> str | None:
    """The task name a config's `architectures` list was saved for, or None when unknown."""
    for arch in architectures or []:
        for suffix, name in ARCHITECTURE_SUFFIXES:
            if arch.endswith(suffix):
                return name
    return None


def task_for_dataset(dataset) -> Task:
    """Infer the task from a Dataset or DatasetDict's columns."""
    split = dataset[next(iter(dataset))] if hasattr(dataset, "keys") else dataset
    columns = set(split.column_names)
    if {"question", "context", "answers"} <= columns:
        return get_task("extractive-qa")
    if "text" in columns and "label" in columns:
        return get_task("text-classification")
    if "pixel_values" in columns and "label" in columns:
        return get_task("array-classification")
    raise PocketsizeError(
        f"cannot tell the task from the dataset columns {sorted(columns)}; expected "
        "text/label (classification), question/context/answers (extractive QA) or "
        "pixel_values/label (array classification)"
    )


# Architecture families by config model_type, for the tasks each can do in this toolkit.
ENCODER_ONLY = {
    "bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "deberta",
    "deberta-v2", "mpnet", "ernie", "xlnet", "camembert",
}  # fmt: skip
DECODER_ONLY = {"gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "opt", "bloom", "phi"}
ENCODER_DECODER = {"t5", "mt5", "bart", "mbart", "pegasus", "marian"}
TASK_FAMILIES = {
    "text-classification": ("encoder-only", "decoder-only"),
    "extractive-qa": ("encoder-only",),
    "causal-lm": ("decoder-only",),
    "seq2seq": ("encoder-decoder",),
}
FIX = {
    "extractive-qa": "use an encoder (BERT-like) model for extractive QA",
    "causal-lm": "use a decoder-only model (GPT-2 family) for causal-lm",
    "seq2seq": "use an encoder-decoder model (T5 family) for seq2seq",
    "text-classification": "use an encoder or a decoder-only model for classification, or "
    "task='seq2seq' with the label as target text",
}


def architecture_family(model_type: str | None) -> str | None:
    for family, types in (
        ("encoder-only", ENCODER_ONLY),
        ("decoder-only", DECODER_ONLY),
        ("encoder-decoder", ENCODER_DECODER),
    ):
        if model_type in types:
            return family
    return None


def check_architecture(model_type: str | None, task) -> None:
    """Refuse a (known) architecture for a task it cannot do here, e.g. extractive QA with GPT-2.

    Unknown model types pass: the Auto classes decide.
    """
    task = get_task(task)
    family = architecture_family(model_type)
    allowed = TASK_FAMILIES.get(task.name)
    if family is None or allowed is None or family in allowed:
        return
    raise PocketsizeError(
        f"a {model_type} model ({family}) cannot do {task.name} in pocketsize; {FIX[task.name]}"
    )
