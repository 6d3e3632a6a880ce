"""Datasets from local files (CSV, TSV, JSON, JSON Lines, Parquet, SQuAD JSON, CoNLL,
save_to_disk directories) and from the Hugging Face hub."""

from __future__ import annotations

import json
from pathlib import Path

from pocketsize.errors import PocketsizeError

FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".conll")
_SPLIT_STEMS = ("train", "validation", "valid", "val", "dev", "test")


def looks_like_path(ref: str) -> bool:
    return ref.lower().endswith(FILE_SUFFIXES) or ref.startswith((".", "/", "~"))


def read_local(ref) -> dict:
    """{split name: datasets.Dataset} from a file, a {split: file} dict, or a directory."""
    from datasets import load_from_disk

    if isinstance(ref, dict):
        return {str(split): _read_file(Path(p)) for split, p in ref.items()}
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            return dict(load_from_disk(str(path)))
        files = {
            p.stem: p
            for p in sorted(path.iterdir())
            if p.suffix in FILE_SUFFIXES and p.stem in _SPLIT_STEMS
        }
        if not files:
            raise PocketsizeError(
                f"{path} holds no dataset: expected train/validation/test files ({', '.join(FILE_SUFFIXES)}) "
                "or a DatasetDict.save_to_disk directory"
            )
        return {name: _read_file(p) for name, p in files.items()}
    if not path.exists():
        raise PocketsizeError(
            f"dataset file {path} does not exist; check the path (or pass a catalogue name or hub id)"
        )
    data = _read_file(path)
    return {"train": data}


def _read_file(path: Path):
    try:
        return _read_records(path)
    except UnicodeDecodeError as e:
        raise PocketsizeError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 (e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > utf8{path.suffix})"
        ) from e


def _read_records(path: Path):
    from datasets import Dataset

    if not path.is_file():
        raise PocketsizeError(f"dataset file {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise PocketsizeError(
            f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}"
            + _conll_hint(path)
        )
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, suffix)
    if suffix == ".parquet":
        return Dataset.from_parquet(str(path))
    if suffix == ".conll":  # token classification: tokens and their IOB2 tags, as strings
        from pocketsize.data.conll import read_conll, sentences_dataset

        return sentences_dataset(read_conll(path))
    return _read_json_records(path, suffix)


def _read_json_records(path: Path, suffix: str):
    """A JSON list of objects, JSON lines, or SQuAD JSON."""
    from datasets import Dataset

    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".jsonl" or (suffix == ".json" and not text.lstrip().startswith(("[", "{"))):
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as e:
        raise PocketsizeError(f"{path} is not valid JSON ({e}); fix the file") from e
    if isinstance(records, dict) and _is_squad(records):
        from pocketsize.data.squad import squad_to_dataset

        return squad_to_dataset(records, source=str(path))
    if isinstance(records, dict) and isinstance(records.get("data"), list):
        records = records["data"]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise PocketsizeError(f"{path} must hold a list of objects (one per example) or SQuAD JSON")
    if not records:
        raise PocketsizeError(f"{path} is empty (no rows); pass a file with examples")
    return Dataset.from_list(records)


def _read_delimited(path: Path, suffix: str):
    """A CSV or TSV file whose first line is the header, every row with its columns."""
    import pandas as pd
    from datasets import Dataset

    kind, sep = suffix[1:].upper(), "\t" if suffix == ".tsv" else ","
    conll = _conll_hint(path) if suffix == ".tsv" else ""
    if conll:  # read as a table, each token would become an example and its tag a label
        raise PocketsizeError(f"{path} is not a table with a header{conll}")
    _check_columns(path, sep, kind)
    try:
        # every cell as a string, and no "NA"/"None" -> NaN guessing: texts stay as written
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as e:
        raise PocketsizeError(
            f"{path} is not a well-formed {kind} file ({str(e).strip().splitlines()[0]}); quote "
            "the fields that hold the separator, or give every row the header's columns"
        ) from e
    except pd.errors.EmptyDataError as e:
        raise PocketsizeError(
            f"{path} is empty (no header, no rows); pass a file with examples"
        ) from e
    return Dataset.from_pandas(frame, preserve_index=False)


def _check_columns(path: Path, sep: str, kind: str) -> None:
    """Refuse a row with another number of columns than the header, naming its line: pandas
    refuses only longer rows and fills shorter ones with "", so a header-less file's second
    line would be read as one example under the first line's "column names"."""
    import csv

    limit = csv.field_size_limit(2**31 - 1)  # a long text is no error here
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter=sep)  # pandas' quoting: "..." with "" inside
            header, start = None, 1  # the header: the first line that is not blank
            for row in rows:
                if row and header is None:
                    header, header_line = row, start
                elif row and len(row) != len(header):
                    _refuse_ragged(path, kind, (start, len(row)), (header_line, len(header)))
                start = rows.line_num + 1  # where the next row starts
    except csv.Error:
        return  # what the csv module cannot read, pandas reads or refuses itself
    finally:
        csv.field_size_limit(limit)


def _refuse_ragged(path: Path, kind: str, row: tuple, header: tuple) -> None:
    (line, width), (header_line, header_width) = row, header
    raise PocketsizeError(
        f"{path} is not a well-formed {kind} file: line {line} has {width} column"
        f"{'s' * (width != 1)} but the header (line {header_line}) has {header_width}; quote "
        "the fields that hold the separator, or give every row the header's columns (the "
        "first line is the header: add one if the file has none)"
    )


def _conll_hint(path: Path) -> str:
    """How to read a file that looks like CoNLL: only a .conll file goes to the CoNLL reader."""
    from pocketsize.data.conll import looks_like_conll

    if not looks_like_conll(path):
        return ""
    return (
        "; it looks like CoNLL data (token<TAB>tag lines, a blank line between sentences): "
        f"name it .conll (mv {path.name} {path.stem}.conll) to read it with pocketsize's CoNLL "
        "reader, as token classification (NER) data"
    )


def _is_squad(obj: dict) -> bool:
    data = obj.get("data")
    return (
        isinstance(data, list)
        and bool(data)
        and isinstance(data[0], dict)
        and "paragraphs" in data[0]
    )


def read_hub(ref: str, config: str | None = None, trust_remote_code: bool = False) -> dict:
    import datasets

    try:
        kw = {"trust_remote_code": True} if trust_remote_code else {}
        return dict(datasets.load_dataset(ref, config, **kw))
    except (
        Exception
    ) as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        from pocketsize.assets.catalogue import catalogue

        known = ", ".join(a.name for a in catalogue("dataset"))
        first = (str(e).splitlines() or [""])[0][:160]
        raise PocketsizeError(
            f"could not load dataset {ref!r}: no local file of that name and the Hugging Face hub is "
            f"unreachable or does not have it ({type(e).__name__}: {first}); pass a local CSV/JSON/"
            f"JSONL file or a catalogue dataset ({known})"
        ) from e
