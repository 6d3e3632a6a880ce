"""Extractive question answering (SQuAD layout: id, context, question, answers).

Feature preparation and n-best post-processing follow the transformers run_qa example (long
contexts split into overlapping windows by a document stride; the best valid span over all of
an example's windows wins; SQuAD v2 compares it with the "no answer" score at [CLS]). EM and
F1 use the official SQuAD normalisation, written out below because `evaluate.load("squad")`
needs the hub and no installed library exposes it.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any

import numpy as np

from pocketsize.tasks.base import Task, register_task, right_padding

# ---- official SQuAD v1.1/v2.0 evaluation, normalisation and per-answer scores ----


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official script)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        # v2: an empty answer matches only an empty answer
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers: dict) -> list[str]:
    """The official script's gold list: non-empty answers, or [""] for an unanswerable question."""
    golds = [a for a in answers["text"] if normalize_answer(a)]
    return golds or [""]


def squad_scores(prediction: str, answers: dict) -> tuple[float, float]:
    """(EM, F1) of one prediction: the best over the gold answers, as the official script does."""
    golds = gold_answers(answers)
    return (
        max(exact_match(prediction, g) for g in golds),
        max(f1_score(prediction, g) for g in golds),
    )


# ---- the task adapter ----

EXAMPLE_QUESTIONS = ("who directed the film?", "what was weak?", "how was the music?", "when?")


