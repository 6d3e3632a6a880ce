"""Importance scores for attention heads and FFN neurons, measured on task data.

Both scores are the gradient of the task loss with respect to a virtual mask variable that
multiplies a group of activations (Michel et al. 2019, "Are Sixteen Heads Really Better than
One?", eq. 5: I_h = E_x |dL(x)/d xi_h|). A head is the group of `head_size` columns of the
attention context that feeds the attention's output projection; an FFN neuron is one column of
the intermediate activation that feeds the MLP's down projection (the layout says where both
live). The mask gradient of a group equals
sum(activation * grad) over the group, so it is read from the inputs of those two Linear layers
with hooks instead of through `head_mask`: that works with SDPA attention and on models whose
layers already lost heads (where a rectangular head_mask no longer fits).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from pocketsize.errors import PocketsizeError
from pocketsize.prune.config import MIN_SCORING_EXAMPLES


@dataclass
class Importance:
    heads: list | None  # per layer: tensor [heads present in the layer], larger = more important
    ffn: list | None  # per layer: tensor [intermediate_size]
    examples: int  # how many examples the gradients were averaged over
    loss: str = ""  # what the gradients are of: the task labels or the model's own predictions


def scoring_split(data, min_examples: int = MIN_SCORING_EXAMPLES):
    """The split importance is measured on (train), refusing one that is too small."""
    split = data["train"] if hasattr(data, "keys") else data
    if len(split) < min_examples:
        raise PocketsizeError(
            f"importance scoring needs at least {min_examples} training examples, the "
            f"dataset has {len(split)}; give more data (or use ffn_score='magnitude' without heads)"
        )
    return split


def magnitude_ffn_scores(layout) -> list:
    """Per neuron: |input weights| * |output weights| (the product over a gate and an up
    projection); a neuron whose output weights are zero contributes nothing and scores zero."""
    from pocketsize.prune.layouts.base import weight_out_in

    scores = []
    for layer in layout.layers():
        score = weight_out_in(layout.ffn_output(layer)).detach().norm(dim=0)  # [H, I] -> [I]
        for linear in layout.ffn_inputs(layer):
            rows = weight_out_in(linear).detach().norm(dim=1)  # [blocks x I, H] -> [blocks x I]
            score = score * rows.reshape(layout.ffn_input_blocks, -1).prod(0)
        scores.append(score)
    return scores


class _MaskGradient:
    """Accumulates E_x |sum(x * dL/dx)| over column groups of one Linear layer's input."""

    def __init__(self, linear, group_size: int, batch_state: dict):
        self.group_size = group_size
        self.batch_state = batch_state
        self.total = None
        self.inputs = []
        self.handle = linear.register_forward_pre_hook(self._capture)

    def _capture(self, module, args):
        self.inputs.append(args[0])

    def accumulate(self, x, grad):
        prod = x.detach() * grad  # [batch, tokens, width]
        mask = self.batch_state.get("attention_mask")
        if mask is not None:
            prod = prod * mask[:, :, None].to(prod.dtype)
        per_group = prod.sum(1).reshape(prod.shape[0], -1, self.group_size).sum(-1)
        contribution = per_group.abs().sum(0)
        self.total = contribution if self.total is None else self.total + contribution


def gradient_scores(
    layout,
    split,
    tokenizer,
    task,
    *,
    heads: bool = True,
    ffn: bool = True,
    batch_size: int = 16,
    max_length: int | None = None,
) -> Importance:
    """Mask-gradient importance of every head and/or FFN neuron over `split` (summed loss)."""
    import torch

    model = layout.model
    loader, has_labels = _loader(model, split, tokenizer, task, batch_size, max_length)
    batch_state: dict = {}
    trackers_heads, trackers_ffn = [], []
    for layer in layout.layers():
        if heads:
            trackers_heads.append(
                _MaskGradient(layout.attention_output(layer), layout.head_size(), batch_state)
            )
        if ffn:
            trackers_ffn.append(_MaskGradient(layout.ffn_output(layer), 1, batch_state))
    trackers = trackers_heads + trackers_ffn

    was_training = model.training
    saved_flags = [p.requires_grad for p in model.parameters()]
    model.eval()  # no dropout: the scores must not depend on the random seed
    for p in model.parameters():
        p.requires_grad_(True)  # so the hooked activations carry gradients
    examples = 0
    try:
        with torch.enable_grad():
            for batch in loader:
                batch = {k: v.to(model.device) for k, v in batch.items()}
                batch_state["attention_mask"] = batch.get("attention_mask")
                for t in trackers:
                    t.inputs.clear()
                outputs = model(**batch)
                loss = outputs.loss if has_labels else task.self_supervised_loss(outputs)
                n = batch["input_ids"].shape[0]
                # summed (not mean) loss: every example weighs the same whatever its batch
                xs = [t.inputs[0] for t in trackers]
                grads = torch.autograd.grad(loss * n, xs)
                for t, x, g in zip(trackers, xs, grads):
                    t.accumulate(x, g)
                examples += n
    finally:
        for t in trackers:
            t.handle.remove()
            t.inputs.clear()
        for p, flag in zip(model.parameters(), saved_flags):
            p.requires_grad_(flag)
        model.train(was_training)

    return Importance(
        heads=[t.total / examples for t in trackers_heads] if heads else None,
        ffn=[t.total / examples for t in trackers_ffn] if ffn else None,
        examples=examples,
        loss="task labels" if has_labels else "the model's own predictions",
    )


