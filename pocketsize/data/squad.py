"""SQuAD v1.1 / v2.0 JSON -> a datasets.Dataset in the SQuAD column layout.

    {"version": ..., "data": [{"title": T, "paragraphs": [{"context": C, "qas": [
        {"id": I, "question": Q, "answers": [{"text": A, "answer_start": S}, ...],
         "is_impossible": bool (v2 only), "plausible_answers": [...] (v2, ignored)}]}]}]}

Rows: id, title, context, question, answers = {"text": [A...], "answer_start": [S...]}.
Unanswerable v2 questions get empty answer lists. Every answer is checked against its offset
(`context[S:S+len(A)] == A`); a mismatch is an error naming the question, because a wrong offset
silently turns into wrong training labels.
"""

from __future__ import annotations

import json
from pathlib import Path

from pocketsize.errors import PocketsizeError


def read_squad(path):
    path = Path(path)
    if not path.is_file():
        raise PocketsizeError(f"SQuAD file {path} does not exist; check the path")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PocketsizeError(f"{path} is not valid JSON ({e}); fix the file") from e
    return squad_to_dataset(obj, source=str(path))


def squad_rows(obj: dict, source: str = "SQuAD JSON") -> list[dict]:
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise PocketsizeError(
            f"{source} is not SQuAD JSON (no top-level 'data' list); pass a SQuAD v1.1/v2.0 file"
        )
    try:
        rows = _rows(obj["data"], source)
    except (KeyError, TypeError, ValueError) as e:
        raise PocketsizeError(
            f"{source} is not well-formed SQuAD JSON ({type(e).__name__}: {e}); each qas entry needs "
            "id, question and answers [{text, answer_start}]"
        ) from e
    if not rows:
        raise PocketsizeError(f"{source} holds no questions; pass a SQuAD file with examples")
    return rows


def _rows(data: list, source: str) -> list[dict]:
    rows = []
    for article in data:
        title = article.get("title", "")
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                texts, starts = [], []
                for answer in answers:
                    text, start = answer["text"], int(answer["answer_start"])
                    if context[start : start + len(text)] != text:
                        raise PocketsizeError(
                            f"{source}: question {qa.get('id')!r} answer {text!r} does not match its "
                            f"offset {start} (the context there reads "
                            f"{context[start : start + len(text)]!r}); fix answer_start"
                        )
                    texts.append(text)
                    starts.append(start)
                rows.append(
                    {
                        "id": str(qa["id"]),
                        "title": title,
                        "context": context,
                        "question": qa["question"],
                        "answers": {"text": texts, "answer_start": starts},
                    }
                )
    return rows


def squad_features():
    from datasets import Features, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "title": Value("string"),
            "context": Value("string"),
            "question": Value("string"),
            "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")}),
        }
    )


def squad_to_dataset(obj: dict, source: str = "SQuAD JSON"):
    from datasets import Dataset

    return Dataset.from_list(squad_rows(obj, source), features=squad_features())