class ExtractiveQA(Task):
    name = "extractive-qa"
    output_names = ("start_logits", "end_logits")
    primary_metric = "f1"
    pipeline_task = "question-answering"
    architecture_suffixes = ("ForQuestionAnswering",)
    optimum_task = "question-answering"
    per_token_outputs = True
    loss_targets = ("start_positions", "end_positions")
    asks_question = True
    outputs_over_positions = True
    data_columns = ("question", "context", "answers")
    agreement_meaning = "the share of questions where the variant's answer equals the reference's after SQuAD normalisation"

    def __init__(
        self,
        max_length: int = 384,
        doc_stride: int = 128,
        n_best: int = 20,
        max_answer_length: int = 30,
        version_2_with_negative: bool | None = None,
        null_score_diff_threshold: float = 0.0,
    ):
        self.max_length = max_length
        self.doc_stride = doc_stride
        self.n_best = n_best
        self.max_answer_length = max_answer_length
        # None: SQuAD v2 behaviour when the evaluated examples contain unanswerable questions
        self.version_2_with_negative = version_2_with_negative
        self.null_score_diff_threshold = null_score_diff_threshold

    def auto_model_class(self):
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    def ort_model_class(self):
        from optimum.onnxruntime import ORTModelForQuestionAnswering

        return ORTModelForQuestionAnswering

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        """One feature per window of each context; keeps example_id and context-only offsets."""
        max_length = min(max_length or self.max_length, _model_max_length(tokenizer))
        # a stride that does not fit the window (a model with few positions) is shortened; the
        # tokenizer refuses it otherwise
        stride = self.doc_stride if self.doc_stride < max_length // 2 else max_length // 4
        pad_right = tokenizer.padding_side == "right"
        context_index = 1 if pad_right else 0
        has_ids = "id" in dataset.column_names

        def prepare(batch, indices):
            questions = [q.lstrip() for q in batch["question"]]  # leading spaces waste tokens
            first = questions if pad_right else batch["context"]
            second = batch["context"] if pad_right else questions
            enc = tokenizer(
                first,
                second,
                truncation="only_second" if pad_right else "only_first",
                max_length=max_length,
                stride=stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            sample_map = enc.pop("overflow_to_sample_mapping")
            enc["example_id"] = []
            for i, sample in enumerate(sample_map):
                enc["example_id"].append(
                    str(batch["id"][sample]) if has_ids else str(indices[sample])
                )
                sequence_ids = enc.sequence_ids(i)
                # offsets outside the context become None so no answer can start there
                enc["offset_mapping"][i] = [
                    o if sequence_ids[k] == context_index else None
                    for k, o in enumerate(enc["offset_mapping"][i])
                ]
            return enc

        return dataset.map(
            prepare,
            batched=True,
            with_indices=True,
            remove_columns=dataset.column_names,
            desc="tokenizing",
        )

    def example_inputs(self, tokenizer, max_length: int = 128) -> list[dict]:
        """Question/context pairs (the contexts of varying length), as the model reads them."""
        from pocketsize.tasks.base import EXAMPLE_BATCHES, EXAMPLE_TEXTS

        out = []
        for idx in EXAMPLE_BATCHES:
            enc = tokenizer(
                [EXAMPLE_QUESTIONS[i] for i in idx],
                [EXAMPLE_TEXTS[i] for i in idx],
                padding=True,
                truncation="only_second",
                max_length=max_length,
                return_tensors="np",
            )
            out.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
        return out

    def training_features(self, dataset, tokenizer, max_length: int | None = None):
        features = self.encode(dataset, tokenizer, max_length=max_length)
        if "answers" in dataset.column_names:
            features = add_answer_positions(features, dataset)
        return features

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        return qa_max_length(self, model, requested)

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        pad = DataCollatorWithPadding(right_padding(tokenizer))

        def collate(features):
            keep = [
                {k: v for k, v in f.items() if k not in ("offset_mapping", "example_id")}
                for f in features
            ]
            return pad(keep)

        return collate

    def predict(self, outputs: dict[str, Any], features, examples) -> list[str]:
        """n-best span search over every window of each example; "" means no answer."""
        start_all = np.asarray(outputs["start_logits"])
        end_all = np.asarray(outputs["end_logits"])
        v2 = self.version_2_with_negative
        if v2 is None:
            v2 = any(len(a["text"]) == 0 for a in examples["answers"])
        ids = [str(i) for i in examples["id"]] if "id" in examples.column_names else None
        ids = ids or [str(i) for i in range(len(examples))]
        by_example = collections.defaultdict(list)
        for i, example_id in enumerate(features["example_id"]):
            by_example[example_id].append(i)
        offsets_all = features["offset_mapping"]
        input_ids_all = features["input_ids"]

        predictions = []
        for example_id, context in zip(ids, examples["context"]):
            best_text, best_score = "", -np.inf
            null_score = np.inf
            for fi in by_example.get(example_id, []):
                offsets, n_tokens = offsets_all[fi], len(input_ids_all[fi])
                start, end = start_all[fi][:n_tokens], end_all[fi][:n_tokens]
                # the no-answer score of this window sits at [CLS] (position 0 for BERT-likes)
                null_score = min(null_score, float(start[0] + end[0]))
                score, span = self._best_span(start, end, offsets)
                if score > best_score:  # an earlier window keeps a tie
                    best_score, best_text = score, context[span[0] : span[1]]
            if v2 and null_score - best_score > self.null_score_diff_threshold:
                best_text = ""
            predictions.append(best_text)
        return predictions

    def _best_span(self, start, end, offsets) -> tuple[float, tuple[int, int] | None]:
        """The highest start + end logit of a span inside the context (n-best starts x n-best
        ends, at most max_answer_length tokens) in one window: (score, character span)."""
        best_score, best_span = -np.inf, None
        top_starts = np.argsort(start)[::-1][: self.n_best]
        top_ends = np.argsort(end)[::-1][: self.n_best]
        for s in top_starts:
            if offsets[s] is None:
                continue
            for e in top_ends:
                if offsets[e] is None or e < s or e - s + 1 > self.max_answer_length:
                    continue
                score = float(start[s] + end[e])
                if score > best_score:
                    best_score, best_span = score, (offsets[s][0], offsets[e][1])
        return best_score, best_span

    def example_scores(self, predictions: list, examples):
        return np.asarray([squad_scores(p, a)[1] for p, a in zip(predictions, examples["answers"])])

    def score(self, predictions: list, examples) -> dict[str, Any]:
        """Fractions in [0, 1] (the official script prints them x100); v2 adds HasAns/NoAns."""
        answers = examples["answers"]
        pairs = np.asarray([squad_scores(p, a) for p, a in zip(predictions, answers)], dtype=float)
        em, f1 = pairs.reshape(-1, 2).T
        result: dict[str, Any] = {"exact_match": float(em.mean()), "f1": float(f1.mean())}
        has_answer = np.asarray([bool(gold_answers(a)[0]) for a in answers])
        if not has_answer.all():
            for name, mask in (("has_answer", has_answer), ("no_answer", ~has_answer)):
                if mask.any():
                    result[f"{name}_exact_match"] = float(em[mask].mean())
                    result[f"{name}_f1"] = float(f1[mask].mean())
                    result[f"{name}_total"] = int(mask.sum())
        return result

    def agreement(self, predictions: list, reference_predictions: list):
        """Span agreement: the two answers are the same after SQuAD normalisation."""
        return np.asarray([exact_match(p, r) for p, r in zip(predictions, reference_predictions)])

    def f1_against(self, predictions: list, reference_predictions: list):
        """Per-example SQuAD F1 of one model's answers taking the other's as the gold answer."""
        return np.asarray([f1_score(p, r) for p, r in zip(predictions, reference_predictions)])

    def compare_runs(self, reference: dict, variant: dict) -> dict:
        """The start and end distributions over each window's real tokens."""
        from pocketsize.tasks.fidelity import not_comparable, span_fidelity

        why = "tokenizers differ, so the logits are not position-for-position comparable"
        return span_fidelity(reference, variant) or not_comparable(why)

    def show_example(self, example: dict) -> dict[str, Any]:
        return {
            "id": str(example.get("id", "")),
            "question": example["question"],
            "gold": gold_answers(example["answers"]),
        }


def _model_max_length(tokenizer) -> int:
    # some tokenizers report a sentinel of ~1e30 when they have no limit
    n = getattr(tokenizer, "model_max_length", None) or 512
    return n if n < 100_000 else 512


def qa_max_length(task, model, max_length: int | None) -> int:
    """The QA window length: the adapter's default within the model's positions (encode
    shortens a document stride that would not fit it)."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 512
    positions = positions if positions > 0 else 512  # XLNet reports -1 (no limit)
    return min(max_length or getattr(task, "max_length", 384), int(positions))


def add_answer_positions(features, examples):
    """start/end token positions of each window's answer ([CLS] = 0 when it is not inside).

    The QA adapter encodes for prediction (context offsets per window); training needs the
    answer's token span, found here from those offsets the way the transformers run_qa
    example does.
    """
    ids = [str(i) for i in examples["id"]] if "id" in examples.column_names else None
    ids = ids or [str(i) for i in range(len(examples))]
    answers = dict(zip(ids, examples["answers"]))

    def positions(batch):
        starts, ends = [], []
        for example_id, offsets in zip(batch["example_id"], batch["offset_mapping"]):
            answer = answers[example_id]
            s = e = 0
            if answer["text"]:
                a_start = answer["answer_start"][0]
                a_end = a_start + len(answer["text"][0])
                inside = [(k, o) for k, o in enumerate(offsets) if o is not None]
                if inside and inside[0][1][0] <= a_start and inside[-1][1][1] >= a_end:
                    s = next(k for k, o in inside if o[1] > a_start)
                    e = max(k for k, o in inside if o[0] < a_end)
            starts.append(s)
            ends.append(e)
        return {"start_positions": starts, "end_positions": ends}

    return features.map(positions, batched=True, desc="answer positions")


register_task(ExtractiveQA.name, ExtractiveQA)
