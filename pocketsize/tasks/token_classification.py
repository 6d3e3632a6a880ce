"""Token classification (NER): a tag per word (columns tokens, ner_tags as a ClassLabel sequence).

Words are tokenized into pieces; the first piece of each word carries the word's tag and the
others are ignored by the loss (-100), as in the transformers run_ner example, and a word's
prediction is its first piece's argmax. Entity metrics follow the conlleval rules through
seqeval's default mode (an I- after O or after another type starts a new entity). Micro F1 is
a ratio of sums (2 TP / (2 TP + FP + FN)), not a mean of per-sentence scores, so the harness
bootstraps it from each sentence's counts (metric_parts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.tasks.base import Task, register_task, right_padding
from pocketsize.tasks.classification import fit_max_length
from pocketsize.tasks.fidelity import token_runs

IGNORED = -100  # label of the pieces after a word's first, and of special tokens


def align_labels(word_ids: list, tags: list[int]) -> list[int]:
    """Per piece: the word's tag on its first piece, IGNORED on the rest and on specials."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORED if word is None or word == previous else tags[word])
        previous = word
    return labels


def word_predictions(logits: np.ndarray, word_ids: list[int], n_words: int, outside: int):
    """Per word, the argmax of its first piece; words cut off by truncation get `outside`."""
    predicted = [outside] * n_words
    seen = set()
    for position, word in enumerate(word_ids):
        if word >= 0 and word not in seen:
            seen.add(word)
            predicted[word] = int(np.argmax(logits[position]))
    return predicted


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, first word, last word) of each entity, by seqeval's conlleval rules."""
    from seqeval.metrics.sequence_labeling import get_entities

    return set(get_entities(list(tags)))


