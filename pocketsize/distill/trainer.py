"""DistillationTrainer: transformers' Trainer with the weighted distillation loss.

Everything else (checkpoints, resume, logging, mixed precision, accelerate) is the Trainer's.
The model the Trainer optimises is a small wrapper holding the student and the learned
projections (so both are in the optimizer and in every checkpoint); the teacher is not a
submodule: it is frozen and never saved.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from pocketsize.distill import _common as c
from pocketsize.distill.losses import combined_loss


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, parts: dict):
        super().__init__(f"non-finite distillation loss at step {step}: {parts}")
        self.step = step
        self.parts = parts


class DistillModule(nn.Module):
    def __init__(self, student: nn.Module, projections: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.projections = projections

    def forward(self, **inputs):
        return self.student(**inputs)


def collect(outputs, output_names) -> dict:
    """The parts of a model's outputs the losses read, by name."""
    got = {n: c.get_output(outputs, n) for n in output_names}
    got["hidden_states"] = c.get_output(outputs, "hidden_states")
    got["attentions"] = c.get_output(outputs, "attentions")
    return got


class DistillationTrainer(Trainer):
    def __init__(
        self,
        *args,
        loss_weights: dict,
        loss_context,
        needs: frozenset = frozenset(),
        teacher: nn.Module | None = None,
        teacher_outputs=None,
        **kw,
    ):
        super().__init__(*args, **kw)
        if teacher is None and teacher_outputs is None:
            raise ValueError("DistillationTrainer needs a teacher or cached teacher outputs")
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
        self.teacher_outputs = teacher_outputs
        self.loss_weights = loss_weights
        self.loss_context = loss_context
        self.needs = needs
        self._part_sums: dict[str, float] = {}
        self._part_count = 0

    def _flags(self) -> dict:
        return {
            "output_hidden_states": "hidden_states" in self.needs,
            "output_attentions": "attentions" in self.needs,
        }

    def teacher_view(self, inputs: dict, index) -> dict:
        names = self.loss_context.output_names
        if self.teacher_outputs is not None:
            width = inputs["input_ids"].shape[1] if self.loss_context.span_outputs else None
            got = self.teacher_outputs.batch(index.cpu(), width)
            return {n: v.to(self.args.device) for n, v in got.items()}
        with torch.no_grad():
            out = self.teacher(**c.forward_kwargs(self.teacher, inputs, **self._flags()))
        return collect(out, names)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop(c.INDEX_COLUMN, None)
        inputs.pop(c.LENGTH_COLUMN, None)
        module = getattr(model, "module", model)  # unwrap DDP if any
        student = module.student
        s_out = student(**c.forward_kwargs(student, inputs, **self._flags()))
        s_view = collect(s_out, self.loss_context.output_names)
        t_view = self.teacher_view(inputs, index)
        self.loss_context.projections = module.projections
        loss, parts = combined_loss(self.loss_weights, s_view, t_view, inputs, self.loss_context)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(self.state.global_step + 1, parts)
        for k, v in parts.items():
            self._part_sums[k] = self._part_sums.get(k, 0.0) + v
        self._part_count += 1
        return (loss, s_out) if return_outputs else loss

    def log(self, logs: dict, *args, **kw) -> None:
        # Each loss's mean since the last log line, beside the Trainer's total.
        if self._part_count and "loss" in logs:
            for k, v in self._part_sums.items():
                logs[f"loss_{k}"] = round(v / self._part_count, 4)
            self._part_sums, self._part_count = {}, 0
        super().log(logs, *args, **kw)
