"""Token-classification (NER) data in the CoNLL layout, read into IOB2 tags.

One token per line, the token first and its tag last, separated by any whitespace (so the
4-column CoNLL-2003 files read as well as `token<TAB>tag` files); a whitespace-only line ends a
sentence; `-DOCSTART-` lines are skipped. Tags in IOB1 (an `I-` may start an entity) or BIOES /
IOBES (`S-`, `E-`) are converted to IOB2, the scheme seqeval's default conlleval mode reads;
any other tag is refused by name.
"""

from __future__ import annotations

import re
from pathlib import Path

from pocketsize.errors import PocketsizeError

SCHEMES = ("iob2", "iob1", "bioes")


def read_conll(path, scheme: str = "auto") -> list[tuple[list[str], list[str]]]:
    """(tokens, IOB2 tags) per sentence of a CoNLL file, in file order."""
    path = Path(path)
    sentences, tokens, tags = [], [], []
    width = None  # the column count of the file's first token line, which every line keeps
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                if tokens:
                    sentences.append((tokens, tags))
                tokens, tags = [], []
                continue
            if parts[0] == "-DOCSTART-":
                continue
            if len(parts) < 2:
                raise PocketsizeError(
                    f"{path}:{n} has a token but no tag ({line.strip()!r}); write token<TAB>tag "
                    "lines and a blank line between sentences"
                )
            width = width or (len(parts), n)
            if len(parts) != width[0]:
                raise PocketsizeError(
                    f"{path}:{n} has {len(parts)} columns but line {width[1]} has {width[0]} "
                    f"({line.strip()!r}); a token holding a space splits the line: give every "
                    "line the same columns, the token first and the tag last"
                )
            _split(parts[-1], f"{path}:{n}")
            tokens.append(parts[0])
            tags.append(parts[-1])
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise PocketsizeError(f"{path} holds no sentences; expected token<TAB>tag lines")
    found = detect_scheme([t for _, ts in sentences for t in ts]) if scheme == "auto" else scheme
    if found not in SCHEMES:
        raise PocketsizeError(
            f"unknown tag scheme {scheme!r}; use one of auto, {', '.join(SCHEMES)}"
        )
    return [(toks, to_iob2(ts, found)) for toks, ts in sentences]


_TAG = re.compile(r"O|[BIES]-\S+")


def looks_like_conll(path, sample_bytes: int = 65536) -> bool:
    """True when the start of a file reads as CoNLL: token lines whose last column is a tag
    (O, B-, I-, E-, S-TYPE), blank lines and -DOCSTART- aside; a header line before them
    counts when a blank line separates two sentences. For the hint to other readers: a .tsv
    or .txt file of this shape is meant for token classification."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(sample_bytes)
    except (OSError, UnicodeDecodeError):
        return False
    lines = text.splitlines()[:-1] if len(text) == sample_bytes else text.splitlines()
    parts = [line.split() for line in lines]
    tokens = [p for p in parts if p and p[0] != "-DOCSTART-"]
    tagged = [len(p) >= 2 and _TAG.fullmatch(p[-1]) is not None for p in tokens]
    if len(tokens) < 2 or not all(tagged[1:]):
        return False
    sentences = any(not p for p in parts[parts.index(tokens[0]) + 1 :])
    return tagged[0] or sentences


def _split(tag: str, where: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if not dash or prefix not in ("B", "I", "E", "S") or not kind:
        raise PocketsizeError(
            f"tag {tag!r} ({where}) is not O or B-/I-/E-/S-TYPE; give IOB2, IOB1 or BIOES tags"
        )
    return prefix, kind


def detect_scheme(tags: list[str]) -> str:
    """bioes when E- or S- tags occur; iob1 when most entities start with I- (IOB1 writes B-
    only between two touching entities of one type); else iob2, where a stray I- after O is
    annotation noise that conlleval reads as a start anyway."""
    parsed = [_split(t, "in the data") for t in tags]
    if {prefix for prefix, _ in parsed} & {"E", "S"}:
        return "bioes"
    starts = [
        prefix
        for i, (prefix, kind) in enumerate(parsed)
        if prefix != "O" and (i == 0 or parsed[i - 1][1] != kind)
    ]
    return "iob1" if starts.count("I") > starts.count("B") else "iob2"


def to_iob2(tags: list[str], scheme: str) -> list[str]:
    """One sentence's tags in IOB2: every entity starts with B-."""
    out = []
    previous = ""
    for i, tag in enumerate(tags):
        prefix, kind = _split(tag, f"position {i}")
        if prefix == "O":
            out.append("O")
        elif scheme == "bioes":
            out.append(("B-" if prefix in ("B", "S") else "I-") + kind)
        elif prefix == "I" and (scheme == "iob1" and previous != kind):
            out.append("B-" + kind)
        else:
            out.append(f"{prefix}-{kind}")
        previous = kind if prefix not in ("O", "E", "S") else ""
    return out


def tag_names(tags: list[str]) -> list[str]:
    """The label set: O first, then B- and I- of each entity type in alphabetical order."""
    kinds = sorted({t.partition("-")[2] for t in tags if t != "O"})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]


def sentences_dataset(sentences: list[tuple[list[str], list[str]]]):
    """One Dataset of the sentences in file order: id (the position), tokens, ner_tags (IOB2
    strings). pocketsize.data.normalize turns the tags into a ClassLabel and splits by hash."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "id": [str(n) for n in range(len(sentences))],
            "tokens": [tokens for tokens, _ in sentences],
            "ner_tags": [tags for _, tags in sentences],
        }
    )
