"""Deterministic splits: the same row lands in the same split on every machine and every run.

A row's bucket is `int(md5(key.encode()).hexdigest(), 16) % 10` (md5 only as a stable,
platform-independent hash, not for security). Bucket 0 is test, 1 validation, 2-9 train. The
key is the row's id where the data has one (rt-polarity: its snippet id, which reproduces the
8,373 / 1,103 / 1,092 split quoted across the project), a group id where rows belong together
(the sentences of one review or editorial), else the row's text.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "validation", "test")
# names other datasets use for the validation split
_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation", "eval": "validation"}


def bucket(key: str) -> int:
    return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16) % 10


def split_of(key: str) -> str:
    b = bucket(key)
    return "test" if b == 0 else "validation" if b == 1 else "train"


def canonical_split_name(name: str) -> str:
    return _ALIASES.get(name.lower(), name.lower())


def _keys(ds) -> list[str]:
    """The hash key of each row that has no id: its text (and pair), a QA row's passage or a
    token row's tokens, so that duplicate texts, and all questions about one passage, land in
    the same split."""
    if "context" in ds.column_names:
        return [str(c) for c in ds["context"]]
    if "tokens" in ds.column_names:
        return [" ".join(tokens) for tokens in ds["tokens"]]
    texts = [str(t) for t in ds["text"]]
    if "text_pair" not in ds.column_names:
        return texts
    return [t if p is None else f"{t}\t{p}" for t, p in zip(texts, ds["text_pair"], strict=True)]


def fill_missing_splits(dd):
    """Give a DatasetDict with a train split the validation / test splits it lacks.

    The rows of train whose bucket belongs to a missing split move there; rows of the splits
    that exist are untouched. A dataset with a test but no validation split keeps its test
    split and gives up only bucket-1 rows of train (~10%).
    """
    from datasets import DatasetDict

    missing = [s for s in ("validation", "test") if s not in dd]
    if not missing:
        return DatasetDict({s: dd[s] for s in SPLITS})
    train = dd["train"]
    dest = [split_of(k) for k in _keys(train)]
    # a bucket whose split already exists stays in train
    dest = [d if d in missing else "train" for d in dest]
    out = {name: dd[name] for name in SPLITS if name in dd and name != "train"}
    for name in ["train", *missing]:
        out[name] = train.select([i for i, d in enumerate(dest) if d == name])
    return DatasetDict({s: out[s] for s in SPLITS})
