"""What finetune and distill load: the data, the models and tokenizers, and the label check."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from pocketsize.errors import PocketsizeError


def load_data(data):
    """A DatasetDict from a DatasetDict, a catalogue name, a hub id or local files."""
    if hasattr(data, "keys") and hasattr(data, "column_names"):
        return data
    if isinstance(data, (str, os.PathLike)):
        from pocketsize.data import load_dataset

        return load_dataset(str(data))
    raise PocketsizeError(
        f"data must be a datasets.DatasetDict or a dataset name, not {type(data).__name__}"
    )


def require_split(data, name: str):
    if name not in data:
        raise PocketsizeError(
            f"the dataset has no {name!r} split (it has {sorted(data)}); provide one"
        )
    return data[name]


def _default_label_names(config) -> bool:
    return all(str(v) == f"LABEL_{k}" for k, v in (config.id2label or {}).items())


def check_labels(model, names: list[str] | None, who: str) -> None:
    """Refuse a classifier whose label set differs from the dataset's."""
    config = getattr(model, "config", None)
    if names is None or config is None or not hasattr(config, "num_labels"):
        return
    if config.num_labels != len(names):
        raise PocketsizeError(
            f"the {who} predicts {config.num_labels} labels but the dataset has {len(names)} "
            f"({', '.join(names)}); fine-tune the {who} on this dataset first (pocketsize finetune)"
        )
    if not _default_label_names(config):
        model_names = [str(config.id2label[i]) for i in range(config.num_labels)]
        if model_names != names:
            raise PocketsizeError(
                f"the {who}'s labels {model_names} differ from the dataset's {names}; "
                "use a model fine-tuned on this dataset or relabel the dataset"
            )


def load_model(
    ref,
    task,
    labels: list[str] | None = None,
    trust_remote_code: bool = False,
    trust_module_code: bool = False,
):
    """A model from an in-memory module (or, as a teacher, any callable from a batch to
    logits), a pocketsize module dir, a catalogue name, a directory or a hub id.

    `labels` (classification) gives a base encoder a fresh head with these label names. The
    trust keywords let a directory's own code run (transformers' auto_map; a module
    directory's class from outside pocketsize); off, such a model is refused in one line.
    """
    if isinstance(ref, nn.Module) or (callable(ref) and not isinstance(ref, (str, os.PathLike))):
        return ref
    try:
        return task.load_model(
            str(ref),
            labels=labels,
            trust_module_code=trust_module_code,
            trust_remote_code=trust_remote_code,
        )
    except PocketsizeError:
        raise
    except (OSError, ValueError) as e:
        raise PocketsizeError(
            f"cannot load model {ref!r}: {str(e).splitlines()[0]}; give a model directory, "
            "a catalogue name or a hub id"
        ) from e


def load_tokenizer(ref, model=None, trust_remote_code: bool = False):
    """The tokenizer for `ref` (path/name) or for an in-memory model saved from a directory."""
    if ref is not None and not isinstance(ref, (str, os.PathLike)):
        return ref  # already a tokenizer
    if ref is None and model is not None:
        ref = getattr(model, "name_or_path", None) or None
        if ref is None or not Path(str(ref)).exists():
            raise PocketsizeError(
                "an in-memory model needs its tokenizer: pass tokenizer=... (or a model directory)"
            )
    from pocketsize.formats.module_dir import is_module_dir

    if is_module_dir(ref):
        from pocketsize.formats.hf_load import load_tokenizer as load

        return load(ref, trust_remote_code)
    from pocketsize.assets import load_tokenizer as assets_load_tokenizer

    try:
        return assets_load_tokenizer(str(ref), trust_remote_code)
    except PocketsizeError:
        raise
    except (OSError, ValueError) as e:
        raise PocketsizeError(
            f"cannot load a tokenizer for {ref!r}: {str(e).splitlines()[0]}; "
            "pass tokenizer=... or a directory with tokenizer files"
        ) from e


def describe(ref) -> str:
    if isinstance(ref, nn.Module) or callable(ref) and not isinstance(ref, (str, os.PathLike)):
        return f"<in-memory {type(ref).__name__}>"
    return str(ref)


def saved_model_dir(ref):
    """`ref` as a directory on disk whose record can say the task (tasks.resolve_task), or None
    for an in-memory model, a catalogue name or a hub id (their task comes from the data)."""
    if isinstance(ref, (str, os.PathLike)) and Path(ref).is_dir():
        return Path(ref)
    return None
