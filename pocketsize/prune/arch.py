"""Which architectures the structured pruner knows, and where their heads and FFN layers live.

All supported models share BERT's module layout (`base_model.encoder.layer[i]` with
`attention.self.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
`output.dense`) and implement transformers' `prune_heads`, so one code path serves them all.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError

# model_type values whose layer layout matches BERT's (checked again per layer at run time).
SUPPORTED_ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie")


def check_architecture(model) -> None:
    """Refuse a model the structured pruner does not know, naming it and the supported ones."""
    model_type = getattr(model.config, "model_type", type(model).__name__)
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise PocketsizeError(
            f"structured pruning (heads, FFN) does not support architecture {model_type!r}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)} (magnitude sparsity and "
            "vocabulary trimming work on any model with a fast tokenizer)"
        )
    layer = encoder_layers(model)[0]
    for path in (
        "attention.self.query",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ):
        obj = layer
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            raise PocketsizeError(
                f"{model_type} model has no {path} in its encoder layers, so its layout is not "
                f"BERT's; supported architectures: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )


def encoder_layers(model):
    base = model.base_model
    encoder = getattr(base, "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        model_type = getattr(model.config, "model_type", type(model).__name__)
        raise PocketsizeError(
            f"structured pruning does not support architecture {model_type!r} (no encoder.layer); "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return list(encoder.layer)


def current_heads(model, layer_index: int) -> list[int]:
    """Original indices of the heads still present in a layer (after any earlier pruning)."""
    n_heads = model.config.num_attention_heads
    pruned = {int(k): v for k, v in (model.config.pruned_heads or {}).items()}
    gone = {int(h) for h in pruned.get(layer_index, [])}
    return [h for h in range(n_heads) if h not in gone]


def head_size(model) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
