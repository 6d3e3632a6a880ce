"""One record per stage output: `stage.json`, one schema for every verb.

    {"schema": 1, "stage": "prune", ...what the stage did, top level...,
     "recipe": {...}}   # added by a recipe run: fingerprint, config, seed, inputs, time

Every verb writes its output through `stage_output`, which starts the record inside the
atomic output directory; the verb adds its fields with `update_record` (read-modify-write, so
the ONNX Runtime format and transformers.js layouts add theirs the same way), and a recipe run
extends the finished record with its own `recipe` section rather than replacing it.

Directories written before this schema held up to four files (`pruning.json`,
`pocketsize.json`, `parity.json`, and a `stage.json` that a recipe run had overwritten with its
own record). `read_record` still reads them, merged into this shape; that reading goes in the
release after 0.2.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pocketsize.fsutil import atomic_dir, write_json

RECORD = "stage.json"
SCHEMA = 1
# the files of directories written before the schema; parity.json becomes the "parity" part
_LEGACY = {"pruning.json": None, "pocketsize.json": None, "parity.json": "parity"}
# what a recipe's old stage.json held besides the stage's own record (under "metrics")
_OLD_RECIPE_KEYS = ("fingerprint", "config", "seed", "data", "inputs", "wall_time_s", "finished")


@contextlib.contextmanager
def stage_output(out: str | os.PathLike, stage: str, overwrite: bool = False) -> Iterator[Path]:
    """`fsutil.atomic_dir` with the stage's record begun inside: the directory, with its
    `stage.json`, appears in one rename when the block succeeds, and not at all otherwise."""
    with atomic_dir(out, overwrite) as tmp:
        write_json(tmp / RECORD, {"schema": SCHEMA, "stage": stage})
        yield tmp


def read_record(directory: str | os.PathLike | None) -> dict:
    """The directory's record ({} when it has none); an older directory's files merged."""
    if directory is None:
        return {}
    directory = Path(directory)
    record = _read_json(directory / RECORD)
    if record.get("schema") == SCHEMA:
        return record
    return _merge_legacy(directory, record)


def update_record(directory: str | os.PathLike, **fields) -> dict:
    """Merge `fields` into the directory's record and return it."""
    record = read_record(directory)
    record.setdefault("schema", SCHEMA)
    record.update(fields)
    write_json(Path(directory) / RECORD, record)
    return record


# where the weights came from (formats/gguf_file.py): carried into every model made from the
# same weights (export, quantize), so a shipped graph still says it was a GGUF file
CARRIED = ("dequantized_from",)


def carried(directory: str | os.PathLike | None) -> dict:
    """The CARRIED facts of a model directory's record."""
    record = read_record(directory) if directory is not None else {}
    return {k: record[k] for k in CARRIED if k in record}


def inherited(record: dict) -> dict:
    """What a stage made from another stage's output keeps of that output's record: the facts
    about the model (task, model type, ...), not the other stage's own parts."""
    own = ("schema", "stage", "parity", "recipe", "mobile", "transformers_js")
    return {k: v for k, v in record.items() if k not in own}


def _merge_legacy(directory: Path, old_stage: dict) -> dict:
    merged: dict = {}
    if "fingerprint" in old_stage:  # a recipe's record: the stage's own was under "metrics"
        merged.update((old_stage.get("metrics") or {}).get("stage") or {})
        merged["recipe"] = {k: old_stage[k] for k in _OLD_RECIPE_KEYS if k in old_stage}
    else:
        merged.update(old_stage)
    for name, part in _LEGACY.items():
        found = _read_json(directory / name)
        if found and part:
            merged[part] = found
        elif found:
            merged.update(found)
    return merged


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return found if isinstance(found, dict) else {}
