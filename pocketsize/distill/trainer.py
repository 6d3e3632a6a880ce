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

import json
from pathlib import Path

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
    """The student and the learned projections, and one forward that runs the student and
    the weighted losses: under DDP the wrapper's forward must see every parameter it trains
    (the projections act on the student's outputs), or gradients would not be shared."""

    def __init__(self, student: nn.Module, projections: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.projections = projections
        self.losses = None  # (task, loss weights, LossContext), set by DistillationTrainer
        # Tied weights (GPT-2's embedding and LM head) are one tensor under two names, which
        # safetensors refuses in a plain state dict: checkpoints keep the first name, and the
        # Trainer re-ties the others after loading one (transformers' own convention).
        seen, duplicates = set(), []
        for name, tensor in self.state_dict().items():
            key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
            (duplicates.append(name) if key in seen else seen.add(key))
        self._keys_to_ignore_on_save = duplicates or None

    def forward(self, student_inputs: dict, teacher_view: dict, batch: dict):
        """(loss, its parts, the student's outputs)."""
        task, weights, context = self.losses
        s_out = self.student(**student_inputs)
        s_view = collect(s_out, context.output_names)
        s_view, t_view, batch = task.loss_view(s_view, teacher_view, batch)
        context.projections = self.projections
        loss, parts = combined_loss(weights, s_view, t_view, batch, context)
        return loss, parts, s_out

    def tie_weights(self):
        if hasattr(self.student, "tie_weights"):
            self.student.tie_weights()


def _to_device(view: dict, device) -> dict:
    def move(value):
        if isinstance(value, list):
            return [move(v) for v in value]
        return value.to(device) if isinstance(value, torch.Tensor) else value

    return {name: move(value) for name, value in view.items()}


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
        teacher_memo=None,
        shuffle: bool = True,
        **kw,
    ):
        self.shuffle = shuffle
        super().__init__(*args, **kw)
        # The losses are batch means: told that the model takes no loss kwargs, the Trainer
        # divides them by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.task = task
        self.uses_teacher = reads_teacher(loss_weights)
        if self.uses_teacher and teacher is None and teacher_outputs is None:
            raise ValueError("these losses read the teacher: give a teacher or its cached outputs")
        if isinstance(teacher, nn.Module):
            teacher = teacher.to(self.args.device).eval().requires_grad_(False)
        self.teacher = teacher  # a module, or any callable from a batch to logits
        self.teacher_outputs = teacher_outputs
        self.teacher_memo = teacher_memo  # the live teacher's outputs, kept from the first epoch
        self.loss_context = loss_context  # its output names: what the teacher view collects
        self.model.losses = (task, loss_weights, loss_context)
        self.needs = needs
        self.student_inputs = model_inputs(task, with_labels="model_loss" in needs)
        self.teacher_inputs = model_inputs(task)
        self._part_sums: dict[str, float] = {}
        self._part_count = 0
        # The sum of the step losses, for the whole run's mean loss after a resume (see train)
        self._loss_before = 0.0  # of the steps before the checkpoint this run resumed from
        self._loss_here = torch.zeros(())  # of this run's steps, on this process

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
        memo = self.teacher_memo if index is not None else None
        mask = inputs.get("attention_mask")
        kept = memo.get(index, mask) if memo is not None else None
        if kept is not None:
            return _to_device(kept, self.args.device)
        with torch.no_grad():
            feed = forward_kwargs(self.teacher, inputs, self.teacher_inputs, **self._flags())
            out = self.teacher(**feed)
        view = collect(out, names)
        if memo is not None:
            memo.put(index, mask, view)
        return view

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop(INDEX_COLUMN, None)
        inputs.pop(LENGTH_COLUMN, None)
        student = getattr(model, "module", model).student  # unwrapped from DDP, if any
        feed = forward_kwargs(student, inputs, self.student_inputs, **self._flags())
        t_view = self.teacher_view(inputs, index)
        loss, parts, s_out = model(feed, t_view, inputs)  # through DDP's forward, if any
        if not torch.isfinite(loss):
            raise NonFiniteLoss(self.state.global_step + 1, parts)
        for k, v in parts.items():
            self._part_sums[k] = self._part_sums.get(k, 0.0) + v
        self._part_count += 1
        return (loss, s_out) if return_outputs else loss

    def train(self, resume_from_checkpoint=None, **kw):
        """transformers' TrainOutput, whose training_loss is the whole run's mean step loss.

        Resumed, the Trainer divides the sum of this run's step losses by every step, the
        ones before the checkpoint included; the checkpoint's LOSS_FILE holds their sum."""
        before = saved_loss_sum(resume_from_checkpoint)
        self._loss_before = before or 0.0
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kw)
        if not before:
            return result
        whole = result.training_loss + before / max(result.global_step, 1)
        return result._replace(training_loss=whole, metrics={**result.metrics, "train_loss": whole})

    def training_step(self, *args, **kw):
        loss = super().training_step(*args, **kw)  # the step's part of the Trainer's tr_loss
        self._loss_here = self._loss_here.to(loss.device) + loss.float()
        return loss

    def _save_checkpoint(self, model, trial):
        # the loss sum so far, every process's mean as the Trainer logs it, written before the
        # Trainer's state: a checkpoint that has its state has its loss sum too
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        here = self.accelerator.reduce(self._loss_here.to(self.args.device), reduction="mean")
        folder = Path(self._get_output_dir(trial=trial))
        folder = folder / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            folder.mkdir(parents=True, exist_ok=True)
            record = {"step": self.state.global_step, "sum": self._loss_before + here.item()}
            (folder / LOSS_FILE).write_text(json.dumps(record), encoding="utf-8")
        super()._save_checkpoint(model, trial)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.shuffle:
            # in order; under several processes accelerate deals consecutive batches in turn
            return torch.utils.data.SequentialSampler(dataset)
        if self.args.group_by_length and LENGTH_COLUMN in getattr(dataset, "column_names", ()):
            from transformers.trainer_pt_utils import LengthGroupedSampler

            # The Trainer hands the sampler the dataset's lazy length column, read one row at a
            # time (50 us each: 35 s of a 50-step run over 108 k examples); one numpy array
            # read in one go is the same lengths.
            lengths = dataset.with_format("arrow")[:][LENGTH_COLUMN].to_numpy()
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                dataset=dataset,
                lengths=lengths,
            )
        return super()._get_train_sampler(train_dataset)

    def _load_optimizer_and_scheduler(self, checkpoint):
        device = self.args.device
        if checkpoint is None or device.type != "cpu" or device.index is None:
            return super()._load_optimizer_and_scheduler(checkpoint)
        # accelerate names the CPU of a multi-process job "cpu:0", and the Trainer maps the
        # optimizer state there on resume, which torch.load refuses ("don't know how to
        # restore data location"): on the CPU the state is loaded where it is
        from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME

        folder = Path(checkpoint)
        self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_NAME, weights_only=True))
        self.lr_scheduler.load_state_dict(torch.load(folder / SCHEDULER_NAME, weights_only=True))

    def _save(self, output_dir=None, state_dict=None):
        state_dict = self.model.state_dict() if state_dict is None else state_dict
        tied = set(self.model._keys_to_ignore_on_save or ())
        super()._save(output_dir, state_dict={k: v for k, v in state_dict.items() if k not in tied})

    def log(self, logs: dict, *args, **kw) -> None:
        # Each loss's mean since the last log line, beside the Trainer's total. Every process
        # logs the training loss at the same step, so the parts are summed over all of them.
        if self._part_count and "loss" in logs:
            names = sorted(self._part_sums)
            sums = torch.tensor([self._part_sums[k] for k in names] + [self._part_count])
            sums = self.accelerator.reduce(sums.to(self.args.device), reduction="sum").cpu()
            for k, v in zip(names, sums[:-1].tolist()):
                logs[f"loss_{k}"] = round(v / float(sums[-1]), 6)
            self._part_sums, self._part_count = {}, 0
        super().log(logs, *args, **kw)


LOSS_FILE = "pocketsize_loss.json"  # in a checkpoint: the sum of the step losses up to it


def saved_loss_sum(checkpoint) -> float | None:
    """The sum of the step losses up to `checkpoint` (None: no checkpoint, or one written
    without the sum, by an older pocketsize: the Trainer's figure stands)."""
    path = Path(checkpoint) / LOSS_FILE if isinstance(checkpoint, (str, Path)) else None
    if path is None or not path.is_file():
        return None
    return float(json.loads(path.read_text(encoding="utf-8"))["sum"])


class ValidationCallback(TrainerCallback):
    """The task's validation metrics at the end of every epoch, logged as eval_<metric>."""

    def __init__(self, trainer: Trainer, validate):
        self.trainer = trainer
        self.validate = validate
        self.records: list[dict] = []

    def on_epoch_end(self, args, state, control, model=None, **kw):
        if not state.is_world_process_zero:
            return control  # one process validates; the others go on to the next epoch
        student = getattr(model, "module", model).student
        metrics = {k: v for k, v in self.validate(student).items() if isinstance(v, (int, float))}
        self.records.append({"epoch": state.epoch, "step": state.global_step, **metrics})
        self.trainer.log({f"eval_{k}": v for k, v in metrics.items()})
        return control
