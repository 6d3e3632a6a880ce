"""Extractive QA adapter: SQuAD metric, feature windows with a stride, n-best post-processing."""

from __future__ import annotations

import numpy as np
import pytest
from zoo import make_qa_dataset, make_tokenizer

from pocketsize.tasks import get_task, task_for_dataset
from pocketsize.tasks.qa import ExtractiveQA, exact_match, f1_score, normalize_answer, squad_scores


def test_official_normalisation_and_scores_on_hand_checked_examples():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert exact_match("Brilliant.", "brilliant") == 1.0
    assert exact_match("brilliant film", "brilliant") == 0.0
    # pred {cat, sat} vs gold {cat, sat, on, mat}: precision 1, recall 1/2 -> F1 2/3
    assert f1_score("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)
    assert f1_score("dog", "cat") == 0.0
    # repeated tokens count with multiplicity: pred {a1 x2} vs gold {x}: p=1/2, r=1
    assert f1_score("x x", "x") == pytest.approx(2 / 3)
    # the best over the gold answers
    assert squad_scores("cat", {"text": ["dog", "the cat"], "answer_start": [0, 4]}) == (1.0, 1.0)
    # SQuAD v2: unanswerable gold; only the empty prediction scores
    assert squad_scores("", {"text": [], "answer_start": []}) == (1.0, 1.0)
    assert squad_scores("cat", {"text": [], "answer_start": []}) == (0.0, 0.0)
    assert squad_scores("", {"text": ["cat"], "answer_start": [0]}) == (0.0, 0.0)


def test_score_reports_fractions_and_v2_breakdown():
    from datasets import Dataset

    examples = Dataset.from_dict(
        {
            "id": ["a", "b", "c"],
            "question": ["q"] * 3,
            "context": ["the cat sat"] * 3,
            "answers": [
                {"text": ["cat"], "answer_start": [4]},
                {"text": ["cat sat"], "answer_start": [4]},
                {"text": [], "answer_start": []},
            ],
        }
    )
    task = get_task("extractive-qa")
    scores = task.score(["cat", "cat", ""], examples)
    # a: EM 1 F1 1; b: EM 0, F1 2/3 (p=1, r=1/2); c: unanswerable, empty prediction: 1, 1
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert scores["has_answer_total"] == 2 and scores["no_answer_total"] == 1
    assert scores["has_answer_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["no_answer_exact_match"] == 1.0
    assert np.mean(task.example_scores(["cat", "cat", ""], examples)) == pytest.approx(scores["f1"])
    assert task.agreement(["The cat", "x"], ["cat", "y"]).tolist() == [1.0, 0.0]


def _logits_for_span(features, feature_index, char_start, char_end, high=10.0):
    """Start/end logits (all windows) that point at the tokens covering [char_start, char_end)."""
    n = max(len(ids) for ids in features["input_ids"])
    start = np.full((len(features), n), -5.0, dtype=np.float32)
    end = np.full((len(features), n), -5.0, dtype=np.float32)
    offsets = features[feature_index]["offset_mapping"]
    s = next(i for i, o in enumerate(offsets) if o is not None and o[0] == char_start)
    e = next(i for i, o in enumerate(offsets) if o is not None and o[1] == char_end)
    start[feature_index, s] = high
    end[feature_index, e] = high
    return {"start_logits": start, "end_logits": end}


def test_long_context_split_by_stride_and_answer_found_in_a_later_window(tmp_path):
    tok = make_tokenizer(tmp_path)
    data = make_qa_dataset(1, 1, 1, long=True)["test"]
    task = ExtractiveQA(max_length=24, doc_stride=8, max_answer_length=5)
    features = task.encode(data, tok)
    assert len(features) > 2, "a 40-word context must be cut into several 24-token windows"
    assert set(features["example_id"]) == {data[0]["id"]}
    # consecutive windows overlap by the stride: the first context token of window k+1
    # is one already covered by window k
    first = [o for o in features[0]["offset_mapping"] if o is not None]
    second = [o for o in features[1]["offset_mapping"] if o is not None]
    assert second[0][0] < first[-1][1]
    # put the answer in the last window that contains it
    answer = data[0]["answers"]
    char_start = answer["answer_start"][0]
    char_end = char_start + len(answer["text"][0])
    windows = [
        i
        for i in range(len(features))
        if any(o is not None and o[0] == char_start for o in features[i]["offset_mapping"])
    ]
    outputs = _logits_for_span(features, windows[-1], char_start, char_end)
    assert task.predict(outputs, features, data) == answer["text"]
    assert task.score(answer["text"], data)["exact_match"] == 1.0


def test_span_longer_than_max_answer_length_or_reversed_is_not_chosen(tmp_path):
    tok = make_tokenizer(tmp_path)
    from datasets import Dataset

    context = "the film story plot actor cast"
    data = Dataset.from_dict(
        {
            "id": ["x"],
            "question": ["what"],
            "context": [context],
            "answers": [{"text": ["film"], "answer_start": [4]}],
        }
    )
    task = ExtractiveQA(max_length=32, doc_stride=8, max_answer_length=2)
    features = task.encode(data, tok)
    offsets = features[0]["offset_mapping"]
    ctx = [i for i, o in enumerate(offsets) if o is not None]  # one token per word here
    n = len(features[0]["input_ids"])
    start = np.zeros((1, n), dtype=np.float32)
    end = np.zeros((1, n), dtype=np.float32)
    start[0, ctx[0]] = 9  # "the" ... "cast" would be 6 tokens: too long
    end[0, ctx[5]] = 9
    start[0, ctx[3]] = 5  # "plot actor": 2 tokens, allowed
    end[0, ctx[4]] = 5
    end[0, ctx[2]] = 8  # ends before the best start "plot": reversed for that start
    pred = task.predict({"start_logits": start, "end_logits": end}, features, data)
    # "the..cast" (18) and "the..story" (17) are longer than 2 tokens, "plot..story" (13) is
    # reversed; the best valid pair is "plot actor" (10), ahead of "the film" (9).
    assert pred == ["plot actor"]


def test_v2_no_answer_when_null_score_beats_best_span(tmp_path):
    tok = make_tokenizer(tmp_path)
    data = make_qa_dataset(2, 2, 2, unanswerable_every=2)["test"]  # 1st unanswerable, 2nd not
    task = get_task("qa")
    task.max_length, task.doc_stride = 48, 8
    features = task.encode(data, tok)
    outputs = {}
    for name in ("start_logits", "end_logits"):
        outputs[name] = np.zeros((len(features), max(map(len, features["input_ids"]))), np.float32)
    for fi, example_id in enumerate(features["example_id"]):
        offsets = features[fi]["offset_mapping"]
        ctx = [i for i, o in enumerate(offsets) if o is not None]
        outputs["start_logits"][fi, ctx[0]] = outputs["end_logits"][fi, ctx[0]] = 3.0
        null = 5.0 if example_id == data[0]["id"] else 1.0  # [CLS] score: 10 vs span 6; 2 vs 6
        outputs["start_logits"][fi, 0] = outputs["end_logits"][fi, 0] = null
    pred = task.predict(outputs, features, data)
    first_word = data[1]["context"].split()[0]
    assert pred == ["", first_word]
    # without v2 handling the null answer is never returned
    task.version_2_with_negative = False
    assert task.predict(outputs, features, data)[0] != ""


def test_task_inferred_from_squad_columns():
    assert task_for_dataset(make_qa_dataset(2, 2, 2)).name == "extractive-qa"
