"""Training features: a split encoded by its task adapter, keeping the columns the trainer reads,
and the collator that pads them."""

from __future__ import annotations

import inspect
from typing import Any

import torch

# Columns the trainer passes through besides the task's model inputs.
LABEL_COLUMNS = ("labels", "start_positions", "end_positions")
INDEX_COLUMN = "ps_index"  # row of an example in the teacher-output cache / transfer set
LENGTH_COLUMN = "length"  # token count, read by the length-grouped sampler
POSITION_INPUTS = ("position_ids",)


def training_features(task, split, tokenizer, max_length, with_index: bool = True):
    """The task's training features for a split, with only the columns the trainer uses."""
    features = task.training_features(split, tokenizer, max_length=max_length)
    keep = set(task.input_names) | set(task.teacher_forced_inputs) | set(LABEL_COLUMNS)
    features = features.remove_columns([c for c in features.column_names if c not in keep])
    if "input_ids" in features.column_names:
        features = features.map(
            lambda b: {LENGTH_COLUMN: [len(x) for x in b["input_ids"]]},
            batched=True,
            desc="lengths",
        )
    if with_index:  # through map, so that a memory-mapped dataset's index stays on disk too
        features = features.map(
            lambda b, idx: {INDEX_COLUMN: idx}, batched=True, with_indices=True, desc="index"
        )
    return features


class FeatureCollator:
    """Pads model inputs with the task's training collator; index and length pass through."""

    def __init__(self, task, tokenizer):
        self.pad = task.training_collator(tokenizer)

    def __call__(self, rows: list[dict]) -> dict:
        extra = {}
        for key in (INDEX_COLUMN, LENGTH_COLUMN):
            if key in rows[0]:
                extra[key] = torch.tensor([r[key] for r in rows])
        rows = [{k: v for k, v in r.items() if k not in extra} for r in rows]
        batch = dict(self.pad(rows))
        batch.update(extra)
        return batch


def probe_batch(features, task, tokenizer, n: int = 2) -> dict:
    """A padded batch of the first `n` features' model inputs, to check models on before
    any training."""
    inputs = [c for c in features.column_names if c in task.input_names]
    rows = [{k: features[i][k] for k in inputs} for i in range(min(n, len(features)))]
    return FeatureCollator(task, tokenizer)(rows)


def model_inputs(task, with_labels: bool = False) -> tuple[str, ...]:
    """The batch entries a model of the task is called with (labels: for its own loss)."""
    names = tuple(task.input_names) + tuple(task.teacher_forced_inputs) + POSITION_INPUTS
    return names + (LABEL_COLUMNS if with_labels else ())


def forward_kwargs(model, batch: dict, names=None, **flags) -> dict:
    """The part of a batch (and of the output flags) that the model's forward accepts.

    `model` is a module or any callable; `names` the batch entries it may take (default: the
    text inputs a tokenizer gives).
    """
    names = set(names or ("input_ids", "attention_mask", "token_type_ids", "position_ids"))
    params = inspect.signature(getattr(model, "forward", model)).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    out = {k: v for k, v in batch.items() if k in names and (takes_any or k in params)}
    out.update({k: v for k, v in flags.items() if v and (takes_any or k in params)})
    return out


def get_output(outputs: Any, name: str):
    if isinstance(outputs, torch.Tensor):
        return outputs if name == "logits" else None
    if isinstance(outputs, dict):
        return outputs.get(name)
    return getattr(outputs, name, None)
