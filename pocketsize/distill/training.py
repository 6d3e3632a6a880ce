"""The one training path of finetune and distill: TrainingArguments, the checkpoint directory
kept for resume, and a DistillationTrainer run with its non-finite guard and validation."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from pocketsize import processes
from pocketsize.distill.features import LENGTH_COLUMN, FeatureCollator
from pocketsize.distill.trainer import DistillationTrainer, DistillModule, NonFiniteLoss
from pocketsize.errors import PocketsizeError


def bf16_supported() -> bool:
    """True when this CPU runs bfloat16 matmuls natively (AVX-512 BF16 or AMX)."""
    if torch.cuda.is_available():
        # native only: a T4 or V100 "supports" bf16 by emulation, far slower than fp32
        return torch.cuda.is_bf16_supported(including_emulation=False)
    checker = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((checker and checker()) or (amx and amx()))


def resolve_bf16(bf16) -> bool:
    if bf16 == "auto":
        return bf16_supported()
    if bf16 and not bf16_supported():
        raise PocketsizeError(
            "bf16=True but this machine has no native bfloat16 support; use bf16=False"
        )
    return bool(bf16)


def default_out(stage: str) -> Path:
    root = Path(os.environ.get("POCKETSIZE_RUNS", Path(tempfile.gettempdir()) / "pocketsize-runs"))
    # the main process names it (time, pid) for all processes of a launched job
    return Path(
        processes.broadcast(str(root / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"))
    )


def work_dir_for(out: Path) -> Path:
    """Where Trainer checkpoints live while a stage runs: beside the output, kept for resume."""
    return out.parent / f".{out.name}.checkpoints"


def training_arguments(
    work_dir: Path, cfg, *, learning_rate: float, bf16: bool, features, progress: bool
):
    """transformers' TrainingArguments from a TrainingConfig; `learning_rate` and `bf16` come
    resolved (a student type's own rate; "auto" decided for this machine)."""
    from transformers import TrainingArguments

    if cfg.fp16:  # for GPUs without native bf16
        if not torch.cuda.is_available():
            raise PocketsizeError(
                "fp16=True needs a CUDA GPU and PyTorch sees none; on the CPU use bf16='auto'"
            )
        if bf16:
            raise PocketsizeError("fp16=True and bf16 autocast cannot both be on; pass bf16=False")
    # TrainingArguments(bf16=True) leaves ACCELERATE_MIXED_PRECISION=bf16 in os.environ, and a
    # later TrainingArguments(bf16=False) in the same process keeps it, so that run (and any
    # process it starts) trains under bf16 autocast after all: each run states its own
    os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if bf16 else "no"
    return TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size * 2,
        learning_rate=learning_rate,
        weight_decay=cfg.weight_decay,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        **({"optim": cfg.optim} if cfg.optim else {}),  # else transformers' default
        warmup_ratio=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        fp16=cfg.fp16,
        use_cpu=not torch.cuda.is_available(),
        group_by_length=cfg.shuffle and grouped_by_length(features),
        length_column_name=LENGTH_COLUMN,
        save_strategy="steps" if cfg.save_steps else "epoch",
        save_steps=cfg.save_steps or 500,
        save_total_limit=2,
        save_safetensors=True,
        logging_steps=cfg.logging_steps,
        report_to=[],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        eval_strategy="no",
    )


def prepare_work_dir(out: Path, resume: bool) -> tuple[Path, str | None]:
    """The Trainer's checkpoint directory beside `out` and the checkpoint to resume from.

    Without resume, checkpoints of an earlier attempt are removed so training starts over
    (by the main process, before any process trains), with a note: resuming them unasked
    could continue a run made with other data or options, which nothing here can tell.
    """
    work = work_dir_for(out)
    if not resume:
        processes.on_main(_start_over, work)
        return work, None
    checkpoint = last_checkpoint(work)
    if checkpoint is None:
        raise PocketsizeError(
            f"resume=True but {work} holds no checkpoint; run without resume to start over"
        )
    return work, checkpoint


def _start_over(work: Path) -> None:
    stale = last_checkpoint(work)
    if stale is not None:
        print(
            f"note: {work} holds {Path(stale).name} of an earlier run that stopped; starting "
            "over and removing it (to continue that run instead, pass --resume; Python: "
            "resume=True)",
            file=sys.stderr,
        )
    shutil.rmtree(work, ignore_errors=True)


