"""Text-to-text generation (T5 family): a source text in, a target text out.

Data: columns `source` and `target`, or the SQuAD layout (question, context, answers), which
becomes T5's text-to-text QA ("question: ... context: ..." -> the first answer). Evaluation
generates greedily (the model's `generate`, PyTorch or optimum's ORTModelForSeq2SeqLM) and
scores the answers with SQuAD's exact match and token F1 (official normalisation); agreement
of two models is exact match of their normalised generations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.tasks.base import Task, register_task, right_padding
from pocketsize.tasks.qa import exact_match, f1_score, squad_scores

DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_MAX_LENGTH = 128  # tokens per source / target text when none is given


def source_target(dataset) -> tuple[list[str], list[str] | None]:
    """The source texts and (when present) the target texts of a split."""
    columns = dataset.column_names
    if "source" in columns:
        return list(dataset["source"]), list(dataset["target"]) if "target" in columns else None
    if {"question", "context"} <= set(columns):
        pairs = zip(dataset["question"], dataset["context"])
        sources = [f"question: {q} context: {c}" for q, c in pairs]
        targets = None
        if "answers" in columns:
            targets = [(a["text"] or [""])[0] for a in dataset["answers"]]
        return sources, targets
    raise PocketsizeError(
        f"seq2seq needs source/target columns or question/context/answers (the data has "
        f"{', '.join(columns)}); rename the columns with load_dataset(..., columns=)"
    )


def gold_texts(examples) -> list[list[str]]:
    """Every acceptable answer per example (SQuAD answers, or the one target)."""
    if "answers" in examples.column_names:
        return [list(a["text"]) or [""] for a in examples["answers"]]
    return [[t] for t in examples["target"]]


class Seq2Seq(Task):
    name = "seq2seq"
    output_names = ("generated_ids",)
    primary_metric = "f1"
    pipeline_task = "text2text-generation"
    architecture_suffixes = ("ForConditionalGeneration",)
    optimum_task = "text2text-generation-with-past"
    generates = True
    per_token_outputs = True
    training_outputs = ("logits",)
    teacher_forced_inputs = ("labels",)
    default_losses = {"token_kl": 0.5, "token_ce": 0.5}
    hard_loss = "token_ce"
    # the teacher reads the targets too (teacher forcing), which the cache's key (the input
    # ids) does not cover; and its outputs are full-vocabulary distributions per token
    cacheable = False
    student_kinds = ("truncate",)
    agreement_meaning = "the share of inputs where the variant generates the reference's text (after SQuAD normalisation)"
    input_names = ("input_ids", "attention_mask")
    data_columns = ()  # source/target or question/context/answers; checked in encode

    def __init__(self, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, num_beams: int = 1):
        self.generation_settings = {
            "max_new_tokens": max_new_tokens,
            "num_beams": num_beams,
            "do_sample": False,
        }
        self._tokenizer = None

    def auto_model_class(self):
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def ort_model_class(self):
        from optimum.onnxruntime import ORTModelForSeq2SeqLM

        return ORTModelForSeq2SeqLM

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        """Source ids (+ target ids as `labels`, for training); remembers the tokenizer, whose
        decode predict() needs (the harness encodes and predicts one variant at a time)."""
        self._tokenizer = tokenizer
        sources, targets = source_target(dataset)
        from datasets import Dataset

        enc = tokenizer(sources, truncation=True, max_length=max_length)
        columns = {k: enc[k] for k in ("input_ids", "attention_mask")}
        if targets is not None:
            columns["labels"] = tokenizer(
                text_target=targets, truncation=True, max_length=max_length
            )["input_ids"]
        return Dataset.from_dict(columns)

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        return requested or DEFAULT_MAX_LENGTH

    def collator(self, tokenizer):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(right_padding(tokenizer), label_pad_token_id=-100)

    def predict(self, outputs: dict[str, Any], features, examples) -> list[str]:
        if self._tokenizer is None:
            raise PocketsizeError("seq2seq predict() needs encode() first (it sets the tokenizer)")
        texts = []
        for row in np.asarray(outputs["generated_ids"]):
            ids = [int(i) for i in row if i >= 0]  # batches are padded with negative values
            texts.append(self._tokenizer.decode(ids, skip_special_tokens=True).strip())
        return texts

    def score(self, predictions: list, examples) -> dict[str, Any]:
        pairs = np.asarray(
            [
                squad_scores(p, {"text": golds})
                for p, golds in zip(predictions, gold_texts(examples))
            ],
            dtype=float,
        ).reshape(-1, 2)
        return {"exact_match": float(pairs[:, 0].mean()), "f1": float(pairs[:, 1].mean())}

    def example_scores(self, predictions: list, examples):
        golds = gold_texts(examples)
        return np.asarray([squad_scores(p, {"text": g})[1] for p, g in zip(predictions, golds)])

    def agreement(self, predictions: list, reference_predictions: list):
        return np.asarray([exact_match(p, r) for p, r in zip(predictions, reference_predictions)])

    def f1_against(self, predictions: list, reference_predictions: list):
        return np.asarray([f1_score(p, r) for p, r in zip(predictions, reference_predictions)])

    def compare_runs(self, reference: dict, variant: dict) -> dict:
        from pocketsize.tasks.fidelity import not_comparable

        return not_comparable("generated text is compared, not logits")

    def show_example(self, example: dict) -> dict[str, Any]:
        shown = {k: example[k] for k in ("source", "question") if k in example}
        return {k: str(v)[:200] for k, v in shown.items()}


register_task(Seq2Seq.name, Seq2Seq)
