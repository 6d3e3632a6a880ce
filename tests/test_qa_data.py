"""Extractive QA data: the SQuAD v1.1 / v2.0 reader and the cloze-QA builder."""

from __future__ import annotations

import json

import pytest
from zoo import SQUAD_CONTEXT as CONTEXT
from zoo import squad_json

from pocketsize.data import build_cloze_qa, load_dataset, read_squad
from pocketsize.data.cloze_qa import answer_candidates
from pocketsize.errors import PocketsizeError


def test_squad_v1(tmp_path):
    path = tmp_path / "train-v1.1.json"
    path.write_text(json.dumps(squad_json("1.1")))
    ds = read_squad(path)
    assert ds.column_names == ["id", "title", "context", "question", "answers"]
    assert ds[0]["answers"] == {"text": ["1889"], "answer_start": [CONTEXT.index("1889")]}
    assert ds[1]["answers"]["text"] == ["Paris", "Paris"] and ds[1]["title"] == "Eiffel_Tower"


def test_squad_v2_unanswerable_through_load_dataset(tmp_path):
    train, dev = tmp_path / "train-v2.0.json", tmp_path / "dev-v2.0.json"
    big = squad_json("v2.0", with_impossible=True)
    # enough paragraphs that every hash split gets some
    big["data"][0]["paragraphs"] = [
        {"context": f"{CONTEXT} Paragraph {i}.", "qas": [dict(q, id=f"{q['id']}-{i}") for q in big["data"][0]["paragraphs"][0]["qas"]]}
        for i in range(200)
    ]  # fmt: skip
    train.write_text(json.dumps(big))
    dev.write_text(json.dumps(squad_json("v2.0", with_impossible=True)))
    dd = load_dataset({"train": train, "dev": dev})
    assert set(dd) == {"train", "validation", "test"} and len(dd["validation"]) == 3
    impossible = [r for r in dd["validation"] if r["id"] == "q3"][0]
    assert impossible["answers"] == {"text": [], "answer_start": []}
    contexts = {s: set(dd[s]["context"]) for s in ("train", "test")}
    assert not contexts["train"] & contexts["test"]  # a passage's questions stay together


def test_squad_offset_mismatch_is_an_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(squad_json("1.1", start=3)))
    with pytest.raises(
        PocketsizeError, match=r"question 'q1' answer '1889' does not match its offset 3"
    ):
        read_squad(path)
    with pytest.raises(PocketsizeError, match="does not match its offset"):
        load_dataset(path)


NYT_LIKE = [
    (
        "7_1",
        0.5,
        "On Dec. 19, Mayor David Dinkins opened the new library in Brooklyn to great applause.",
    ),
    (
        "7_2",
        -1.0,
        "The project cost $45 million and took 12 years, far longer than the city had promised.",
    ),
    (
        "7_3",
        0.2,
        "Critics such as Robert Moses Jr. said the money belonged in the schools of the Bronx.",
    ),
    ("7_4", 0.0, "In 1989 the library still lacked 30 percent of its books."),
    (
        "8_1",
        1.0,
        "Senator Daniel Patrick Moynihan visited Albany on Tuesday to argue for the bill.",
    ),
    ("8_2", -0.5, "He said that 4,000 families in Buffalo would lose their homes without it."),
]


def test_cloze_qa_examples_are_valid_and_deterministic():
    dd = build_cloze_qa(NYT_LIKE * 1)
    rows = [r for s in dd for r in dd[s]]
    assert rows, "the builder found no answers"
    for r in rows:
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert r["context"][start : start + len(text)] == text
        assert r["question"].endswith("?") and r["question"][:-1] not in r["context"]
        assert text not in r["question"]
        assert r["context"].count(text) == 1
    titles = {s: set(dd[s]["title"]) for s in dd}
    assert not (titles["train"] & titles["test"]) and not (titles["train"] & titles["validation"])
    again = build_cloze_qa(list(NYT_LIKE))
    assert [r for s in again for r in again[s]] == rows


def test_cloze_answer_candidates():
    sentence = "On Dec. 19, Mayor David Dinkins paid $45 million for 12 books in Brooklyn."
    spans = {sentence[s:e]: wh for s, e, wh in answer_candidates(sentence)}
    assert spans == {
        "Dec. 19": "when",
        "Mayor David Dinkins": "who",
        "$45 million": "how much",
        "12": "how many",
        "Brooklyn": "where",
    }


def test_cloze_qa_catalogue_set():
    dd = load_dataset("cloze-qa")
    sizes = {k: len(v) for k, v in dd.items()}
    assert sizes["train"] >= 2000 and sizes["test"] >= 300 and sizes["validation"] >= 300
    titles = {s: set(dd[s]["title"]) for s in dd}
    assert not titles["train"] & titles["test"] and not titles["validation"] & titles["test"]
    for r in dd["test"]:
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert (
            r["context"][start : start + len(text)] == text
            and r["question"][:-1] not in r["context"]
        )


def test_malformed_squad_is_one_clear_error(tmp_path):
    broken = squad_json("1.1")
    del broken["data"][0]["paragraphs"][0]["qas"][0]["question"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(PocketsizeError, match="not well-formed SQuAD JSON.*'question'"):
        read_squad(path)
