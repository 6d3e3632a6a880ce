"""Teacher fine-tuning: a task head on a base encoder (or further training of any model).

The same trainer as distillation, with no teacher: transformers' Trainer does the loop
(checkpoints, resume, the device), pocketsize adds the non-finite guard, per-epoch validation
and CPU-friendly defaults: dynamic padding, length-grouped batches, a max length fitted to the
data, optional bf16 autocast.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from transformers import PreTrainedModel, set_seed

from pocketsize import processes
from pocketsize.data.progress import bars_follow_progress
from pocketsize.distill import loading as load
from pocketsize.distill import records as R
from pocketsize.distill import training as T
from pocketsize.distill.features import training_features
from pocketsize.distill.losses import LossContext, needs_of
from pocketsize.distill.saving import check_output_width, check_reloadable, save_model
from pocketsize.fsutil import atomic_dir, check_output_dir


@bars_follow_progress
def finetune(
    model,
    data,
    out=None,
    *,
    epochs: float = 2,
    task=None,
    tokenizer=None,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    max_length: int | None = None,
    bf16: bool | str = "auto",
    seed: int = 0,
    shuffle: bool = True,
    max_steps: int = -1,
    save_steps: int | None = None,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    logging_steps: int = 50,
    evaluate: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    callbacks=None,
    **training_kw,
) -> Path:
    """Fine-tune `model` (catalogue name, directory, hub id or model) on `data`'s train split.

    Writes a save_pretrained directory (model, tokenizer, id2label/label2id from the dataset's
    ClassLabel names, stage.json with the validation metrics) and returns its path.
    `resume=True` continues from the last checkpoint of an interrupted run into the same `out`.
    bf16="auto" turns bfloat16 autocast on where the hardware has native bf16: MiniLM-L6 steps
    took ~0.5x the wall time with the same loss on an AVX-512-BF16 CPU (distill_benchmark.py).
    Under torchrun / accelerate launch every process trains its share (DDP) and the main
    process alone writes `out`.
    """
    from pocketsize.tasks import get_task, task_for_dataset

    started = time.time()
    out = Path(out) if out is not None else T.default_out("finetune")
    check_output_dir(out, overwrite)
    processes.start()
    with processes.main_first():  # the main process fetches what is not cached yet
        data = load.load_data(data)
    task = get_task(task) if task is not None else task_for_dataset(data)
    train = load.require_split(data, "train")
    names = task.labels(train)
    bf16 = T.resolve_bf16(bf16)

    set_seed(seed)  # the new head's initialisation
    if not hasattr(model, "forward"):
        with processes.main_first():  # fetched once, by the main process
            if task.needs_tokenizer:
                tokenizer = load.load_tokenizer(tokenizer if tokenizer is not None else model)
            model_obj = load.load_model(model, task, labels=names)
    else:
        model_obj = model
        if task.needs_tokenizer:
            tokenizer = load.load_tokenizer(tokenizer, model_obj)
        if names is not None and hasattr(getattr(model_obj, "config", None), "to_dict"):
            model_obj.config.id2label = dict(enumerate(names))
            model_obj.config.label2id = {n: i for i, n in enumerate(names)}
    from pocketsize.tasks import check_architecture

    check_architecture(getattr(getattr(model_obj, "config", None), "model_type", None), task)
    if tokenizer is not None and isinstance(model_obj, PreTrainedModel):
        from pocketsize.formats.checkpoint import check_tokenizer_fits

        where = model if isinstance(model, (str, os.PathLike)) else "the model"
        check_tokenizer_fits(model_obj, tokenizer, where)
    load.check_labels(model_obj, names, "model")
    check_reloadable(model_obj)

    max_length = task.training_max_length(train, tokenizer, model_obj, max_length)
    features = training_features(task, train, tokenizer, max_length, with_index=False)
    check_output_width(model_obj, features, task, tokenizer, names, "model")
    # a transformers model computes its own loss for the labels (exactly as transformers'
    # Trainer fine-tunes it); any other module learns from the task's label loss
    weights = {"model": 1.0} if isinstance(model_obj, PreTrainedModel) else {task.hard_loss: 1.0}
    outputs = task.training_outputs or task.output_names
    context = LossContext(output_names=tuple(outputs))

    work, checkpoint = T.prepare_work_dir(out, resume)
    args = T.training_arguments(
        work,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        bf16=bf16,
        max_steps=max_steps,
        save_steps=save_steps,
        logging_steps=logging_steps,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        group_by_length=shuffle and T.grouped_by_length(features),
        progress=progress,
        **training_kw,
    )
    validate = None
    if evaluate and "validation" in data:
        validate = T.validator(task, tokenizer, data["validation"], max_length)

    result, model_obj, per_epoch, losses = T.train(
        model_obj, task, features, tokenizer, args,
        loss_weights=weights, loss_context=context, needs=needs_of(weights),
        callbacks=callbacks, checkpoint=checkpoint, validate=validate, shuffle=shuffle,
    )  # fmt: skip
    if not processes.is_main():
        processes.wait()  # for the main process to write the model
        return out
    metrics = T.final_validation(per_epoch, result, validate, model_obj) if validate else {}

    with atomic_dir(out, overwrite) as tmp:
        save_model(model_obj, tokenizer, tmp, task, names)
        R.write_stage(
            tmp,
            "finetune",
            model=load.describe(model),
            task=task.name,
            labels=names,
            config=dict(
                losses=weights,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                max_length=max_length,
                bf16=bf16,
                seed=seed,
                max_steps=max_steps,
                shuffle=shuffle,
                processes=processes.world_size(),
            ),
            train_examples=len(train),
            steps=result.global_step,
            resumed_from=checkpoint,
            train_loss=result.training_loss,
            train_runtime_s=result.metrics.get("train_runtime"),
            validation=R.headline(metrics, task),
            validation_per_epoch=per_epoch,
            losses=losses,
            wall_time_s=round(time.time() - started, 2),
        )
        R.write_model_card(
            tmp,
            f"{load.describe(model)} fine-tuned for {task.name}",
            [
                "Written by `pocketsize finetune`.",
                f"- labels: {names}" if names else f"- task: {task.name}",
                f"- epochs: {epochs}, batch size {batch_size}, learning rate {learning_rate}, "
                f"max length {max_length}, bf16 autocast {bf16}, seed {seed}",
                f"- validation: {R.headline(metrics, task)}",
            ],
        )
    shutil.rmtree(work, ignore_errors=True)
    processes.wait()
    return out