def _loader(model, split, tokenizer, task, batch_size, max_length):
    """Batches of the task's training features: the model's own loss on the data's labels,
    where it has them. Returns (loader, has_labels)."""
    import torch

    features = task.training_features(split, tokenizer, max_length=max_length)
    accepted = set(inspect.signature(model.forward).parameters)
    features = features.remove_columns([c for c in features.column_names if c not in accepted])
    # the labels are a column (classification) or made by the collator (a causal LM's shift)
    training = task.training_collator(tokenizer)
    has_labels = bool({"labels", "start_positions"} & set(training([features[0]])))
    loader = torch.utils.data.DataLoader(
        features,
        batch_size=batch_size,
        collate_fn=training if has_labels else task.collator(tokenizer),
    )
    return loader, has_labels


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def scoring_batches(model, split, tokenizer, task, batch_size: int = 16, max_length=None) -> list:
    """The model inputs (no labels) of the scoring split, tokenised once, batched on the model's
    device: what width pruning traces (the first batch) and scores (all of them) on."""
    loader, _ = _loader(model, split, tokenizer, task, batch_size, max_length)
    return [
        {k: v.to(model.device) for k, v in batch.items() if k in MODEL_INPUTS} for batch in loader
    ]


def width_scores(model, batches: list, head_plan):
    """Activation importance of every hidden channel and of every head layer's own outputs.

    batches: scoring_batches(). Channels: the root mean square of each norm's output over the
    real tokens, summed over the norms the layout names (Minitron). A head layer with a space
    of its own (a pooler): the root mean square of its outputs. Returns (channels, {name: ...}).
    """

    from pocketsize.prune.layouts import layout_for

    norms = layout_for(model).width_norms()
    modules = dict(model.named_modules())
    state: dict = {}
    sums: dict = {}

    def hook(key):
        def record(module, args, out):
            x = out.detach().float() ** 2
            if x.dim() == 3:
                mask = state["attention_mask"][:, :, None].to(x.dtype)
                x, count = (x * mask).sum((0, 1)), mask.sum()
            else:
                x, count = x.sum(0), x.shape[0]
            total, n = sums.get(key, (0.0, 0))
            sums[key] = (total + x, n + count)

        return record

    hooks = [m.register_forward_hook(hook(("norm", i))) for i, m in enumerate(norms)]
    hooks += [
        modules[h.name].register_forward_hook(hook(("head", h.name)))
        for h in head_plan
        if h.own_space
    ]
    _run_hooked(model, batches, hooks, state)

    def rms(key):
        total, n = sums[key]
        return (total / n).sqrt()

    channels = sum(rms(("norm", i)) for i in range(len(norms)))
    heads = {h.name: rms(("head", h.name)) for h in head_plan if h.own_space}
    return channels, heads


def block_influence(layout, batches: list):
    """Per layer: 1 - cos(input, output) of its hidden states, averaged over the real tokens.

    A block that barely turns the residual stream is the cheapest to drop (Men et al. 2024,
    "ShortGPT"; the depth score Minitron compares against). batches: scoring_batches().
    """
    import torch

    model = layout.model
    sums: dict[int, tuple] = {}
    state: dict = {}

    def hook(i):
        def record(module, args, kwargs, out):
            x = args[0] if args else kwargs["hidden_states"]
            y = out[0] if isinstance(out, tuple) else out
            cos = torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)
            mask = state["attention_mask"].to(cos.dtype)
            total, n = sums.get(i, (0.0, 0.0))
            sums[i] = (total + ((1 - cos) * mask).sum(), n + mask.sum())

        return record

    hooks = [
        layer.register_forward_hook(hook(i), with_kwargs=True)
        for i, layer in enumerate(layout.layers())
    ]
    n_layers = len(hooks)
    _run_hooked(model, batches, hooks, state)
    return torch.stack([sums[i][0] / sums[i][1] for i in range(n_layers)])


def _run_hooked(model, batches: list, hooks: list, state: dict) -> None:
    """Forward every batch in eval mode without gradients, with `state["attention_mask"]` set
    for the hooks to read; the hooks are removed and the mode restored afterwards."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                state["attention_mask"] = batch["attention_mask"]
                model(**batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
