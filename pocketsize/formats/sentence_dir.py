"""A sentence-transformers directory: how its token embeddings become one sentence embedding.

sentence-transformers keeps the pooling beside the weights: `modules.json` lists the modules in
order (the transformer, a Pooling module whose `config.json` names the mode, often Normalize),
each in its own folder. pocketsize reads that list, runs the modules it knows (pooling by mean,
CLS token or max; normalization) and names any other module instead of skipping it, since a
skipped Dense layer would change every embedding. It writes the same files, so every directory
it writes loads with `SentenceTransformer(dir)` as well as with pocketsize.

Read here, not through sentence-transformers: reading three small JSON files needs no library
(and no import of its model code); writing them is how sentence-transformers itself finds them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pocketsize.errors import PocketsizeError

MODULES = "modules.json"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
# sentence-transformers' module types, by the name their class has in modules.json
_TRANSFORMER = "Transformer"
_POOLING = "Pooling"
_NORMALIZE = "Normalize"
# 1_Pooling/config.json's switches -> the mode they select
_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
POOLING_MODES = ("mean", "cls", "max")
# the files of a sentence-transformers directory besides the model's own (copied with it)
SIDE_FILES = (MODULES, "sentence_bert_config.json", "config_sentence_transformers.json")
SIDE_DIRS = (POOLING_DIR, NORMALIZE_DIR)


@dataclass(frozen=True)
class Pooling:
    """How token embeddings become a sentence embedding."""

    mode: str = "mean"
    normalize: bool = True

    def __post_init__(self):
        if self.mode not in POOLING_MODES:
            raise PocketsizeError(
                f"pooling mode {self.mode!r} is not one pocketsize runs; use one of "
                f"{', '.join(POOLING_MODES)}"
            )

    def as_dict(self) -> dict:
        return asdict(self)


def is_sentence_dir(directory) -> bool:
    return (Path(directory) / MODULES).is_file()


def read_pooling(directory) -> Pooling | None:
    """The pooling a sentence-transformers directory declares (None: not such a directory).

    A Normalize module listed in modules.json normalizes whether or not its (empty) folder was
    shipped; a module pocketsize cannot run is refused by name."""
    directory = Path(directory)
    if not is_sentence_dir(directory):
        return None
    modules = _read_json(directory / MODULES, directory)
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    unknown = [
        f"{m.get('type')} ({m.get('path') or '.'})"
        for m, kind in zip(modules, kinds)
        if kind not in (_TRANSFORMER, _POOLING, _NORMALIZE)
    ]
    if unknown:
        raise PocketsizeError(
            f"{directory / MODULES} lists {', '.join(unknown)}, which pocketsize cannot run "
            "(it runs a transformer, Pooling and Normalize); export that model with "
            "sentence-transformers itself"
        )
    if _POOLING not in kinds:
        raise PocketsizeError(
            f"{directory / MODULES} lists no Pooling module, so the sentence embedding is not "
            "defined; add one (sentence_transformers.models.Pooling)"
        )
    folder = modules[kinds.index(_POOLING)].get("path") or POOLING_DIR
    mode = _pooling_mode(_read_json(directory / folder / "config.json", directory))
    return Pooling(mode=mode, normalize=_NORMALIZE in kinds)


def _pooling_mode(config: dict) -> str:
    if "pooling_mode" in config:  # sentence-transformers >= 5 writes the name itself
        return str(config["pooling_mode"])
    chosen = [mode for key, mode in _MODES.items() if config.get(key)]
    if len(chosen) != 1:
        raise PocketsizeError(
            f"the Pooling module's config selects {chosen or 'no mode'}; pocketsize runs "
            f"exactly one of {', '.join(POOLING_MODES)}"
        )
    return chosen[0]


def _read_json(path: Path, directory: Path):
    if not path.is_file():
        raise PocketsizeError(
            f"{directory} is a sentence-transformers directory whose {path.name} is missing "
            f"({path.relative_to(directory)}); copy the model's whole directory"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PocketsizeError(f"cannot read {path}: {e}; copy the file again") from None


def write_sentence_files(directory, pooling: Pooling, width: int, max_length: int) -> None:
    """modules.json, 1_Pooling/config.json, 2_Normalize/ (when normalizing) and
    sentence_bert_config.json: what `SentenceTransformer(directory)` reads."""
    directory = Path(directory)
    prefix = "sentence_transformers.models."
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": prefix + _TRANSFORMER},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": prefix + _POOLING},
    ]
    if pooling.normalize:
        modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR, "type": prefix + _NORMALIZE})
        (directory / NORMALIZE_DIR).mkdir(exist_ok=True)
    (directory / MODULES).write_text(json.dumps(modules, indent=2))
    (directory / POOLING_DIR).mkdir(exist_ok=True)
    config = {"word_embedding_dimension": int(width)}
    config.update({key: mode == pooling.mode for key, mode in _MODES.items()})
    (directory / POOLING_DIR / "config.json").write_text(json.dumps(config, indent=2))
    settings = {"max_seq_length": int(max_length), "do_lower_case": False}
    (directory / "sentence_bert_config.json").write_text(json.dumps(settings, indent=2))