def entity_counts(predicted: list[str], gold: list[str]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one sentence's entities."""
    p, g = entities(predicted), entities(gold)
    return len(p & g), len(p - g), len(g - p)


def tagged_sentence(tokens: list[str], tags: list[str]) -> str:
    """The sentence with its entities bracketed and typed: "[new york]geo-loc is big"."""
    words = list(tokens)
    for kind, first, last in sorted(entities(tags), key=lambda e: -e[1]):
        words[first : last + 1] = [f"[{' '.join(words[first : last + 1])}]{kind}"]
    return " ".join(words)


class TokenClassification(Task):
    name = "token-classification"
    output_names = ("logits",)
    primary_metric = "entity_f1"
    pipeline_task = "token-classification"
    architecture_suffixes = ("ForTokenClassification",)
    optimum_task = "token-classification"
    per_token_outputs = True
    data_columns = ("tokens", "ner_tags")
    default_losses = {"token_kl": 0.5, "token_ce": 0.5}
    hard_loss = "token_ce"
    agreement_meaning = (
        "entity F1 of the variant's entities against the reference's (per word and per whole "
        "sentence in the fidelity table)"
    )

    def labels(self, dataset, strict: bool = True) -> list[str]:
        feature = getattr(dataset.features.get("ner_tags"), "feature", None)
        names = getattr(feature, "names", None)
        if not names:
            raise PocketsizeError(
                "the dataset's ner_tags column is not a sequence of ClassLabel; load it with "
                "pocketsize.load_dataset so the tag names are known"
            )
        return list(names)

    def relabel(self, dataset, mapping):
        """Each word's tag as the index of the model output of its name."""
        from datasets import ClassLabel, Sequence

        from pocketsize.data.progress import quiet_progress

        table = [mapping.index[name] for name in self.labels(dataset)]
        features = dataset.features.copy()
        features["ner_tags"] = Sequence(ClassLabel(names=mapping.model_labels))
        with quiet_progress():
            return dataset.map(
                lambda row: {"ner_tags": [table[t] for t in row["ner_tags"]]}, features=features
            )

    def auto_model_class(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def ort_model_class(self):
        from optimum.onnxruntime import ORTModelForTokenClassification

        return ORTModelForTokenClassification

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        """Pieces of the pre-split words, each piece's word index (-1: special) and, when the
        data has tags, the aligned labels."""
        _check_tokenizer(tokenizer)
        has_tags = "ner_tags" in dataset.column_names

        def tok(batch):
            try:
                enc = tokenizer(
                    batch["tokens"],
                    is_split_into_words=True,
                    truncation=True,
                    max_length=max_length,
                )
            except ValueError as e:
                if "add_prefix_space" in str(e):
                    raise PocketsizeError(
                        "this tokenizer reads pre-split words only with a prefix space; load it "
                        "with AutoTokenizer.from_pretrained(..., add_prefix_space=True)"
                    ) from e
                raise
            word_ids = [enc.word_ids(i) for i in range(len(batch["tokens"]))]
            enc["word_ids"] = [[-1 if w is None else w for w in ids] for ids in word_ids]
            if has_tags:
                enc["labels"] = [align_labels(w, t) for w, t in zip(word_ids, batch["ner_tags"])]
            return enc

        return dataset.map(
            tok, batched=True, remove_columns=dataset.column_names, desc="tokenizing"
        )

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        pad = DataCollatorWithPadding(right_padding(tokenizer))
        inputs = set(self.input_names)
        return lambda rows: pad([{k: v for k, v in r.items() if k in inputs} for r in rows])

    def training_collator(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(
            right_padding(tokenizer), label_pad_token_id=IGNORED
        )

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        return requested or fit_max_length(
            [" ".join(t) for t in dataset["tokens"]], tokenizer, model
        )

    def predict(self, outputs: dict[str, Any], features, examples) -> list[list[int]]:
        logits = outputs["logits"]
        names = self.labels(examples, strict=False)
        outside = names.index("O") if "O" in names else 0
        return [
            word_predictions(logits[i], word_ids, len(tokens), outside)
            for i, (word_ids, tokens) in enumerate(zip(features["word_ids"], examples["tokens"]))
        ]

    def _tags(self, rows: list[list[int]], examples) -> list[list[str]]:
        names = self.labels(examples, strict=False)
        return [[names[t] for t in row] for row in rows]

    def score(self, predictions: list, examples) -> dict[str, Any]:
        from seqeval.metrics import accuracy_score, classification_report

        gold = self._tags(examples["ner_tags"], examples)
        predicted = self._tags(predictions, examples)
        report = classification_report(gold, predicted, output_dict=True, zero_division=0)
        micro = report.pop("micro avg")
        per_type = {
            kind: {
                "precision": float(r["precision"]),
                "recall": float(r["recall"]),
                "f1": float(r["f1-score"]),
                "support": int(r["support"]),
            }
            for kind, r in report.items()
            if not kind.endswith(" avg")
        }
        return {
            "entity_f1": float(micro["f1-score"]),
            "entity_precision": float(micro["precision"]),
            "entity_recall": float(micro["recall"]),
            "macro_entity_f1": float(report["macro avg"]["f1-score"]),
            "token_accuracy": float(accuracy_score(gold, predicted)),
            "entities": int(micro["support"]),
            "per_class": per_type,
        }

    def metric_parts(self, predictions: list, examples):
        """Per sentence 2 TP and 2 TP + FP + FN: their sums' ratio is the micro entity F1."""
        gold = self._tags(examples["ner_tags"], examples)
        predicted = self._tags(predictions, examples)
        return _f1_parts([entity_counts(p, g) for p, g in zip(predicted, gold)])

    def compare_runs(self, reference: dict, variant: dict) -> dict:
        return token_runs(reference, variant)

    def agreement(self, predictions: list, reference_predictions: list):
        """Per sentence, the share of words both models tag the same (1: the same tags)."""
        return np.asarray(
            [
                float(np.mean(np.asarray(p) == np.asarray(r))) if len(p) else 1.0
                for p, r in zip(predictions, reference_predictions)
            ]
        )

    def agreement_parts(self, predictions: list, reference_predictions: list, examples=None):
        """Entity agreement: the entity F1 of the predictions against the reference's."""
        names = self.labels(examples, strict=False)
        counts = [
            entity_counts([names[t] for t in p], [names[t] for t in r])
            for p, r in zip(predictions, reference_predictions)
        ]
        return _f1_parts(counts)

    def agreement_levels(self, predictions, reference_predictions, examples=None) -> dict:
        words = sum(len(p) for p in predictions)
        same = sum(
            int(np.sum(np.asarray(p) == np.asarray(r)))
            for p, r in zip(predictions, reference_predictions)
            if len(p)
        )
        numerators, denominators = self.agreement_parts(
            predictions, reference_predictions, examples
        )
        return {
            "entity": float(numerators.sum() / denominators.sum()) if denominators.sum() else 1.0,
            "token": same / words if words else 1.0,
            "sentence": float(
                np.mean([list(p) == list(r) for p, r in zip(predictions, reference_predictions)])
            ),
        }

    def show_example(self, example: dict) -> dict[str, Any]:
        return {"id": str(example.get("id", "")), "text": " ".join(example["tokens"])}

    def show_prediction(self, prediction, label_names=None, example=None):
        names = label_names or [str(i) for i in range(max(prediction, default=0) + 1)]
        tags = [names[t] for t in prediction]
        return tagged_sentence(example["tokens"], tags) if example is not None else tags

    def show_gold(self, example: dict, label_names=None):
        return self.show_prediction(example["ner_tags"], label_names, example)


def _f1_parts(counts: list[tuple[int, int, int]]):
    """2 TP and 2 TP + FP + FN per sentence, from (TP, FP, FN) counts."""
    tp, fp, fn = np.asarray(counts, dtype=float).reshape(-1, 3).T
    return 2 * tp, 2 * tp + fp + fn


def _check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise PocketsizeError(
            f"token classification maps pieces back to words, which needs a fast (Rust) "
            f"tokenizer, got {type(tokenizer).__name__}; load it with use_fast=True"
        )


register_task(TokenClassification.name, TokenClassification)
