"""What every loader checks of a saved model directory, before and after transformers loads it,
so that a broken checkpoint is one clear error wherever it is used: weights that are pickles or
not valid safetensors (truncated, random bytes), a model or a tokenizer that needs its own code,
weights that hold NaN or infinity, and a tokenizer with more tokens than the model has embeddings."""

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


# How every refusal of a checkpoint's own code ends: the Python keyword and the CLI flag.
TRUST_HINT = (
    "pocketsize runs a model directory's code only when told: pass trust_remote_code=True "
    "(CLI: --trust-remote-code) if you trust that code"
)


def _read_json(file: Path) -> dict:
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise PocketsizeError(f"{file} is not valid JSON ({e}); save the model again") from e
    return data if isinstance(data, dict) else {}


def _code_source(ref: str) -> str:
    """Where an auto_map entry's class lives: "Class in module.py" beside the model, or "Class
    from the hub repository owner/name" (transformers' "owner/name--module.Class" form)."""
    repo, sep, local = ref.rpartition("--")
    module, _, name = local.rpartition(".")
    if sep:
        return f"{name} from the hub repository {repo}"
    return f"{name} in {module}.py" if module else name


def check_own_code(path, trust_remote_code: bool = False) -> None:
    """Refuse a model whose config names its own code (auto_map) for an architecture
    transformers does not know, unless the caller trusts it. (For an architecture it knows,
    trust_remote_code=False makes transformers use its own class and run nothing.)"""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if trust_remote_code or not Path(path).is_dir():
        return
    data = _read_json(Path(path) / "config.json")
    model_type = data.get("model_type")
    auto_map = data.get("auto_map")
    if auto_map and model_type not in CONFIG_MAPPING:
        refs = auto_map.values() if isinstance(auto_map, dict) else auto_map
        first = next((r for r in refs if isinstance(r, str)), None)
        where = f"{_code_source(first)}, " if first else ""
        raise PocketsizeError(
            f"{path} is a custom architecture ({model_type!r}) that needs the code shipped with "
            f"it ({where}config.json auto_map); {TRUST_HINT}, or load the model yourself and "
            "pass the model object"
        )


def _tokenizer_refs(config: dict) -> list:
    """The [slow, fast] classes a config's auto_map names for AutoTokenizer (older tokenizer
    configs give the pair as the whole auto_map)."""
    auto_map = config.get("auto_map")
    refs = auto_map.get("AutoTokenizer") if isinstance(auto_map, dict) else auto_map
    if isinstance(refs, str):
        refs = [refs]
    return [r if isinstance(r, str) else None for r in refs or []]


def check_tokenizer_code(path, trust_remote_code: bool = False) -> None:
    """Refuse a tokenizer whose configs name its own code (auto_map AutoTokenizer) for a class
    transformers does not have, unless the caller trusts it: left to transformers, such a
    directory makes it ask "Do you wish to run the custom code? [y/N]" on stdin, where a piped
    "y" runs the file. This reads the files as AutoTokenizer does: tokenizer_config.json, and
    config.json where the tokenizer config names no class."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    if trust_remote_code or not Path(path).is_dir():
        return
    tok_config = _read_json(Path(path) / "tokenizer_config.json")
    name, refs = tok_config.get("tokenizer_class"), _tokenizer_refs(tok_config)
    named_in, known = "tokenizer_config.json", False
    if name is None:  # AutoTokenizer then reads config.json, and knows a known model's tokenizer
        config = _read_json(Path(path) / "config.json")
        name, known = config.get("tokenizer_class"), config.get("model_type") in CONFIG_MAPPING
        if _tokenizer_refs(config):
            refs, named_in = _tokenizer_refs(config), "config.json"
    if name and (tokenizer_class_from_name(name) or tokenizer_class_from_name(name + "Fast")):
        known = True
    if known or not any(refs):
        return
    ref = refs[1] if len(refs) > 1 and refs[1] else next(r for r in refs if r)
    raise PocketsizeError(
        f"the tokenizer of {path} needs its own code ({_code_source(ref)}, named by {named_in} "
        f"auto_map); {TRUST_HINT}"
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
