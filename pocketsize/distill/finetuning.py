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
from pocketsize.distill.config import FinetuneConfig
from pocketsize.distill.features import training_features
from pocketsize.distill.losses import LossContext, needs_of
from pocketsize.distill.saving import check_output_width, check_reloadable, save_model
from pocketsize.formats.records import stage_output
from pocketsize.fsutil import check_output_dir
from pocketsize.options import keywords_from


@bars_follow_progress
@keywords_from(FinetuneConfig)
def finetune(
    model,
    data,
    out=None,
    *,
    config: FinetuneConfig | None = None,
    task=None,
    tokenizer=None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    callbacks=None,
    trust_remote_code: bool = False,
    trust_module_code: bool = False,
    **options,
) -> Path:
    """Fine-tune `model` (catalogue name, directory, hub id or model) on `data`'s train split.

    Writes a save_pretrained directory (model, tokenizer, id2label/label2id from the dataset's
    ClassLabel names, stage.json with the validation metrics) and returns its path.
    config: a FinetuneConfig (pocketsize.distill.config); keywords build or override one.
    `resume=True` continues from the last checkpoint of an interrupted run into the same `out`.
    bf16="auto" turns bfloat16 autocast on where the hardware has native bf16: MiniLM-L6 steps
    took ~0.5x the wall time with the same loss on an AVX-512-BF16 CPU (distill_benchmark.py).
    Under torchrun / accelerate launch every process trains its share (DDP) and the main
    process alone writes `out`.
    trust_remote_code / trust_module_code: let a model directory's own code run (an auto_map
    in its config or tokenizer config; a module directory's class from outside pocketsize);
    off, such a model is refused in one line before any work.
    """
    from pocketsize.tasks import resolve_task

    cfg = FinetuneConfig.build(config, **options)
    started = time.time()
    out = Path(out) if out is not None else T.default_out("finetune")
    check_output_dir(out, overwrite)
    processes.start()
    with processes.main_first():  # the main process fetches what is not cached yet
        data = load.load_data(data)
    task = resolve_task(task, model=load.saved_model_dir(model), data=data)
    train = load.require_split(data, "train")
    names = task.labels(train)
    bf16 = T.resolve_bf16(cfg.bf16_setting)
    set_seed(cfg.seed)  # the new head's initialisation
    trust = {"trust_remote_code": trust_remote_code, "trust_module_code": trust_module_code}
    model_obj, tokenizer = _model_and_tokenizer(model, tokenizer, task, names, trust)
    max_length = task.training_max_length(train, tokenizer, model_obj, cfg.max_length)
    features = training_features(task, train, tokenizer, max_length, with_index=False)
    check_output_width(model_obj, features, task, tokenizer, names, "model")
    # a transformers model computes its own loss for the labels (exactly as transformers'
    # Trainer fine-tunes it); any other module learns from the task's label loss
    weights = {"model": 1.0} if isinstance(model_obj, PreTrainedModel) else {task.hard_loss: 1.0}
    context = LossContext.of_task(task, task.training_outputs or task.output_names)
    work, checkpoint = T.prepare_work_dir(out, resume)
    args = T.training_arguments(
        work, cfg, learning_rate=cfg.learning_rate, bf16=bf16, features=features, progress=progress
    )
    validate = None
    split = T.validation_split(task, data, cfg.evaluate)
    if split is not None:
        validate = T.validator(task, tokenizer, split, max_length)
    result, model_obj, per_epoch, losses = T.train(
        model_obj, task, features, tokenizer, args,
        loss_weights=weights, loss_context=context, needs=needs_of(weights),
        callbacks=callbacks, checkpoint=checkpoint, validate=validate, shuffle=cfg.shuffle,
    )  # fmt: skip
    if not processes.is_main():
        processes.wait()  # for the main process to write the model
        return out
    metrics = T.final_validation(per_epoch, result, validate, model_obj) if validate else {}
    with stage_output(out, "finetune", overwrite) as tmp:
        save_model(model_obj, tokenizer, tmp, task, names)
        settings = dict(losses=weights, max_length=max_length, bf16=bf16)
        run = dict(train_examples=len(train), steps=result.global_step, resumed_from=checkpoint)
        history = dict(validation_per_epoch=per_epoch, losses=losses)
        history["wall_time_s"] = round(time.time() - started, 2)
        _write_record(tmp, model, task, names, cfg, settings, run, result, metrics, history)
    shutil.rmtree(work, ignore_errors=True)
    processes.wait()
    return out


def _model_and_tokenizer(model, tokenizer, task, names, trust: dict):
    """The model to train (loaded, or the caller's with the data's label names) and its
    tokenizer, checked against each other and the task."""
    from pocketsize.tasks import check_architecture

    if not hasattr(model, "forward"):
        with processes.main_first():  # fetched once, by the main process
            if task.needs_tokenizer:
                tokenizer = load.load_tokenizer(
                    tokenizer if tokenizer is not None else model,
                    trust_remote_code=trust["trust_remote_code"],
                )
            model_obj = load.load_model(model, task, labels=names, **trust)
    else:
        model_obj = model
        if task.needs_tokenizer:
            tokenizer = load.load_tokenizer(tokenizer, model_obj)
        if names is not None and hasattr(getattr(model_obj, "config", None), "to_dict"):
            model_obj.config.id2label = dict(enumerate(names))
            model_obj.config.label2id = {n: i for i, n in enumerate(names)}
    check_architecture(getattr(getattr(model_obj, "config", None), "model_type", None), task)
    if tokenizer is not None and isinstance(model_obj, PreTrainedModel):
        from pocketsize.formats.checkpoint import check_tokenizer_fits

        where = model if isinstance(model, (str, os.PathLike)) else "the model"
        check_tokenizer_fits(model_obj, tokenizer, where)
    load.check_labels(model_obj, names, "model")
    check_reloadable(model_obj)
    return model_obj, tokenizer


def _write_record(tmp, model, task, names, cfg, settings, run, result, metrics, history) -> None:
    """stage.json and the model card of the fine-tuned model's directory."""
    R.write_stage(
        tmp, model=load.describe(model), task=task.name, labels=names,
        config=dict(
            losses=settings["losses"], epochs=cfg.epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, max_length=settings["max_length"],
            bf16=settings["bf16"], seed=cfg.seed, max_steps=cfg.max_steps, shuffle=cfg.shuffle,
            processes=processes.world_size(),
        ),
        **run, train_loss=result.training_loss,
        train_runtime_s=result.metrics.get("train_runtime"),
        validation=R.headline(metrics, task), **history,
    )  # fmt: skip
    R.write_model_card(
        tmp,
        f"{load.describe(model)} fine-tuned for {task.name}",
        [
            "Written by `pocketsize finetune`.",
            f"- labels: {names}" if names else f"- task: {task.name}",
            f"- epochs: {cfg.epochs}, batch size {cfg.batch_size}, learning rate "
            f"{cfg.learning_rate}, max length {settings['max_length']}, bf16 autocast "
            f"{settings['bf16']}, seed {cfg.seed}",
            f"- validation: {R.headline(metrics, task)}",
        ],
    )
