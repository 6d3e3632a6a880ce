"""Bring any classification or QA DatasetDict into pocketsize's layout, or say what is wrong.

Classification: columns `text`, optional `text_pair`, `label` (a ClassLabel whose names are
the label set, sorted when the data gives strings). Extractive QA: the SQuAD columns. A text
corpus (labelled=False, e.g. for a causal LM): the `text` column alone.
"""

from __future__ import annotations

from pocketsize.data.splits import SPLITS, canonical_split_name, fill_missing_splits
from pocketsize.errors import PocketsizeError

QA_COLUMNS = ("id", "title", "context", "question", "answers")
# column names other datasets use, tried when the caller gave no mapping
_TEXT_GUESSES = ("text", "sentence", "sentence1", "premise", "content", "review", "document")
_PAIR_GUESSES = ("text_pair", "sentence2", "hypothesis")
_LABEL_GUESSES = ("label", "labels", "category", "sentiment", "class")


def is_qa(columns) -> bool:
    return {"question", "context", "answers"} <= set(columns)


def is_tokens(columns) -> bool:
    return {"tokens", "ner_tags"} <= set(columns)


def normalize(
    dd, source: str, columns: dict | None = None, label_names=None, labelled=True, cut_splits=True
):
    """Rename splits and columns, encode labels, add missing splits, check for emptiness.

    cut_splits=False: keep the splits as they are (any names, none added): every row is to be
    used as given, e.g. a small labelled file to evaluate."""
    from pocketsize.data.progress import quiet_progress

    with quiet_progress():
        return _normalize(dd, source, columns, label_names, labelled, cut_splits)


def _normalize(dd, source, columns, label_names, labelled, cut_splits):
    from datasets import DatasetDict

    dd = DatasetDict({canonical_split_name(k): v for k, v in dd.items()})
    if "train" not in dd and cut_splits:
        if len(dd) == 1:  # one unnamed split (e.g. a single file): it is all the data
            dd = DatasetDict({"train": next(iter(dd.values()))})
        else:
            raise PocketsizeError(
                f"{source} has splits {sorted(dd)} but no train split; name one of them train"
            )
    if sum(len(d) for d in dd.values()) == 0:
        raise PocketsizeError(f"{source} is empty (no rows); pass a dataset with examples")
    first = dd["train"] if "train" in dd else next(iter(dd.values()))
    if is_qa(first.column_names):
        dd = DatasetDict({k: _qa_columns(v, source) for k, v in dd.items()})
    elif is_tokens(first.column_names):
        dd = _token_columns(dd, source)
    else:
        mapping = _column_mapping(first.column_names, columns, source, labelled)
        dd = DatasetDict({k: _classification_columns(v, mapping) for k, v in dd.items()})
        _check_rows(dd, source, labelled)
        if labelled:
            dd = _encode_labels(dd, source, label_names)
    if not cut_splits:
        return dd
    dd = fill_missing_splits(dd)
    for name in SPLITS:
        if len(dd[name]) == 0:
            raise PocketsizeError(
                f"{source}: the {name} split is empty ({len(dd['train'])} train rows); give more "
                "rows (the hash split puts ~10% each in validation and test) or your own splits, "
                "or, to evaluate every row as given, --split all (Python: split='all')"
            )
    return dd


def _column_mapping(have: list[str], columns: dict | None, source: str, labelled=True) -> dict:
    columns = dict(columns or {})
    unknown = set(columns) - {"text", "text_pair", "label"}
    if unknown:
        raise PocketsizeError(
            f"column roles are text, text_pair and label; got {', '.join(sorted(unknown))} "
            "(e.g. --columns text=review,label=stars)"
        )
    roles = (("text", _TEXT_GUESSES), ("text_pair", _PAIR_GUESSES), ("label", _LABEL_GUESSES))
    for role, guesses in roles if labelled else roles[:1]:
        if role not in columns:
            found = next((g for g in guesses if g in have), None)
            if found:
                columns[role] = found
    for role in ("text", "label") if labelled else ("text",):
        if role not in columns or columns[role] not in have:
            asked = f" (mapped to {columns[role]!r})" if role in columns else ""
            corpus = " (text without labels, a causal LM's: --task causal-lm)" * (role == "label")
            raise PocketsizeError(
                f"{source} has no {role} column{asked}; its columns are {have}: name one with "
                f"--columns {role}=NAME (Python: columns={{'{role}': NAME}}){corpus}"
            )
    if "text_pair" in columns and columns["text_pair"] not in have:
        raise PocketsizeError(
            f"{source} has no text_pair column {columns['text_pair']!r}; its columns are {have}"
        )
    return columns


