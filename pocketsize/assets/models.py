"""Load a model and its tokenizer from a catalogue name, a local directory or a hub id.

Weights load from safetensors only (`use_safetensors=True`: a pickled `pytorch_model.bin` can
run code when unpickled) and remote code stays off unless the caller passes
`trust_remote_code=True`.
"""

from __future__ import annotations

import os

from pocketsize.assets.catalogue import catalogue, get_asset, is_catalogued
from pocketsize.errors import PocketsizeError
from pocketsize.formats.gguf_file import dequantized_dir, gguf_file_of


def resolve_model(ref) -> str:
    """A catalogue name becomes its local directory (fetched on first use); a GGUF file (or a
    directory holding one and no config.json) its dequantized directory, made once in the
    cache (formats/gguf_file.py); a local directory stays; anything else is taken for a hub
    id."""
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str):
        raise PocketsizeError(
            f"model reference must be a name, a directory or a hub id, not {type(ref).__name__}"
        )
    if not os.path.isdir(ref) and is_catalogued(ref):
        from pocketsize.assets.cache import fetch

        ref = str(fetch(get_asset(ref, kind="model").name))
    gguf = gguf_file_of(ref)
    if gguf is not None:
        from pocketsize.assets.cache import cache_dir

        return str(dequantized_dir(gguf, cache_dir()))
    if os.path.isdir(ref):
        return ref
    if os.path.exists(ref):
        raise PocketsizeError(
            f"{ref} is a file; pass the model's directory (config.json, model.safetensors, tokenizer)"
        )
    return ref


def _hub_error(ref: str, err: Exception) -> PocketsizeError:
    known = ", ".join(a.name for a in catalogue("model"))
    return PocketsizeError(
        f"could not load {ref!r}: no local directory of that name and the Hugging Face hub is "
        f"unreachable or does not have it ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
        f"pass a local save_pretrained directory or a catalogue model ({known})"
    )


def _head_suffix(auto_class) -> str:
    # AutoModelForSequenceClassification -> "ForSequenceClassification"
    return auto_class.__name__.replace("AutoModel", "", 1)


def load_pretrained(
    ref,
    auto_class,
    num_labels: int | None = None,
    labels: list[str] | None = None,
    trust_remote_code: bool = False,
    **kwargs,
):
    """A transformers model with the head of `auto_class` (a task adapter's Auto class).

    A base encoder (no such head yet) gets a fresh head; a classification head's label names
    come from `labels` (e.g. the dataset's ClassLabel names), else LABEL_0.. for
    `num_labels`. A model that already has a head keeps it; a different label count is an error
    unless `ignore_mismatched_sizes=True` asks for a fresh head.
    """
    import torch

    if isinstance(ref, torch.nn.Module):
        return ref
    from pocketsize.formats.checkpoint import check_weights
    from pocketsize.formats.hf_load import load_config
    from pocketsize.formats.model_dir import load_transformers

    path = resolve_model(ref)
    local = os.path.isdir(path)
    if local:
        check_weights(path)
    try:
        config = load_config(path, trust_remote_code)
    except ValueError as e:
        raise PocketsizeError(f"cannot read the config of {ref}: {str(e).splitlines()[0]}") from e
    except OSError as e:
        if local:
            raise PocketsizeError(
                f"{path} is not a model directory (no config.json); pass a save_pretrained directory"
            ) from e
        raise _hub_error(path, e) from e

    _fit_head(config, ref, auto_class, num_labels, labels, kwargs)
    try:
        return load_transformers(auto_class, path, trust_remote_code, config=config, **kwargs)
    except OSError as e:  # a directory's is one line already: this is the hub's
        raise _hub_error(path, e) from e


def _fit_head(config, ref, auto_class, num_labels, labels, kwargs) -> None:
    """Set the config's labels for a fresh head (a base encoder, or ignore_mismatched_sizes);
    a model whose head has another label count is refused."""
    if labels is not None:
        labels = [str(x) for x in labels]
        if num_labels is not None and num_labels != len(labels):
            raise PocketsizeError(
                f"num_labels={num_labels} but {len(labels)} label names were given; pass one of them"
            )
        num_labels = len(labels)
    has_head = any(a.endswith(_head_suffix(auto_class)) for a in (config.architectures or []))
    fresh_head = not has_head or kwargs.get("ignore_mismatched_sizes", False)
    if num_labels is not None:
        if not fresh_head and num_labels != config.num_labels:
            raise PocketsizeError(
                f"{ref} has a {config.num_labels}-label classification head but {num_labels} labels "
                "were asked for; pass a base encoder, a model trained on these labels, or "
                "ignore_mismatched_sizes=True for a fresh head"
            )
        if fresh_head:
            names = labels or [f"LABEL_{i}" for i in range(num_labels)]
            config.num_labels = num_labels
            config.id2label = dict(enumerate(names))
            config.label2id = {n: i for i, n in enumerate(names)}


def load_tokenizer(ref, trust_remote_code: bool = False, **kwargs):
    """The tokenizer saved with a model: catalogue name, local directory, hub id or a model
    object (its `name_or_path`)."""
    from pocketsize.formats.hf_load import load_tokenizer as load

    if hasattr(ref, "name_or_path") and not isinstance(ref, (str, os.PathLike)):
        ref = ref.name_or_path
    from pocketsize.formats.side_files import has_tokenizer

    path = resolve_model(ref)
    if os.path.isdir(path) and not has_tokenizer(path):
        raise PocketsizeError(
            f"{path} has no tokenizer files (tokenizer.json, or tokenizer_config.json and its "
            "vocabulary); save the model's tokenizer beside it (tokenizer.save_pretrained(dir))"
        )
    try:
        return load(path, trust_remote_code, **kwargs)
    except (OSError, ValueError) as e:
        if os.path.isdir(path):
            raise PocketsizeError(
                f"{path} holds no tokenizer ({str(e).splitlines()[0][:120]}); save it next to the model "
                "with tokenizer.save_pretrained(dir)"
            ) from e
        raise _hub_error(path, e) from e
