"""Text classification, single sentence or sentence pair (columns text, [text_pair], label)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pocketsize.tasks.base import Task, register_task


def label_names(dataset) -> list[str]:
    """The label names of a Dataset whose `label` column is a ClassLabel."""
    feature = dataset.features["label"]
    return list(getattr(feature, "names", None) or sorted(set(dataset["label"])))


def fit_max_length(texts, tokenizer, model=None, percentile: float = 99.0, cap: int = 512) -> int:
    """A max length that fits the data: the 99th percentile of token counts, rounded up to 8.

    Cutting the 1% longest inputs costs little accuracy and keeps CPU batches short.
    """
    sample = list(texts[:20000])
    lengths = [len(ids) for ids in tokenizer(sample, truncation=False)["input_ids"]]
    fitted = int(np.ceil(np.percentile(lengths, percentile) / 8.0) * 8) if lengths else cap
    limit = cap
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions and positions > 0:  # XLNet has no position limit and reports -1
        limit = min(limit, int(positions))
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit and tok_limit < 1_000_000:
        limit = min(limit, int(tok_limit))
    return max(8, min(fitted, limit))


class TextClassification(Task):
    name = "text-classification"
    output_names = ("logits",)
    primary_metric = "accuracy"
    pipeline_task = "text-classification"
    # a text longer than the model reads is cut to its limit, not an error inside the model
    pipeline_arguments = {"truncation": True}  # (read only)
    architecture_suffixes = ("ForSequenceClassification",)
    optimum_task = "text-classification"
    data_columns = ("text", "label")
    student_kinds = ("truncate", "config", "bilstm")
    accepts_transfer_text = True

    def labels(self, dataset, strict: bool = True) -> list:
        """The ClassLabel names of the label column. A plain int column has none to name:
        strict refuses it (a model's id2label needs names), else its sorted values stand in."""
        from pocketsize.errors import PocketsizeError

        names = getattr(dataset.features.get("label"), "names", None)
        if not names and not strict:
            return label_names(dataset)
        if not names:
            raise PocketsizeError(
                "the dataset's label column is not a ClassLabel; cast it with "
                "dataset.class_encode_column('label') so the label names are known"
            )
        return list(names)

    def relabel(self, dataset, mapping):
        """Each label as the index of the model output of its name; the ClassLabel's names
        become the model's, so per-class figures follow its outputs."""
        from datasets import ClassLabel

        from pocketsize.data.progress import quiet_progress

        names = getattr(dataset.features["label"], "names", None)
        index = mapping.index
        features = dataset.features.copy()
        features["label"] = ClassLabel(names=mapping.model_labels)

        def to_model(row):
            # a ClassLabel holds ids of its names; a plain column holds the labels themselves
            label = row["label"]
            return {"label": index[names[label] if names else str(label)]}

        with quiet_progress():
            return dataset.map(to_model, features=features)

    def auto_model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def ort_model_class(self):
        from optimum.onnxruntime import ORTModelForSequenceClassification

        return ORTModelForSequenceClassification

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        has_pair = "text_pair" in dataset.column_names
        keep = {"label"}

        def tok(batch):
            args = (batch["text"], batch["text_pair"]) if has_pair else (batch["text"],)
            enc = tokenizer(*args, truncation=True, max_length=max_length)
            enc["labels"] = batch["label"]
            return enc

        drop = [c for c in dataset.column_names if c not in keep]
        return dataset.map(tok, batched=True, remove_columns=drop + ["label"], desc="tokenizing")

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        return requested or fit_max_length(dataset["text"], tokenizer, model)

    def predict(self, outputs: dict[str, Any], features, examples) -> list[int]:
        return np.asarray(outputs["logits"]).argmax(-1).tolist()

    def score(self, predictions: list, examples) -> dict[str, Any]:
        from sklearn.metrics import (
            accuracy_score,
            confusion_matrix,
            f1_score,
            precision_recall_fscore_support,
        )

        y_true = np.asarray(examples["label"])
        y_pred = np.asarray(predictions)
        labels = list(range(len(label_names(examples))))
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0
        )
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(
                f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
            ),
            "per_class": {
                name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                for name, p, r, f, s in zip(label_names(examples), precision, recall, f1, support)
            },
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        }

    def example_scores(self, predictions: list, examples):
        return (np.asarray(predictions) == np.asarray(examples["label"])).astype(float)

    def agreement(self, predictions: list, reference_predictions: list):
        return (np.asarray(predictions) == np.asarray(reference_predictions)).astype(float)


register_task(TextClassification.name, TextClassification)