def _check_rows(dd, source: str, labelled: bool) -> None:
    """Refuse a row with empty text or no label, naming it (rows count from 1, in file order:
    nothing has been split off yet)."""
    roles = ("text", "label") if labelled else ("text",)
    for name, ds in dd.items():
        where = source if len(dd) == 1 else f"the {name} split of {source}"
        for role in roles:
            for i, value in enumerate(ds[role]):
                if value is None or (isinstance(value, str) and not value.strip()):
                    what = "empty text" if role == "text" else "no label"
                    raise PocketsizeError(
                        f"row {i + 1} of {where} has {what}; fill it in or drop that row"
                    )


def _classification_columns(ds, mapping: dict):
    keep = {src: role for role, src in mapping.items()}
    ds = ds.remove_columns([c for c in ds.column_names if c not in keep])
    return ds.rename_columns({src: role for src, role in keep.items() if src != role})


def _encode_labels(dd, source: str, label_names):
    from datasets import ClassLabel, DatasetDict, Value

    feature = next(iter(dd.values())).features["label"]
    if isinstance(feature, ClassLabel):
        if label_names is None or [str(n) for n in label_names] == feature.names:
            return dd
        # names given: re-express each label by its name, then encode against the given set
        names = feature.names
        dd = DatasetDict(
            {
                k: v.cast_column("label", Value("int64")).map(
                    lambda r: {"label": names[r["label"]]}
                )
                for k, v in dd.items()
            }
        )
    values = sorted({x for v in dd.values() for x in v["label"]}, key=lambda x: (x is None, str(x)))
    if None in values:
        raise PocketsizeError(f"{source} has rows without a label; fill them in or drop those rows")
    ints = all(isinstance(x, int) and not isinstance(x, bool) for x in values)
    if label_names is None:
        label_names = (
            [str(i) for i in range(max(values) + 1)] if ints else sorted(str(x) for x in values)
        )
    label_names = [str(n) for n in label_names]
    if ints:
        outside = [x for x in values if not 0 <= x < len(label_names)]
        to_index = dict(zip(values, values, strict=True))
    else:
        index = {n: i for i, n in enumerate(label_names)}
        outside = [x for x in values if str(x) not in index]
        to_index = {x: index.get(str(x)) for x in values}
    if outside:
        raise PocketsizeError(
            f"{source} has labels {outside[:5]} that are not in the label set {label_names}; "
            "fix the data or pass label_names including them"
        )
    target = ClassLabel(names=label_names)
    out = {}
    for k, v in dd.items():
        v = v.map(lambda r: {"label": to_index[r["label"]]})
        out[k] = v.cast_column("label", target)
    return DatasetDict(out)


def _qa_columns(ds, source: str):
    missing = [c for c in QA_COLUMNS if c not in ds.column_names]
    if "id" in missing:
        ds = ds.add_column("id", [str(i) for i in range(len(ds))])
    if "title" in missing:
        ds = ds.add_column("title", [""] * len(ds))
    return ds.select_columns(list(QA_COLUMNS))


def _token_columns(dd, source: str):
    """id, tokens, ner_tags; string tags become a ClassLabel over every split's tags (O first),
    a ClassLabel sequence (hub NER sets) keeps its names."""
    from datasets import ClassLabel, DatasetDict, Sequence

    from pocketsize.data.conll import tag_names

    out = {}
    feature = next(iter(dd.values())).features["ner_tags"]
    if not isinstance(getattr(feature, "feature", None), ClassLabel):
        names = tag_names([t for split in dd.values() for tags in split["ner_tags"] for t in tags])
        index = {n: i for i, n in enumerate(names)}
        target = Sequence(ClassLabel(names=names))
        dd = DatasetDict(
            {
                k: v.map(lambda r: {"ner_tags": [index[t] for t in r["ner_tags"]]}).cast_column(
                    "ner_tags", target
                )
                for k, v in dd.items()
            }
        )
    for name, split in dd.items():
        pairs = zip(split["tokens"], split["ner_tags"])
        bad = next(((i, t, g) for i, (t, g) in enumerate(pairs) if len(t) != len(g)), None)
        if bad:
            raise PocketsizeError(
                f"{source}: row {bad[0]} of {name} has {len(bad[1])} tokens but {len(bad[2])} "
                "tags; give one tag per token"
            )
        if "id" not in split.column_names:
            split = split.add_column("id", [str(i) for i in range(len(split))])
        out[name] = split.select_columns(["id", "tokens", "ner_tags"])
    return DatasetDict(out)