def last_checkpoint(work_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(work_dir)) if work_dir.is_dir() else None


def train(
    model,
    task,
    features,
    tokenizer,
    args,
    *,
    loss_weights: dict,
    loss_context,
    needs=frozenset(),
    teacher=None,
    teacher_outputs=None,
    teacher_memo=None,
    projections=None,
    callbacks=None,
    checkpoint: str | None = None,
    validate=None,
    shuffle: bool = True,
):
    """Train `model` with the weighted losses; returns (TrainOutput, trained model, the
    validation records, the logged losses). `validate(model) -> metrics` runs at the end of
    every epoch (on the main process). shuffle=False feeds the examples in order (with
    group_by_length off), which makes runs on different numbers of processes comparable."""
    from torch import nn

    from pocketsize.distill.trainer import ValidationCallback

    trainer = DistillationTrainer(
        model=DistillModule(model, projections if projections is not None else nn.ModuleDict()),
        args=args,
        train_dataset=features,
        data_collator=FeatureCollator(task, tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        task=task,
        loss_weights=loss_weights,
        loss_context=loss_context,
        needs=needs,
        teacher=teacher,
        teacher_outputs=teacher_outputs,
        teacher_memo=teacher_memo,
        shuffle=shuffle,
    )
    validation = ValidationCallback(trainer, validate) if validate is not None else None
    if validation is not None:
        trainer.add_callback(validation)
    try:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    except NonFiniteLoss as e:
        last = last_checkpoint(Path(args.output_dir))
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved yet"
        raise PocketsizeError(
            f"the training loss became NaN/inf at step {e.step} ({e.parts}); training "
            f"stopped and {kept}; lower the learning rate or the loss weights and retry"
        ) from None
    losses = [
        {k: v for k, v in entry.items() if k == "step" or k.startswith("loss")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    return result, trainer.model.student, (validation.records if validation else []), losses


def final_validation(per_epoch: list, result, validate, model) -> dict:
    """The last epoch's validation when it was taken at the last step, else a fresh one."""
    if per_epoch and per_epoch[-1]["step"] == result.global_step:
        return {k: v for k, v in per_epoch[-1].items() if k not in ("epoch", "step")}
    return validate(model)


def grouped_by_length(features) -> bool:
    """Batches of similar lengths (less padding) where the features have a length."""
    return LENGTH_COLUMN in features.column_names


def validation_split(task, data, evaluate: bool):
    """The split each epoch is validated on, or None: validation is off, the data has no
    validation split, or the task's metric cannot score it (e.g. an embedder's unlabelled
    text: a note says so, and training goes on without validation scores)."""
    if not evaluate or "validation" not in data:
        return None
    why = task.unscorable(data["validation"])
    if why:
        if processes.is_main():
            print(
                f"note: the validation split is not scored ({why}); training goes on without "
                "validation scores",
                file=sys.stderr,
            )
        return None
    return data["validation"]


def validator(task, tokenizer, split, max_length=None, batch_size: int = 64):
    """model -> the task's metrics on `split` through the one scoring path every stage shares
    (runtime/scoring.py, as eval's report and quantize's budget). The split is tokenized once,
    at the first call, and reused by every epoch's validation; batches group similar lengths,
    as eval's predictions do (rt-polarity's validation split: about half the padded tokens)."""
    from pocketsize.runtime.scoring import (
        ScoringMemoryError,
        encode_split,
        evaluate_forward,
        torch_forward,
    )

    encoded, skipped = [], []

    def validate(model) -> dict:
        if skipped:
            return {}
        if not encoded:
            encoded.append(encode_split(task, split, tokenizer, max_length))
        was_training = model.training
        forward = torch_forward(model, task)
        try:
            metrics = evaluate_forward(encoded[0], forward, batch_size, by_length=True)
        except ScoringMemoryError as e:  # the training goes on; it is what must not be lost
            print(f"note: validation skipped from here on: {e}", file=sys.stderr)
            skipped.append(str(e))
            metrics = {}
        model.train(was_training)
        return metrics

    return validate
