"""Teacher fine-tuning: a task head on a base encoder (or further training of any model).

transformers' Trainer does the loop; pocketsize only picks CPU-friendly defaults: dynamic
padding, length-grouped batches, a max length fitted to the data, optional bf16 autocast.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from transformers import Trainer, set_seed

from pocketsize.distill import _common as c
from pocketsize.fsutil import atomic_dir, check_output_dir


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
    """
    from pocketsize.tasks import get_task, task_for_dataset

    started = time.time()
    out = Path(out) if out is not None else c.default_out("finetune")
    check_output_dir(out, overwrite)
    data = c.load_data(data)
    task = get_task(task) if task is not None else task_for_dataset(data)
    from pocketsize.distill import other_tasks

    if task.name in other_tasks.OTHER_TASKS:
        defaults = _finetune_defaults()
        kw = {k: v for k, v in locals().items() if k in defaults}
        return other_tasks.finetune_other(model, data, out, task, {**kw, **training_kw}, defaults)
    train = c.require_split(data, "train")
    names = task.labels(train)
    bf16 = c.resolve_bf16(bf16)

    set_seed(seed)  # the new head's initialisation
    if not hasattr(model, "forward"):
        tokenizer = c.load_tokenizer(tokenizer if tokenizer is not None else model)
        model_obj = c.load_model(model, task, labels=names)
    else:
        model_obj = model
        tokenizer = c.load_tokenizer(tokenizer, model_obj)
        if names is not None and hasattr(model_obj, "config"):
            model_obj.config.id2label = dict(enumerate(names))
            model_obj.config.label2id = {n: i for i, n in enumerate(names)}
    c.check_labels(model_obj, names, "model")

    if max_length is None and names is not None:
        max_length = c.fit_max_length(train["text"], tokenizer, model_obj)
    elif names is None:
        max_length = c.qa_max_length(task, model_obj, max_length)
    features = c.encode_split(task, train, tokenizer, max_length, with_index=False)

    work, checkpoint = c.prepare_work_dir(out, resume)
    args = c.training_arguments(
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
        group_by_length=True,
        progress=progress,
        **training_kw,
    )
    trainer = _TaskTrainer(
        model=model_obj,
        args=args,
        train_dataset=features,
        data_collator=c.FeatureCollator(task, tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    model_obj = trainer.model
    metrics = {}
    if evaluate and "validation" in data:
        metrics = c.evaluate_model(model_obj, tokenizer, task, data["validation"], max_length)

    with atomic_dir(out, overwrite) as tmp:
        model_obj.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        c.write_stage(
            tmp,
            "finetune",
            model=c.describe(model),
            task=task.name,
            labels=names,
            config=dict(
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                max_length=max_length,
                bf16=bf16,
                seed=seed,
                max_steps=max_steps,
            ),
            train_examples=len(train),
            steps=result.global_step,
            train_loss=result.training_loss,
            train_runtime_s=result.metrics.get("train_runtime"),
            validation=c.headline(metrics, task),
            wall_time_s=round(time.time() - started, 2),
        )
        c.write_model_card(
            tmp,
            f"{c.describe(model)} fine-tuned for {task.name}",
            [
                "Written by `pocketsize finetune`.",
                f"- labels: {names}" if names else "- task: extractive QA",
                f"- epochs: {epochs}, batch size {batch_size}, learning rate {learning_rate}, "
                f"max length {max_length}, bf16 autocast {bf16}, seed {seed}",
                f"- validation: {c.headline(metrics, task)}",
            ],
        )
    shutil.rmtree(work, ignore_errors=True)
    return out


class _TaskTrainer(Trainer):
    """A plain Trainer that drops pocketsize's bookkeeping columns before the forward pass."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {k: v for k, v in inputs.items() if k not in (c.LENGTH_COLUMN, c.INDEX_COLUMN)}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def _finetune_defaults() -> dict:
    import inspect

    return {
        n: p.default
        for n, p in inspect.signature(finetune).parameters.items()
        if p.default is not inspect.Parameter.empty and n not in ("out", "task")
    }
