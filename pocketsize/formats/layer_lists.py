"""Keep some of a model's transformer layers: one rule for distillation's truncated students and
for depth pruning, so that what either writes still loads with the Auto classes and generates.

Dropping layers from the module list is not enough on today's decoders: each attention module
carries its `layer_idx` (the slot it reads and writes in the key/value cache, which transformers
sizes from `num_hidden_layers`), and configs hold per-layer lists (Qwen's `layer_types`,
SmolLM3's `no_rope_layers`) that `from_pretrained` checks against the depth. BERT-layout configs
record removed heads per layer index (`pruned_heads`). All three are renumbered here.

Some architectures decide what a layer computes from its position when they load (ModernBERT:
every n-th layer attends globally, the rest locally, and layer 0 has no attention norm). A
kept layer must land on a position of its own kind, or the saved model would compute something
else than the one in memory: POSITION_RULES refuses such selections.
"""

from __future__ import annotations

import re

from pocketsize.errors import PocketsizeError

# config attributes that hold one entry per layer
PER_LAYER_LISTS = ("layer_types", "no_rope_layers")


def layer_list(model):
    """(name, ModuleList) of the model's transformer layers (bert.encoder.layer,
    distilbert.transformer.layer, model.layers, transformer.h)."""
    from torch import nn

    n = getattr(model.config, "num_hidden_layers", None)
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) == n and re.search(r"(layer|layers|h)$", name)
    ]
    if not found:
        raise PocketsizeError(
            f"cannot find the transformer layers of {type(model).__name__} (no list of "
            f"{n} layers); keeping or dropping layers supports encoders and decoders with one "
            "layer stack (use a config or bilstm student instead)"
        )
    return found[0]


def keep_layers(model, keep: list[int]) -> None:
    """Keep the layers at `keep` (indices into the current stack, in order), in place."""
    from torch import nn

    name, old = layer_list(model)
    depth = len(old)
    bad = [i for i in keep if not 0 <= i < depth]
    if bad:
        raise PocketsizeError(
            f"layer(s) {bad} do not exist: the model has {depth} layers (0..{depth - 1})"
        )
    if len(set(keep)) != len(keep) or not keep:
        raise PocketsizeError(f"keep each layer at most once and at least one layer, got {keep}")
    rule = POSITION_RULES.get(getattr(model.config, "model_type", None))
    if rule:
        rule(model.config, keep)
    kept = nn.ModuleList([old[i] for i in keep])
    for new_idx, layer in enumerate(kept):
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = new_idx
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, kept)

    config = model.config
    select_per_layer(config, keep, depth)
    pruned = getattr(config, "pruned_heads", None) or {}
    if pruned:
        new_index = {old_idx: new for new, old_idx in enumerate(keep)}
        config.pruned_heads = {
            new_index[int(k)]: v for k, v in pruned.items() if int(k) in new_index
        }
    config.num_hidden_layers = len(keep)


def select_per_layer(config, source: list[int], depth: int) -> None:
    """Make the config's per-layer lists follow a new stack whose layer i is old layer
    source[i] (of `depth` layers)."""
    for key in PER_LAYER_LISTS:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == depth:
            setattr(config, key, [values[i] for i in source])


def _modernbert_positions(config, keep: list[int]) -> None:
    n = config.global_attn_every_n_layers

    def kind(i):
        return "globally" if i % n == 0 else "locally"

    for new, old in enumerate(keep):
        if kind(new) != kind(old) or (new == 0) != (old == 0):
            example = ",".join(map(str, range(len(keep))))
            raise PocketsizeError(
                f"ModernBERT layer {old} attends {kind(old)} but would become layer {new}, "
                f"which attends {kind(new)} (one layer in {n} is global and layer 0 has no "
                f"attention norm); keep layer 0 first and drop whole runs of {n} layers, e.g. "
                f"truncate:{example}"
            )


POSITION_RULES = {"modernbert": _modernbert_positions}
