"""DistillationTrainer: transformers' Trainer with the weighted distillation loss, the one trainer
of every task and every student kind (fine-tuning is training with no teacher).

Everything else (checkpoints, resume, logging, mixed precision, accelerate, the device) is the
Trainer's. The model the Trainer optimises is a small wrapper holding the student and the
learned projections (so both are in the optimizer and in every checkpoint); the teacher is not
a submodule: it is frozen and never saved. What differs per task is asked of the task adapter:
which inputs the models read, which outputs the losses compare, how to line them up
(`task.loss_view`: a causal LM's shift by one).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from pocketsize.distill.features import (
    INDEX_COLUMN,
    LENGTH_COLUMN,
    forward_kwargs,
    get_output,
    model_inputs,
)
from pocketsize.distill.losses import combined_loss, reads_teacher


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, parts: dict):
        super().__init__(f"non-finite training loss at step {step}: {parts}")
        self.step = step
        self.parts = parts


class DistillModule(nn.Module):
    def __init__(self, student: nn.Module, projections: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.projections = projections
        # Tied weights (GPT-2's embedding and LM head) are one tensor under two names, which
        # safetensors refuses in a plain state dict: checkpoints keep the first name, and the
        # Trainer re-ties the others after loading one (transformers' own convention).
        seen, duplicates = set(), []
        for name, tensor in self.state_dict().items():
            key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
            (duplicates.append(name) if key in seen else seen.add(key))
        self._keys_to_ignore_on_save = duplicates or None

    def forward(self, **inputs):
        return self.student(**inputs)

    def tie_weights(self):
        if hasattr(self.student, "tie_weights"):
            self.student.tie_weights()


def collect(outputs, output_names) -> dict:
    """The parts of a model's outputs the losses read, by name."""
    got = {n: get_output(outputs, n) for n in output_names}
    for extra in ("hidden_states", "attentions", "loss"):
        got[extra] = get_output(outputs, extra)
    return got


class DistillationTrainer(Trainer):
    def __init__(
        self,
        *args,
        task,
        loss_weights: dict,
        loss_context,
        needs: frozenset = frozenset(),
        teacher=None,
        teacher_outputs=None,
        **kw,
    ):
        super().__init__(*args, **kw)
        # The losses are batch means: the Trainer divides them by the accumulation steps (it
        # would not for a wrapper whose forward takes **kwargs, as DistillModule's does).
        self.model_accepts_loss_kwargs = False
        self.task = task
        self.uses_teacher = reads_teacher(loss_weights)
        if self.uses_teacher and teacher is None and teacher_outputs is None:
            raise ValueError("these losses read the teacher: give a teacher or its cached outputs")
        if isinstance(teacher, nn.Module):
            teacher = teacher.to(self.args.device).eval().requires_grad_(False)
        self.teacher = teacher  # a module, or any callable from a batch to logits
        self.teacher_outputs = teacher_outputs
        self.loss_weights = loss_weights
        self.loss_context = loss_context
        self.needs = needs
        self.student_inputs = model_inputs(task, with_labels="model_loss" in needs)
        self.teacher_inputs = model_inputs(task)
        self._part_sums: dict[str, float] = {}
        self._part_count = 0

    def _flags(self) -> dict:
        return {
            "output_hidden_states": "hidden_states" in self.needs,
            "output_attentions": "attentions" in self.needs,
        }

    def teacher_view(self, inputs: dict, index) -> dict:
        names = self.loss_context.output_names
        if not self.uses_teacher:
            return {}
        if self.teacher_outputs is not None:
            width = inputs["input_ids"].shape[1] if self.task.per_token_outputs else None
            got = self.teacher_outputs.batch(index.cpu(), width)
            return {n: v.to(self.args.device) for n, v in got.items()}
        with torch.no_grad():
            feed = forward_kwargs(self.teacher, inputs, self.teacher_inputs, **self._flags())
            out = self.teacher(**feed)
        return collect(out, names)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop(INDEX_COLUMN, None)
        inputs.pop(LENGTH_COLUMN, None)
        module = getattr(model, "module", model)  # unwrap DDP if any
        student = module.student
        s_out = student(**forward_kwargs(student, inputs, self.student_inputs, **self._flags()))
        s_view = collect(s_out, self.loss_context.output_names)
        t_view = self.teacher_view(inputs, index)
        s_view, t_view, batch = self.task.loss_view(s_view, t_view, inputs)
        self.loss_context.projections = module.projections
        loss, parts = combined_loss(self.loss_weights, s_view, t_view, batch, self.loss_context)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(self.state.global_step + 1, parts)
        for k, v in parts.items():
            self._part_sums[k] = self._part_sums.get(k, 0.0) + v
        self._part_count += 1
        return (loss, s_out) if return_outputs else loss

    def _save(self, output_dir=None, state_dict=None):
        state_dict = self.model.state_dict() if state_dict is None else state_dict
        tied = set(self.model._keys_to_ignore_on_save or ())
        super()._save(output_dir, state_dict={k: v for k, v in state_dict.items() if k not in tied})

    def log(self, logs: dict, *args, **kw) -> None:
        # Each loss's mean since the last log line, beside the Trainer's total.
        if self._part_count and "loss" in logs:
            for k, v in self._part_sums.items():
                logs[f"loss_{k}"] = round(v / self._part_count, 4)
            self._part_sums, self._part_count = {}, 0
        super().log(logs, *args, **kw)


class ValidationCallback(TrainerCallback):
    """The task's validation metrics at the end of every epoch, logged as eval_<metric>."""

    def __init__(self, trainer: Trainer, validate):
        self.trainer = trainer
        self.validate = validate
        self.records: list[dict] = []

    def on_epoch_end(self, args, state, control, model=None, **kw):
        student = getattr(model, "module", model).student
        metrics = {k: v for k, v in self.validate(student).items() if isinstance(v, (int, float))}
        self.records.append({"epoch": state.epoch, "step": state.global_step, **metrics})
        self.trainer.log({f"eval_{k}": v for k, v in metrics.items()})
        return control
