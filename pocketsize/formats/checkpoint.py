"""What every loader checks of a saved model directory, before and after transformers loads it,
so that a broken checkpoint is one clear error wherever it is used: weights that are pickles or
not valid safetensors (truncated, random bytes), a model that needs its own code, weights that
hold NaN or infinity, and a tokenizer with more tokens than the model has embeddings."""

from __future__ import annotations

import json
from pathlib import Path

from pocketsize.errors import PocketsizeError


def check_weights(path) -> None:
    """Refuse pickled weights and safetensors files that cannot be read."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    files = sorted(path.glob("*.safetensors"))
    if not files and not any(path.glob("pytorch_model*.bin")):
        raise PocketsizeError(
            f"{path} has no model weights (model.safetensors); pass a directory written by "
            "save_pretrained"
        )
    if not files:
        raise PocketsizeError(
            f"{path} has no safetensors weights and pocketsize never loads pickled weights "
            "(pytorch_model.bin can run code when unpickled); convert it once where you trust "
            "it: AutoModel...from_pretrained(dir).save_pretrained(dir, safe_serialization=True)"
        )
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError) as e:
            raise PocketsizeError(
                f"{file} is not a readable safetensors file ({str(e).splitlines()[0]}); it may "
                "be truncated or corrupted: save the model again (save_pretrained) or copy it "
                "anew"
            ) from e


def check_own_code(path, trust_remote_code: bool = False) -> None:
    """Refuse a model whose config names its own code (auto_map) for an architecture
    transformers does not know, unless the caller trusts it."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = Path(path) / "config.json"
    if trust_remote_code or not config.is_file():
        return
    try:
        data = json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise PocketsizeError(f"{config} is not valid JSON ({e}); save the model again") from e
    model_type = data.get("model_type")
    if data.get("auto_map") and model_type not in CONFIG_MAPPING:
        raise PocketsizeError(
            f"{path} is a custom architecture ({model_type!r}) that needs the code shipped with "
            "it (config.json auto_map), and pocketsize does not run a checkpoint's code unless "
            "told: in Python pass trust_remote_code=True if you trust it, or load the model "
            "yourself and pass the model object"
        )


def check_finite(model, where) -> None:
    """Refuse weights with NaN or infinite values (a diverged run, a bad conversion)."""
    import torch

    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise PocketsizeError(
            f"the weights of {where} hold NaN or infinite values ({bad[0]}{more}); the "
            "checkpoint is broken (a diverged run?): use an earlier checkpoint or train again"
        )


def check_tokenizer_fits(model_or_config, tokenizer, where) -> None:
    """Refuse a tokenizer that yields ids the model has no embedding for.

    A vocabulary-trimmed model (pocketsize.prune) keeps its full tokenizer on purpose: its
    loaders clamp the dropped ids to [UNK], so its tokenizer must be the original size."""
    config = getattr(model_or_config, "config", model_or_config)
    config = config if isinstance(config, dict) else config.to_dict()
    trim = config.get("pocketsize_vocab_trim")
    if trim:
        original = trim.get("original_vocab_size", len(tokenizer))
        if len(tokenizer) != original:
            raise PocketsizeError(
                f"{where}: its tokenizer has {len(tokenizer)} tokens but the model was trimmed "
                f"from {original}; use the tokenizer pocketsize.prune saved"
            )
        return
    vocab = config.get("vocab_size")
    embeddings = getattr(model_or_config, "get_input_embeddings", None)
    if embeddings is not None:
        vocab = getattr(embeddings(), "num_embeddings", vocab)
    if vocab and len(tokenizer) > vocab:
        raise PocketsizeError(
            f"{where}: its tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
            f"{vocab}; save the tokenizer that belongs to this model beside it"
        )
