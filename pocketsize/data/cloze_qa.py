"""cloze-QA: a deterministic extractive QA set built from real text, so that QA distillation
can be measured on a machine where no QA dataset can be fetched. It is NOT a stand-in for SQuAD:
questions are perturbed cloze sentences, so matching them is easier than real reading.

Source: the 5,190 NYT editorial sentences of the VADER corpus (vaderSentiment 3.3.2 sdist).
Their ids `E_S` number the sentences S = 1, 2, ... of editorial E in order, and the text keeps
case, punctuation, numbers, dates and names.

How it is built (every step is a pure function of the file; no global random state):
1. Editorials: sentences grouped by E and ordered by S. Editorial E goes to test if
   md5("nyt-editorial-E") % 10 == 0, validation if 1, else train, so no editorial (and no
   passage) is in two splits.
2. Passages: consecutive, non-overlapping windows of PASSAGE_SENTENCES (3) sentences of one
   editorial, joined with one space; a remainder of 1-2 sentences is appended to the last
   window (an editorial shorter than the window is one passage).
3. Answer candidates in each sentence, found by regular expressions, first kind wins on
   overlap: dates (month + day / year, bare years 1800-2099) -> "when"; money ($ amounts,
   optional million/billion) -> "how much"; percentages -> "what percentage"; other numbers
   (digits, optional million/billion) -> "how many"; names (runs of capitalised words, with
   initials and `Mr.`-style titles, not counting a lone sentence-initial word or a capitalised
   function word) -> "where" after in/at/from/to/across/into, else "who". A candidate is
   kept only if its text occurs exactly once in the passage (the answer is unambiguous).
4. Up to QUESTIONS_PER_SENTENCE (2) questions per sentence of at least MIN_WORDS (6) words:
   the candidates are picked with a Random seeded by md5 of "nyt-E-S". For each, the span is
   replaced by the wh-word, the sentence's final punctuation dropped, then perturbed with the same Random: each other word is dropped with
   probability 0.15 (at most a third of them), and one adjacent pair of words is swapped; "?"
   is appended. The question must not be a substring of the passage and must not contain the
   answer text; otherwise the perturbation is redrawn (up to 10 times) or the sentence skipped.
5. Answer = the span's text, answer_start = passage offset of the sentence + offset of the span
   in it; `context[start:start+len(text)] == text` is asserted for every example.
6. Rows: id "nyt-E-S-K" (editorial, sentence, question number), title "nyt-editorial-E",
   context, question, answers {"text": [span], "answer_start": [offset]}: the SQuAD v1.1 layout.
Sizes from vaderSentiment 3.3.2: 3,278 train / 452 validation / 370 test questions; passages
average ~63 words. The test suite checks the offsets and that no editorial is in two splits.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict

from pocketsize.data.splits import split_of
from pocketsize.errors import PocketsizeError

PASSAGE_SENTENCES = 3
DROP_PROBABILITY = 0.15
QUESTIONS_PER_SENTENCE = 2
MIN_WORDS = 6

_MONTH = r"(?:Jan(?:uary|\.)?|Feb(?:ruary|\.)?|March|April|May|June|July|Aug(?:ust|\.)?|Sept?(?:ember|\.)?|Oct(?:ober|\.)?|Nov(?:ember|\.)?|Dec(?:ember|\.)?)"
_SCALE = r"(?:\s(?:million|billion|trillion))?"
_PATTERNS = [
    (
        "when",
        re.compile(
            rf"\b{_MONTH}\s\d{{1,2}}(?:,\s(?:1[89]|20)\d\d)?\b|\b{_MONTH}\s(?:1[89]|20)\d\d\b"
        ),
    ),
    ("when", re.compile(r"\b(?:1[89]|20)\d\d(?:'s|s)?\b")),
    ("how much", re.compile(rf"\$\d[\d,]*(?:\.\d+)?{_SCALE}")),
    ("what percentage", re.compile(r"\b\d[\d,]*(?:\.\d+)?(?:\spercent|%)")),
    ("how many", re.compile(rf"\b\d[\d,]*(?:\.\d+)?{_SCALE}\b")),
]
_CAP_WORD = r"(?:[A-Z][a-zA-Z\-]+|[A-Z]\.(?:[A-Z]\.)*|Mr\.|Mrs\.|Ms\.|Dr\.|St\.)"
_NAME = re.compile(rf"\b{_CAP_WORD}(?:\s{_CAP_WORD})*")
_FUNCTION_WORDS = set(
    "A An The This That These Those It Its In On At Of For From To By With But And Or Nor Yet So "
    "If When While Where What Which Who Why How As After Before Since Until Unless Although Though "
    "He She They We You I His Her Their Our Your My Mr Mrs Ms Dr There Here Such Some Many Most "
    "All Any Each Every No Not Both Either Neither One Two Three Now Then Still Even Only Also "
    "Yes Indeed Instead Meanwhile However Moreover Perhaps Once".split()
)
_PLACE_PREPOSITIONS = {"in", "at", "from", "to", "across", "into"}


def _seeded(key: str) -> random.Random:
    return random.Random(int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16))


def _split_of(editorial: str) -> str:
    return split_of(f"nyt-editorial-{editorial}")


def answer_candidates(sentence: str) -> list[tuple[int, int, str]]:
    """(start, end, wh-word) spans in `sentence`, non-overlapping, in order of position."""
    found: list[tuple[int, int, str]] = []

    def free(s, e):
        return all(e <= fs or s >= fe for fs, fe, _ in found)

    for wh, pattern in _PATTERNS:
        for m in pattern.finditer(sentence):
            if free(m.start(), m.end()):
                found.append((m.start(), m.end(), wh))
    for m in _NAME.finditer(sentence):
        start, end = m.start(), m.end()
        words = m.group().split(" ")
        # drop leading capitalised function words ("The", "But", sentence-initial "In")
        while words and words[0].rstrip(".") in _FUNCTION_WORDS:
            start += len(words[0]) + 1
            words = words[1:]
        if not words or (start == 0 and len(words) == 1):
            continue  # a lone sentence-initial capital says nothing about names
        if words[-1] in ("Mr.", "Mrs.", "Ms.", "Dr.", "St."):
            continue
        end = start + len(" ".join(words))
        if not free(start, end):
            continue
        before = sentence[:start].split()
        wh = "where" if before and before[-1].lower() in _PLACE_PREPOSITIONS else "who"
        found.append((start, end, wh))
    return sorted(found)


def make_question(sentence: str, start: int, end: int, wh: str, rng: random.Random) -> str:
    """The sentence with [start, end) replaced by `wh`, some words dropped, one pair swapped."""
    head = sentence[:start].split()
    tail = sentence[end:].rstrip().rstrip(".!?;:'\"").split()
    words = head + ["\0"] + tail  # "\0" marks the wh-word so that it is never dropped
    others = [i for i, w in enumerate(words) if w != "\0"]
    max_drop = len(others) // 3
    drop = {i for i in others if rng.random() < DROP_PROBABILITY}
    drop = set(sorted(drop)[:max_drop])
    words = [w for i, w in enumerate(words) if i not in drop]
    if len(words) >= 3:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    question = " ".join(words).replace("\0", wh)
    return question[:1].upper() + question[1:] + "?"


def build_cloze_qa(rows):
    """DatasetDict train / validation / test from VADER NYT rows [(id "E_S", rating, text)]."""
    from datasets import Dataset, DatasetDict

    from pocketsize.data.splits import SPLITS
    from pocketsize.data.squad import squad_features

    editorials: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for row_id, _rating, text in rows:
        editorial, _, sentence = row_id.partition("_")
        if not sentence.isdigit():
            raise PocketsizeError(
                f"cloze-QA needs ids of the form EDITORIAL_SENTENCE, got {row_id!r}"
            )
        editorials[editorial].append((int(sentence), row_id, text.strip()))
    examples = {s: [] for s in SPLITS}
    for editorial in sorted(editorials, key=lambda e: (len(e), e)):
        sentences = sorted(editorials[editorial])
        split = _split_of(editorial)
        for passage in _windows(sentences):
            examples[split].extend(_passage_examples(editorial, passage))
    if not examples["train"]:
        raise PocketsizeError("cloze-QA: no examples could be built; pass the NYT editorial rows")
    features = squad_features()
    return DatasetDict(
        {
            s: Dataset.from_dict(
                {c: [r[c] for r in examples[s]] for c in features}, features=features
            )
            for s in SPLITS
        }
    )


def _windows(sentences: list) -> list[list]:
    n = PASSAGE_SENTENCES
    windows = [sentences[i : i + n] for i in range(0, len(sentences), n)]
    if len(windows) > 1 and len(windows[-1]) < n:
        windows[-2].extend(windows.pop())
    return windows


def _passage_examples(editorial: str, passage: list) -> list[dict]:
    context, offsets = "", []
    for _, _, text in passage:
        if context:
            context += " "
        offsets.append(len(context))
        context += text
    out = []
    for (number, _row_id, sentence), offset in zip(passage, offsets, strict=True):
        rng = _seeded(f"nyt-{editorial}-{number}")
        if len(sentence.split()) < MIN_WORDS:
            continue  # a perturbed short sentence keeps too little to ask about
        candidates = [
            c for c in answer_candidates(sentence) if context.count(sentence[c[0] : c[1]]) == 1
        ]
        picked = sorted(rng.sample(candidates, min(QUESTIONS_PER_SENTENCE, len(candidates))))
        for k, (start, end, wh) in enumerate(picked):
            answer = sentence[start:end]
            for _attempt in range(10):
                question = make_question(sentence, start, end, wh, rng)
                if question.rstrip("?") not in context and answer not in question:
                    break
            else:
                continue
            answer_start = offset + start
            if context[answer_start : answer_start + len(answer)] != answer:
                raise AssertionError(f"cloze-QA offset bug at nyt-{editorial}-{number}")
            out.append(
                {
                    "id": f"nyt-{editorial}-{number}-{k}",
                    "title": f"nyt-editorial-{editorial}",
                    "context": context,
                    "question": question,
                    "answers": {"text": [answer], "answer_start": [answer_start]},
                }
            )
    return out
