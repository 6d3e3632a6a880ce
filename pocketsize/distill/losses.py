"""Distillation losses: a name -> function registry that users extend with `register_loss`.

A loss is `fn(student, teacher, batch, ctx) -> scalar tensor` where `student` and `teacher`
are dicts holding the task's outputs by name (`logits`, or `start_logits`/`end_logits` for
QA) and, when the loss needs them, `hidden_states`, `attentions` or the model's own `loss`;
`batch` is the padded batch (attention_mask, labels...); `ctx` is a LossContext. A loss
declares what it needs (`needs={"hidden_states"}`) and whether it reads the teacher at all
(`teacher=False` for losses on the data's labels); losses that need nothing beyond the
outputs can run from the teacher-output cache, the others need the live teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pocketsize.errors import PocketsizeError

LOSSES: dict[str, Callable] = {}
_NEG = -1e4  # logit given to padded positions of span outputs: softmax weight ~0
# what the live teacher (and student) must return beyond their outputs
INTERMEDIATE = frozenset({"hidden_states", "attentions"})
# a teacher output `logits` cached as its top k (distill/cache.py) arrives as logits.topk_values,
# logits.topk_ids and logits.lse (the log-sum-exp of all logits at the temperature)
TOP_K_VALUES, TOP_K_IDS, LOG_SUM_EXP = ".topk_values", ".topk_ids", ".lse"


@dataclass
class LossContext:
    output_names: tuple[str, ...] = ("logits",)
    temperature: float = 2.0
    layer_pairs: list[tuple[int, int]] = field(default_factory=list)
    projections: nn.ModuleDict | None = None
    # the task's hooks (Task.loss_targets, Task.outputs_over_positions): the batch keys of each
    # output's hard targets, and whether the outputs are distributions over the positions (QA
    # start/end), which padding must not affect
    targets: tuple[str, ...] = ("labels",)
    over_positions: bool = False

    @classmethod
    def of_task(cls, task, output_names, **settings) -> LossContext:
        return cls(
            tuple(output_names),
            targets=tuple(task.loss_targets),
            over_positions=task.outputs_over_positions,
            **settings,
        )

    def project(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.projections is not None and key in self.projections:
            return self.projections[key](x)
        return x


def register_loss(
    name: str,
    fn: Callable | None = None,
    *,
    needs=(),
    teacher: bool = True,
    projects=False,
    teacher_hidden: Callable | None = None,
):
    """Register `fn` under `name`; usable as a decorator. `needs` ⊆ {hidden_states, attentions,
    model_loss}; teacher=False: the loss reads the data's labels only (no teacher is run);
    projects=True: the loss compares the outputs feature by feature, so where the student's
    outputs are narrower than the teacher's a learned projection (ctx.project(output name))
    bridges them (a sentence embedder's width); teacher_hidden(ctx) -> the indices of the
    teacher's hidden_states the loss reads (None: any of them), so the teacher memo keeps only
    those (distill/memo.py)."""

    def add(f):
        f.needs = frozenset(needs)
        f.reads_teacher = teacher
        f.projects = projects
        f.teacher_hidden = teacher_hidden
        LOSSES[name] = f
        return f

    return add(fn) if fn is not None else add


def reads_teacher(names) -> bool:
    return any(getattr(get_loss(n), "reads_teacher", True) for n in names)


def get_loss(name: str) -> Callable:
    if name not in LOSSES:
        raise PocketsizeError(
            f"unknown distillation loss {name!r}; known: {', '.join(sorted(LOSSES))} "
            "(add your own with pocketsize.distill.register_loss)"
        )
    return LOSSES[name]


def teacher_hidden_of(names, ctx) -> set | None:
    """The teacher's hidden_states indices the losses read (None: all, as a loss that does not
    say which reads any)."""
    wanted: set = set()
    for n in names:
        loss = get_loss(n)
        if "hidden_states" not in getattr(loss, "needs", ()):
            continue
        reads = getattr(loss, "teacher_hidden", None)
        if reads is None:
            return None
        wanted |= set(reads(ctx))
    return wanted


def _mapped_layers(ctx) -> set:
    return {j + 1 for _, j in ctx.layer_pairs}  # hidden_states[0] is the embedding output


def needs_of(names) -> frozenset:
    out = frozenset()
    for n in names:
        out |= getattr(get_loss(n), "needs", frozenset())
    return out


def _span_masked(logits: torch.Tensor, batch: dict, ctx: LossContext) -> torch.Tensor:
    logits = logits.float()
    mask = batch.get("attention_mask")
    if ctx.over_positions and mask is not None and logits.shape[-1] == mask.shape[-1]:
        logits = logits.masked_fill(mask == 0, _NEG)
    return logits


@register_loss("kl")
def kl_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """Soft-target KL at temperature T, scaled by T^2 so gradients keep their size (Hinton)."""
    T = ctx.temperature
    total = 0.0
    for name in ctx.output_names:
        s = _span_masked(student[name], batch, ctx) / T
        t = _span_masked(teacher[name], batch, ctx) / T
        total = total + F.kl_div(
            F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True
        ) * (T * T)
    return total / len(ctx.output_names)


@register_loss("ce", teacher=False)
def ce_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """Hard-label cross-entropy; rows without a label (-100: transfer data) are skipped."""
    targets = [batch.get(key) for key in ctx.targets]
    if any(t is None for t in targets):
        raise PocketsizeError(
            "the ce loss needs labels in the training data; drop it or add labels"
        )
    total = 0.0
    for name, target in zip(ctx.output_names, targets):
        logits = _span_masked(student[name], batch, ctx)
        summed = F.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
        total = total + summed / (target != -100).sum().clamp(min=1)
    return total / len(ctx.output_names)


@register_loss("mse", projects=True)
def logit_mse_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """MSE between the outputs (sentence-transformers' distillation loss on embeddings)."""
    total = 0.0
    for name in ctx.output_names:
        s, t = ctx.project(name, student[name].float()), teacher[name].float()
        mask = batch.get("attention_mask")
        if ctx.over_positions and mask is not None:
            m = mask.to(s.dtype)
            total = total + ((s - t) ** 2 * m).sum() / m.sum().clamp(min=1)
        else:
            total = total + F.mse_loss(s, t)
    return total / len(ctx.output_names)


@register_loss("cosine", projects=True)
def cosine_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """1 - cosine similarity between each example's student and teacher output vectors."""
    total = 0.0
    for name in ctx.output_names:
        s = ctx.project(name, student[name].float())
        total = total + (1 - F.cosine_similarity(s, teacher[name].float(), dim=-1)).mean()
    return total / len(ctx.output_names)


@register_loss("similarity_mse")
def similarity_mse_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """MSE between the in-batch cosine-similarity matrices (a relational loss: it asks the
    student to place the examples as the teacher does, at any width)."""
    total = 0.0
    for name in ctx.output_names:
        s = F.normalize(student[name].float(), dim=-1)
        t = F.normalize(teacher[name].float(), dim=-1)
        total = total + F.mse_loss(s @ s.T, t @ t.T)
    return total / len(ctx.output_names)


@register_loss("model", needs={"model_loss"}, teacher=False)
def model_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """The loss the model computes for its labels (fine-tuning a transformers model exactly as
    transformers' Trainer does)."""
    if student.get("loss") is None:
        raise PocketsizeError(
            "the model returns no loss for its labels; use the task's label loss (e.g. ce)"
        )
    return student["loss"]


def _label_positions(batch) -> torch.Tensor:
    return batch["labels"] != -100


@register_loss("token_kl")
def token_kl(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """KL(teacher || student) of the per-token distributions over the labelled positions, at
    temperature T, scaled by T^2 (teacher forcing: both read the same gold prefix)."""
    mask = _label_positions(batch)
    T = ctx.temperature
    s = student["logits"][mask].float() / T
    if "logits" + TOP_K_VALUES in teacher:
        return top_k_kl(F.log_softmax(s, -1), teacher, mask, T) * T * T
    t = teacher["logits"][mask].float() / T
    kl = F.kl_div(
        F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True
    )
    return kl * T * T


def top_k_kl(s_logp: torch.Tensor, teacher: dict, mask, T: float) -> torch.Tensor:
    """KL between teacher and student over k + 1 outcomes: the teacher's k most likely tokens,
    and all the others together. Equal to the full KL when k is the vocabulary, never above it
    otherwise (merging outcomes cannot raise a KL); the cache records the mass the k cover."""
    ids = teacher["logits" + TOP_K_IDS][mask].long()
    lse = teacher["logits" + LOG_SUM_EXP][mask].float().unsqueeze(-1)
    t_top = teacher["logits" + TOP_K_VALUES][mask].float() / T - lse
    s_top = s_logp.gather(-1, ids)
    t_rest = torch.log1p(-t_top.exp().sum(-1).clamp(max=1 - 1e-6))
    s_rest = torch.log1p(-s_top.exp().sum(-1).clamp(max=1 - 1e-6))
    t_all = torch.cat([t_top, t_rest.unsqueeze(-1)], -1)
    s_all = torch.cat([s_top, s_rest.unsqueeze(-1)], -1)
    return F.kl_div(s_all, t_all, reduction="batchmean", log_target=True)


@register_loss("token_ce", teacher=False)
def token_ce(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """The language-modelling loss: cross-entropy on the gold next (or target) tokens."""
    mask = _label_positions(batch)
    return F.cross_entropy(student["logits"][mask].float(), batch["labels"][mask])


def _token_mask(batch, like: torch.Tensor) -> torch.Tensor:
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones(like.shape[:2], dtype=like.dtype, device=like.device)
    return mask.to(like.dtype)


def _masked_mse(s: torch.Tensor, t: torch.Tensor, batch) -> torch.Tensor:
    m = _token_mask(batch, s).unsqueeze(-1)
    return ((s - t) ** 2 * m).sum() / (m.sum() * s.shape[-1]).clamp(min=1)


@register_loss("hidden_mse", needs={"hidden_states"}, teacher_hidden=_mapped_layers)
def hidden_mse_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """MSE between mapped layers' hidden states; a learned projection bridges widths."""
    total = 0.0
    for i, j in ctx.layer_pairs:
        s = ctx.project("hidden", student["hidden_states"][i + 1].float())
        total = total + _masked_mse(s, teacher["hidden_states"][j + 1].float(), batch)
    return total / len(ctx.layer_pairs)


@register_loss("hidden_cos", needs={"hidden_states"}, teacher_hidden=_mapped_layers)
def hidden_cos_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """1 - cosine similarity per token between mapped layers' hidden states."""
    total = 0.0
    for i, j in ctx.layer_pairs:
        s = ctx.project("hidden", student["hidden_states"][i + 1].float())
        t = teacher["hidden_states"][j + 1].float()
        m = _token_mask(batch, s)
        total = total + ((1 - F.cosine_similarity(s, t, dim=-1)) * m).sum() / m.sum().clamp(min=1)
    return total / len(ctx.layer_pairs)


@register_loss("attention_kl", needs={"attentions"})
def attention_kl_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """KL between mapped layers' attention distributions (TinyBERT / MiniLM).

    With different head counts the head-averaged distributions are compared.
    """
    total = 0.0
    for i, j in ctx.layer_pairs:
        s = student["attentions"][i].float()
        t = teacher["attentions"][j].float()
        if s.shape[1] != t.shape[1]:
            s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
        # computed under bfloat16 autocast, a row sums to 1 only within bf16's rounding, and a
        # KL of rows that are not distributions can go below 0; as distributions again, not
        s, t = (
            s / s.sum(-1, keepdim=True).clamp(min=1e-9),
            t / t.sum(-1, keepdim=True).clamp(min=1e-9),
        )
        kl = (t * (torch.log(t.clamp(min=1e-9)) - torch.log(s.clamp(min=1e-9)))).sum(-1)
        m = _token_mask(batch, kl[:, 0]).unsqueeze(1).expand_as(kl)  # valid query rows
        total = total + (kl * m).sum() / m.sum().clamp(min=1)
    return total / len(ctx.layer_pairs)


@register_loss("embedding_mse", needs={"hidden_states"}, teacher_hidden=lambda ctx: {0})
def embedding_mse_loss(student, teacher, batch, ctx: LossContext) -> torch.Tensor:
    """MSE between the embedding-layer outputs (hidden_states[0])."""
    s = ctx.project("embedding", student["hidden_states"][0].float())
    return _masked_mse(s, teacher["hidden_states"][0].float(), batch)


# Short names used in configs and on the command line.
ALIASES = {
    "logits": "kl",
    "soft": "kl",
    "hard": "ce",
    "labels": "ce",
    "logit_mse": "mse",
    "hidden": "hidden_mse",
    "cos": "hidden_cos",
    "attention": "attention_kl",
    "attn": "attention_kl",
    "embedding": "embedding_mse",
    "embeddings": "embedding_mse",
    "relational": "similarity_mse",
    "similarity": "similarity_mse",
}


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def parse_losses(spec) -> dict[str, float]:
    """{"kl": 1, "hidden": 1}, "kl=1,hidden=1" or ["kl", "ce"] -> {canonical name: weight}."""
    if spec is None:
        spec = {"kl": 0.5, "ce": 0.5}
    if isinstance(spec, str):
        items = {}
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            name, _, weight = part.partition("=")
            try:
                items[name.strip()] = float(weight) if weight else 1.0
            except ValueError as e:
                raise PocketsizeError(
                    f"cannot read loss weight {part!r}; write losses like 'kl=1,hidden=0.5'"
                ) from e
        spec = items
    elif not isinstance(spec, dict):
        spec = {n: 1.0 for n in spec}
    out: dict[str, float] = {}
    for name, weight in spec.items():
        key = canonical(name)
        get_loss(key)
        out[key] = out.get(key, 0.0) + float(weight)
    if not out or all(w == 0 for w in out.values()):
        raise PocketsizeError("no distillation loss has a non-zero weight; give e.g. 'kl=1'")
    return out


def combined_loss(weights: dict[str, float], student, teacher, batch, ctx) -> tuple:
    """The weighted sum and each loss's value (floats, for logging)."""
    total = 0.0
    parts = {}
    for name, w in weights.items():
        if w == 0:
            continue
        value = LOSSES[name](student, teacher, batch, ctx)
        parts[name] = float(value.detach())
        total = total + w * value
    return total, parts
