"""Task datasets as `datasets.DatasetDict`s with train / validation / test splits.

    load_dataset(ref, columns=None, label_names=None, split=None) -> DatasetDict (a Dataset with
        split=: "all" is every row as given, with nothing split off)
        ref: a catalogue name (rt-polarity, 20newsgroups, cloze-qa, ...), a local file
        (.csv .tsv .json .jsonl .parquet, or SQuAD v1.1/v2.0 JSON), a {split: file} dict, a
        directory (train.csv / test.jsonl ..., or DatasetDict.save_to_disk), a hub dataset id,
        or a Dataset / DatasetDict already in memory.
    load_texts(ref, split=None) -> [str]      unlabelled text (e.g. a distillation transfer set)
    read_squad(path) -> Dataset               SQuAD JSON -> SQuAD columns, offsets verified
    build_cloze_qa(rows) -> DatasetDict       the cloze-QA set (see pocketsize.data.cloze_qa)

Classification columns: text, optional text_pair, label (ClassLabel; names sorted when the data
gives strings). QA columns: id, title, context, question, answers{text, answer_start}.
Missing validation / test splits come from md5 of each row's key (pocketsize.data.splits).
"""

from __future__ import annotations

import os

from pocketsize.data.splits import bucket, split_of
from pocketsize.errors import PocketsizeError

__all__ = ["build_cloze_qa", "bucket", "load_dataset", "load_texts", "read_squad", "split_of"]


def load_dataset(
    ref,
    columns: dict | None = None,
    label_names=None,
    config: str | None = None,
    trust_remote_code: bool = False,
    labelled: bool = True,
    split: str | None = None,
):
    """A DatasetDict with train / validation / test in pocketsize's column layout.

    columns maps pocketsize's roles to the data's column names, e.g.
    {"text": "review", "label": "stars"} (text_pair optional). label_names fixes the label set
    and its order (every label must be in it); otherwise string labels are sorted.
    labelled=False: a text corpus (a causal LM's data): the text column alone, no labels.
    split: None for the DatasetDict; a split's name for that split alone (a Dataset); "all"
    for every row of every split or file as one Dataset, with no validation or test split cut
    from it (what a small labelled file meant for evaluation needs).
    """
    from datasets import concatenate_datasets

    whole = split == "all"
    dd = _load(ref, columns, label_names, config, trust_remote_code, labelled, not whole)
    if split is None:
        return dd
    if whole:
        return concatenate_datasets([dd[name] for name in dd])
    if split not in dd:
        raise PocketsizeError(
            f"the dataset has no {split!r} split (it has {', '.join(dd)}); name one of them "
            "or 'all'"
        )
    return dd[split]


def _load(ref, columns, label_names, config, trust_remote_code, labelled, cut_splits):
    from datasets import Dataset, DatasetDict

    from pocketsize.assets.catalogue import get_asset, is_catalogued
    from pocketsize.data import local
    from pocketsize.data.normalize import normalize

    def norm(dd, source):
        return normalize(dd, source, columns, label_names, labelled, cut_splits)

    if isinstance(ref, Dataset):
        ref = DatasetDict({"train" if cut_splits else "all": ref})
    if isinstance(ref, DatasetDict):
        return norm(ref, "the dataset")
    if isinstance(ref, dict):
        return norm(DatasetDict(local.read_local(ref)), "the dataset files")
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str):
        raise PocketsizeError(
            f"dataset must be a name, a path, a hub id or a DatasetDict, not {type(ref).__name__}"
        )
    if is_catalogued(ref) and not os.path.exists(ref):
        from pocketsize.data.catalogue_sets import load_catalogue_dataset

        dd = load_catalogue_dataset(get_asset(ref, kind="dataset"))
        plain = columns is None and label_names is None and labelled
        return dd if plain else norm(dd, ref)
    if os.path.exists(ref) or local.looks_like_path(ref):
        return norm(DatasetDict(local.read_local(ref)), ref)
    return norm(DatasetDict(local.read_hub(ref, config, trust_remote_code)), ref)


def load_texts(ref, split: str | None = None) -> list[str]:
    """Plain texts, e.g. an unlabelled transfer set for distillation.

    For a VADER catalogue set with split=None: every snippet of the file, zero-rated ones too.
    Otherwise the text column of `split` (all splits when None) of load_dataset(ref).
    """
    from pocketsize.assets.catalogue import get_asset, is_catalogued

    if split is None and isinstance(ref, str) and is_catalogued(ref) and not os.path.exists(ref):
        from pocketsize.data.catalogue_sets import catalogue_texts

        return catalogue_texts(get_asset(ref, kind="dataset"))
    dd = load_dataset(ref)
    column = "question" if "question" in dd["train"].column_names else "text"
    splits = [split] if split else list(dd)
    unknown = [s for s in splits if s not in dd]
    if unknown:
        raise PocketsizeError(f"no split {unknown[0]!r}; splits are {list(dd)}")
    return [t for s in splits for t in dd[s][column]]


def read_squad(path):
    from pocketsize.data.squad import read_squad as _read

    return _read(path)


def build_cloze_qa(rows):
    from pocketsize.data.cloze_qa import build_cloze_qa as _build

    return _build(rows)
