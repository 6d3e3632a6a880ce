"""The task adapter interface and its registry.

A task answers the questions every stage asks: which transformers / optimum classes hold the
model, how to turn a dataset split into model features, how to turn model outputs into
predictions, how to score them. Adding a task = one module that registers one Task.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

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
    "ner": "token-classification",
    "token": "token-classification",
    "embedding": "sentence-embedding",
    "sentence-embeddings": "sentence-embedding",
    "feature-extraction": "sentence-embedding",
}


# Real sentences of very different lengths, so that padding, truncation and several sequence
# lengths are exercised (a dynamic-axes bug shows up only when shapes change).
EXAMPLE_TEXTS = (
    "a good film",
    "the plot was dull and the cast was weak, but the music was lovely",
    "it is a very long story with a brilliant director, a clumsy script, a moving ending and "
    "a cast that is rather charming in every scene of the film; the music is quite superb too",
    "boring",
)
EXAMPLE_BATCHES = ([0], [1, 3], [0, 1, 2, 3])


class Task:
    """Base class. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    # names of the model outputs that carry the task's predictions, in ONNX output order
    output_names: tuple[str, ...] = ()
    # the task's headline metric, a key of score()'s result; higher is better
    primary_metric: str = ""
    # the transformers.pipeline task name, and the arguments its pipeline is built with
    pipeline_task: str = ""
    pipeline_arguments: dict = {}  # (read only)
    # how transformers names the heads of this task's models (config.architectures suffixes)
    architecture_suffixes: tuple[str, ...] = ()
    # optimum's exporter task name (None: optimum has none; the torch exporter is used)
    optimum_task: str | None = None
    # the model generates text: exported with past key values, checked by generating
    generates: bool = False
    # the outputs have a sequence axis (one value per token), not one value per example
    per_token_outputs: bool = False
    # distillation's hooks: the batch keys of each output's hard targets (the ce loss), and
    # whether the outputs are distributions over the positions (QA's start/end), so padded
    # positions are masked out of the losses
    loss_targets: tuple[str, ...] = ("labels",)
    outputs_over_positions: bool = False
    # what `pocketsize predict` gives the model besides the text (QA: a question about it)
    asks_question: bool = False
    # the model inputs the task's features provide, main input first
    input_names: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    # the data columns the task reads (checked before any model runs)
    data_columns: tuple[str, ...] = ()
    # whether task_for_dataset may pick this task from the columns alone (False: another
    # task reads the same columns and is the one meant unless this one is asked for)
    inferred_from_data: bool = True

    @property
    def reads_labels(self) -> bool:
        """Does the task's data carry labels (False: a text corpus, as a causal LM's)?"""
        return self.data_columns != ("text",)

    # inputs come from a tokenizer (False: arrays read from the data as they are)
    needs_tokenizer: bool = True
    # settings for model.generate() when the task's predictions are generated text (else None)
    generation_settings: dict | None = None

    # what the report's agreement figure counts
    agreement_meaning: str = (
        "the share of examples where the variant predicts what the reference does"
    )
    # how eval compares a variant's outputs with the reference's (pocketsize.eval.fidelity):

    # ---- training (pocketsize.distill) ----
    # the outputs the losses compare (None: output_names; a generator trains on its logits)
    training_outputs: tuple[str, ...] | None = None
    # inputs the model also reads while training (T5 builds its decoder inputs from the labels)
    teacher_forced_inputs: tuple[str, ...] = ()
    # the losses distill() uses when none are given, and the loss on the data's own labels
    default_losses: dict = {"kl": 0.5, "ce": 0.5}
    hard_loss: str = "ce"
    # the teacher-output cache stores one output row per feature, keyed by its token ids
    cacheable: bool = True
    # outputs that are distributions over a whole vocabulary at every position (a causal LM):
    # the teacher cache keeps their top k logits, and only when asked (cache=True)
    distribution_outputs: bool = False
    # the student builders (pocketsize.distill.students) that make sense for the task
    student_kinds: tuple[str, ...] = ("truncate", "config")
    # extra unlabelled text / augmented copies can be labelled by the teacher
    accepts_transfer_text: bool = False

    def auto_model_class(self):
        raise NotImplementedError

    def ort_model_class(self):
        raise NotImplementedError

    def load_model(self, ref, labels: list[str] | None = None, trust_module_code=False, **kw):
        """The model `ref` names (a module directory, a save_pretrained directory, a catalogue
        name or a hub id) with this task's head; a base encoder gets a fresh head (with
        `labels` for classification)."""
        from pocketsize.assets import load_pretrained
        from pocketsize.formats.module_dir import is_module_dir, load_module_dir

        if is_module_dir(ref):
            return load_module_dir(ref, trust_module_code)
        return load_pretrained(ref, self.auto_model_class(), labels=labels, **kw)

    def unscorable(self, examples) -> str | None:
        """Why this task's metric cannot score `examples` (None: it can). Training then runs
        without validation scores, with a note; eval refuses the split before any work."""
        return None

    def prepare_model(self, model, source=None):
        """The model as the task runs it, after a stage loaded it from the directory `source`
        or built it (a student made from the teacher): e.g. a sentence embedder's pooling, as
        the directory's files say. Default: as it is."""
        return model

    def write_model_files(self, model, directory) -> None:
        """Files the task's model needs beside its weights and config (written by the stages
        that save a model): e.g. a sentence embedder's pooling. Default: none."""

    def complete_graph(self, onnx_dir, source_dir) -> None:
        """Finish the graphs another tool exported into `onnx_dir` from the model in
        `source_dir` (a baseline), where that tool's runtime does part of the work in Python
        after the graph: e.g. a sentence embedder's pooling. Default: nothing to add."""

    def self_supervised_loss(self, outputs):
        """A loss of the model's outputs alone, whose gradients rank the model's parts where the
        data carry no labels (pruning's importance): cross-entropy against its own argmax."""
        import torch.nn.functional as F

        loss = 0.0
        for name in self.output_names:
            logits = outputs[name]
            flat = logits.reshape(-1, logits.shape[-1])
            loss = loss + F.cross_entropy(flat, flat.argmax(-1).detach())
        return loss

    def export_output_axes(self) -> dict[str, dict]:
        """The outputs an ONNX export of the task's model gives, with their dynamic axes (a
        per-token output has a sequence axis)."""
        axes = (
            {0: "batch_size", 1: "sequence_length"} if self.per_token_outputs else {0: "batch_size"}
        )
        return {name: dict(axes) for name in self.output_names}

    def labels(self, dataset, strict: bool = True) -> list[str] | None:
        """The label names of a split, for tasks whose models have one output per label (the
        head's id2label); None for the others."""
        return None

    def align_labels(self, dataset, model_labels, label_map=None, who: str = "the model"):
        """(dataset, mapping): the split with each label re-encoded as the index of the model
        output of the same name (pocketsize.tasks.labels.map_labels, which refuses labels the
        model does not predict), so that scoring pairs labels and outputs by name. Tasks whose
        data names no labels, and models that name none, give the split back and None."""
        from pocketsize.tasks.labels import map_labels

        names = self.labels(dataset, strict=False)
        if names is None or not model_labels:
            return dataset, None
        mapping = map_labels(names, model_labels, label_map, who)
        return (dataset if mapping.identity else self.relabel(dataset, mapping)), mapping

    def relabel(self, dataset, mapping):
        """The split with its labels as `mapping.index` gives them (tasks with labels)."""
        return dataset

    def order_outputs(self, outputs: dict, order) -> dict:
        """Outputs whose label axis (the last) is put in another order: column j becomes the
        output `order[j]`; e.g. a variant listing its labels in another order than the
        reference, matched to the reference's by name."""
        return {
            name: np.take(value, order, axis=-1) if name in self.output_names else value
            for name, value in outputs.items()
        }

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        """Tokenize a datasets.Dataset into unpadded model features (a datasets.Dataset)."""
        raise NotImplementedError

    def example_inputs(self, tokenizer, max_length: int = 128) -> list[dict]:
        """Tokenized example batches of sizes 1, 2 and 4 and different lengths (numpy int64),
        for tracing an export and checking its parity on several shapes."""
        out = []
        for idx in EXAMPLE_BATCHES:
            enc = tokenizer(
                [EXAMPLE_TEXTS[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="np",
            )
            out.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
        return out

    def collator(self, tokenizer):
        """A callable that pads a list of features into a batch of tensors."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def training_collator(self, tokenizer):
        """The collator of training batches (default: the prediction collator)."""
        return self.collator(tokenizer)

    def training_features(self, dataset, tokenizer, max_length: int | None = None):
        """Features to train on: encode() plus the targets the losses read."""
        return self.encode(dataset, tokenizer, max_length=max_length)

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        """The max length training (and validation) tokenizes to; None: the tokenizer's."""
        return requested

    def loss_view(self, student: dict, teacher: dict, batch: dict) -> tuple[dict, dict, dict]:
        """The outputs and batch as the losses compare them (a causal LM shifts by one)."""
        return student, teacher, batch

    def predict(self, outputs: dict[str, Any], features, examples) -> list:
        """Turn stacked model outputs (numpy arrays by output name) into one prediction per example."""
        raise NotImplementedError

    def score(self, predictions: list, examples) -> dict[str, Any]:
        """Metrics of predictions against the examples' references; includes primary_metric."""
        raise NotImplementedError

    def example_scores(self, predictions: list, examples):
        """Per-example values (numpy float array) whose mean is score()[primary_metric], for
        tasks whose metric is a mean of per-example scores (accuracy, SQuAD F1 are)."""
        raise NotImplementedError

    def metric_parts(self, predictions: list, examples):
        """Per-example numerators and denominators (numpy float arrays) whose sums' ratio is
        score()[primary_metric]; the harness bootstraps that ratio over resampled examples.
        Default: example_scores over ones, i.e. a mean. A metric such as micro F1, which is no
        mean of per-example scores, gives its per-example counts instead."""
        values = np.asarray(self.example_scores(predictions, examples), dtype=float)
        return values, np.ones_like(values)

    def agreement(self, predictions: list, reference_predictions: list):
        """Per-example agreement (numpy float array in [0, 1]) of two models' predictions;
        below 1, the example is listed as a disagreement."""
        raise NotImplementedError

    def agreement_parts(self, predictions: list, reference_predictions: list, examples=None):
        """Numerators and denominators of the headline agreement, as metric_parts (default:
        the mean of agreement())."""
        values = np.asarray(self.agreement(predictions, reference_predictions), dtype=float)
        return values, np.ones_like(values)

    def agreement_levels(self, predictions, reference_predictions, examples=None) -> dict:
        """Agreement at other levels than the headline one (e.g. per token), by name."""
        return {}

    def show_example(self, example: dict) -> dict[str, Any]:
        """The input fields of one example worth showing in a report (e.g. the text)."""
        return {k: v for k, v in example.items() if isinstance(v, str)}

    def show_prediction(self, prediction, label_names: list[str] | None = None, example=None):
        """One prediction as a report shows it (a label's name rather than its index; with
        the example, e.g. a sentence with its tagged entities)."""
        return label_names[prediction] if label_names is not None else prediction

    def show_gold(self, example: dict, label_names: list[str] | None = None):
        """The example's reference answer as a report shows it (None: the task shows none)."""
        if label_names is not None and "label" in example:
            return label_names[example["label"]]
        return None

    def f1_against(self, predictions: list, reference_predictions: list):
        """Per-example token F1 of one model's text predictions against another's (None for
        tasks whose predictions are no text)."""
        return None

    def compare_runs(self, reference: dict, variant: dict) -> dict:
        """How closely one model's run follows another's beyond the metric (eval's fidelity):
        here one distribution per example, compared by softmax KL and logit differences. A run
        holds the outputs, the predictions and each feature's input ids."""
        from pocketsize.tasks.fidelity import classification_fidelity

        return classification_fidelity(reference["outputs"]["logits"], variant["outputs"]["logits"])

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # Two adapters of one task are the same task, whatever their settings (e.g. QA's stride).
    def __eq__(self, other) -> bool:
        return isinstance(other, Task) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def register_task(name: str, factory: Callable[[], Task]) -> None:
    _REGISTRY[name] = factory


def _load_builtin() -> None:
    # Imported here so that registering the built-in tasks costs nothing until a task is asked for.
    import pocketsize.tasks.causal_lm  # noqa: F401
    import pocketsize.tasks.classification  # noqa: F401
    import pocketsize.tasks.generic  # noqa: F401
    import pocketsize.tasks.qa  # noqa: F401
    import pocketsize.tasks.sentence_embedding  # noqa: F401
    import pocketsize.tasks.seq2seq  # noqa: F401
    import pocketsize.tasks.token_classification  # noqa: F401


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


def load_model(ref, task="text-classification", **kw):
    """`ps.load_model`: the model `ref` names, with the head of `task` (see Task.load_model)."""
    return get_task(task).load_model(ref, **kw)


def task_from_architectures(architectures) -> str | None:
    """The task name a config's `architectures` list was saved for, or None when unknown."""
    _load_builtin()
    for arch in architectures or []:
        for name, factory in _REGISTRY.items():
            if any(arch.endswith(s) for s in getattr(factory, "architecture_suffixes", ())):
                return name
    return None


def task_of_model(source) -> Task | None:
    """The task a saved model is for: the one function every stage asks.

    `source`: a model directory (PyTorch or ONNX), an .onnx/.ort file, or a config dict. Read
    in order: the task in the directory's record (stage.json), a module directory's recorded
    task, the head named in config.json's `architectures`. None when nothing says.
    """
    import os
    from pathlib import Path

    from pocketsize.formats.model_dir import read_config
    from pocketsize.formats.module_dir import saved_task
    from pocketsize.formats.records import read_record

    if isinstance(source, dict):
        config, record = source, {}
    elif isinstance(source, (str, os.PathLike)):
        directory = Path(source) if Path(source).is_dir() else Path(source).parent
        config, record = read_config(directory), read_record(directory)
    else:
        return None
    name = record.get("task") or saved_task(config)
    name = name or task_from_architectures(config.get("architectures"))
    return get_task(name) if name else None


def resolve_task(task=None, *, model=None, data=None) -> Task:
    """The task of a stage's work, in one order every stage follows: the task given (a name or
    a Task); else what the model records (task_of_model: the task in its stage.json, a module
    directory's, the head in config.json's architectures); else the data's columns
    (task_for_dataset); else, for a directory of sentence-transformers' (modules.json), sentence
    embeddings: a base encoder with no head, which is a starting point for any encoder task
    when data says which. Where the model and the data both say, they must agree; where
    nothing says, the task is asked for (never a guess)."""
    if task is not None:
        return get_task(task)
    from_model = task_of_model(model) if model is not None else None
    from_data = task_for_dataset(data) if data is not None else None
    if from_model is not None and from_data is not None and from_model != from_data:
        raise PocketsizeError(
            f"the model is for {from_model.name} but the data is for {from_data.name}; "
            f"pass matching data, or task= (--task) to say which"
        )
    found = from_model or from_data or _sentence_embedder(model)
    if found is None:
        raise PocketsizeError(
            "cannot tell the task: the model records none and no data was given; pass task= "
            f"(--task) one of {', '.join(task_names())}"
        )
    return found


def _sentence_embedder(model) -> Task | None:
    import os

    from pocketsize.formats.sentence_dir import is_sentence_dir

    if isinstance(model, (str, os.PathLike)) and is_sentence_dir(model):
        return get_task("sentence-embedding")
    return None


def task_for_dataset(dataset) -> Task:
    """Infer the task from a Dataset or DatasetDict's columns: the task whose data columns are
    all present, the most specific first (QA's three before classification's text + label
    before a causal LM's text alone)."""
    split = dataset[next(iter(dataset))] if hasattr(dataset, "keys") else dataset
    columns = set(split.column_names)
    _load_builtin()
    candidates = sorted(
        (f for f in _REGISTRY.values() if f.data_columns and f.inferred_from_data),
        key=lambda f: -len(f.data_columns),
    )
    for f in candidates:
        if set(f.data_columns) <= columns:
            return get_task(f.name)
    raise PocketsizeError(
        f"cannot tell the task from the dataset columns {sorted(columns)}; expected "
        "text/label (classification), question/context/answers (extractive QA), "
        "tokens/ner_tags (token classification), text (causal LM) or pixel_values/label "
        "(array classification); or pass task="
    )


# Architecture families by config model_type, for the tasks each can do in this toolkit.
ENCODER_ONLY = {
    "bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "deberta",
    "deberta-v2", "mpnet", "ernie", "xlnet", "camembert", "modernbert",
}  # fmt: skip
DECODER_ONLY = {
    "gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "qwen3", "smollm3", "opt", "bloom",
    "phi",
}  # fmt: skip
ENCODER_DECODER = {"t5", "mt5", "bart", "mbart", "pegasus", "marian"}
TASK_FAMILIES = {
    "text-classification": ("encoder-only", "decoder-only"),
    "extractive-qa": ("encoder-only",),
    "token-classification": ("encoder-only",),
    "causal-lm": ("decoder-only",),
    "seq2seq": ("encoder-decoder",),
    "sentence-embedding": ("encoder-only",),
}
FIX = {
    "extractive-qa": "use an encoder (BERT-like) model for extractive QA",
    "token-classification": "use an encoder (BERT-like) model for token classification",
    "causal-lm": "use a decoder-only model (GPT-2 family) for causal-lm",
    "seq2seq": "use an encoder-decoder model (T5 family) for seq2seq",
    "sentence-embedding": "use an encoder (BERT-like) model for sentence embeddings",
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


def right_padding(tokenizer):
    """The tokenizer, padding on the right, for the tasks with an output per token: their
    teacher-output cache, loss masks and per-example slices of the predictions read row i's
    tokens at positions 0..n-1, and a decoder counts positions from the first column. Chat LLMs
    (SmolLM2, Llama) ship padding on the left, for batched generation, which would shift every
    row. (One output per example keeps the tokenizer's side: XLNet's classifier reads the last
    column.) A shallow copy, so the tokenizer saved beside a student keeps its own side."""
    if getattr(tokenizer, "padding_side", "right") == "right":
        return tokenizer
    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return right
