"""A saved PyTorch model directory, whichever kind: a transformers `save_pretrained` directory
or a pocketsize module directory. Every stage loads saved models through `load_model_dir`, so
each gets the same rules: safetensors only (a pickled `pytorch_model.bin` can run code when
unpickled), remote code off, the checks of formats/checkpoint.py, the [UNK] clamp of a
vocabulary-trimmed model installed."""

from __future__ import annotations

import json
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats.checkpoint import check_finite, check_weights
from pocketsize.formats.hf_load import load_model
from pocketsize.formats.module_dir import is_module_dir, load_module_dir
from pocketsize.formats.vocab_clamp import apply_vocab_clamp

TORCH_WEIGHT_PATTERNS = ("model*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin")


def read_config(directory) -> dict:
    config = Path(directory) / "config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def positions_of(config: dict) -> int | None:
    """The token positions a model has (RoBERTa-likes keep two for the padding offset); None
    where the config states no limit (XLNet)."""
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    if not positions or positions <= 0:
        return None
    return positions - (2 if config.get("model_type") in ("roberta", "xlm-roberta") else 0)


def max_length_of(config: dict, tokenizer=None, requested: int | None = None) -> int:
    """The most tokens a model reads: its positions, the tokenizer's own limit, and what was
    asked for (default 512)."""
    limits = [requested or 512]
    if positions_of(config):
        limits.append(positions_of(config))
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max and model_max < 100_000:
        limits.append(model_max)
    return min(limits)


def is_torch_dir(path) -> bool:
    """A directory holding PyTorch weights and no ONNX graph."""
    path = Path(path)
    return (
        path.is_dir()
        and any(any(path.glob(p)) for p in TORCH_WEIGHT_PATTERNS)
        and not any(path.glob("*.onnx"))
    )


def load_model_dir(
    path,
    auto_class=None,
    trust_module_code: bool = False,
    trust_remote_code: bool = False,
    **kwargs,
):
    """The model saved in `path` (eval mode): a module directory by its recorded class, a
    transformers directory with `auto_class` (e.g. AutoModelForSequenceClassification)."""
    path = Path(path)
    if is_module_dir(path):
        return load_module_dir(path, trust_module_code)
    if auto_class is None:
        raise PocketsizeError(
            f"{path} is a transformers directory; say which head to load it with (task=...)"
        )
    check_weights(path)
    return load_transformers(auto_class, path, trust_remote_code, **kwargs)


def load_transformers(auto_class, ref, trust_remote_code: bool = False, **kwargs):
    """The one way pocketsize loads a transformers model, from a directory or a hub id:
    safetensors only, remote code only when trusted, eval mode, finite weights, and the [UNK]
    clamp of a vocabulary-trimmed model. A hub id's OSError is the caller's to explain (it
    knows the hub); a directory's is one line here."""
    try:
        model = load_model(auto_class, ref, trust_remote_code, use_safetensors=True, **kwargs)
    except ValueError as e:
        raise PocketsizeError(
            f"{ref} cannot be loaded as {auto_class.__name__}: {str(e).splitlines()[0]}"
        ) from e
    except OSError as e:
        if not Path(str(ref)).is_dir():
            raise
        raise PocketsizeError(f"cannot load the model in {ref}: {str(e).splitlines()[0]}") from e
    check_finite(model, ref)
    return apply_vocab_clamp(model.eval())
