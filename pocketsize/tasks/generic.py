"""Any PyTorch classifier: a task over array inputs, a module registry, save/load, training.

The adapter is the smallest contract a model can meet: a callable from a batch (a dict of
tensors named by the task's `input_names`, e.g. `pixel_values`) to logits. Such a model is
saved as a pocketsize module directory (pocketsize.formats.module_dir: config.json with its
class and constructor arguments, label names, plus model.safetensors): never pickles. A class
keeps its constructor arguments in `self.config` (a dict); `@register_module("name")` lets its
directories load without trust_module_code.

    data = load_digits_dataset()
    teacher = train_module(DigitsCNN(), data, "out/cnn")                        # fine-tune
    student = train_module(DigitsMLP(), data, "out/mlp", teacher="out/cnn")     # distil
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.tasks.base import register_task
from pocketsize.tasks.classification import TextClassification


class ArrayClassification(TextClassification):
    """Classification of fixed-shape float arrays (images, feature vectors): no tokenizer."""

    name = "array-classification"
    pipeline_task = ""
    architecture_suffixes = ()
    optimum_task = None
    input_names: tuple[str, ...] = ("pixel_values",)
    data_columns = ("pixel_values", "label")
    needs_tokenizer = False

    def auto_model_class(self):
        raise PocketsizeError(
            "array-classification models are no transformers architecture; load them with "
            "pocketsize.formats.module_dir.load_module_dir"
        )

    def ort_model_class(self):
        raise PocketsizeError(
            "array-classification ONNX models have no optimum class; evaluate the directory "
            "with pocketsize.evaluate or run model.onnx in onnxruntime"
        )

    def encode(self, dataset, tokenizer=None, max_length: int | None = None):
        missing = [c for c in self.data_columns if c not in dataset.column_names]
        if missing:
            raise PocketsizeError(
                f"the data has no {', '.join(missing)} column(s) for {self.name}; give "
                f"columns {', '.join(self.data_columns)}"
            )
        return dataset.select_columns(list(self.data_columns)).rename_column("label", "labels")

    def collator(self, tokenizer=None):
        import torch

        def collate(rows: list[dict]) -> dict:
            batch = {
                name: torch.as_tensor(np.asarray([r[name] for r in rows], dtype=np.float32))
                for name in self.input_names
            }
            if "labels" in rows[0]:
                batch["labels"] = torch.as_tensor([r["labels"] for r in rows], dtype=torch.long)
            return batch

        return collate

    def show_example(self, example: dict) -> dict[str, Any]:
        return {}


register_task(ArrayClassification.name, ArrayClassification)


# The module directory format and the example models live below the task layer; the names
# stay importable from here.
from pocketsize.formats.module_dir import (  # noqa: E402, F401
    MODULES,
    init_style,
    is_module_dir,
    load_module_dir,
    module_config,
    module_labels,
    register_module,
    save_module_dir,
)


def load_module(ref):
    """An in-memory module (or any callable from a batch to logits) stays; a directory is
    loaded with load_module_dir."""
    if callable(ref):
        return ref
    return load_module_dir(ref)


def __getattr__(name: str):
    # torch is imported only when an example model class is asked for
    if name in ("DigitsCNN", "DigitsMLP"):
        from pocketsize.zoo import digits

        return getattr(digits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- training: fine-tune (labels) or distil (teacher logits) any registered module ----


def train_module(
    model,
    data,
    out,
    *,
    teacher=None,
    losses: dict | None = None,
    temperature: float = 2.0,
    task=None,
    epochs: float = 3,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    max_steps: int = -1,
    seed: int = 0,
    logging_steps: int = 10,
    callbacks=None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Train `model` on `data`'s train split and save it to `out` (config + safetensors).

    model: a registered module (or its directory). teacher: a module, a module directory, or
    any callable from a batch's inputs (keyword arguments named by the task's input_names) to
    logits, e.g. a wrapped scikit-learn or JAX model.

    Without a teacher: cross-entropy on the labels (fine-tuning). With a teacher (a module or
    a module directory): the distillation losses of pocketsize.distill's registry, by default
    {"kl": 0.5, "ce": 0.5} at `temperature` (Hinton et al.). transformers' Trainer runs the loop.
    """
    import torch
    from transformers import Trainer, set_seed

    from pocketsize.distill import LOSSES, LossContext
    from pocketsize.fsutil import atomic_dir, check_output_dir, write_json
    from pocketsize.tasks import get_task, task_for_dataset

    started = time.time()
    out = Path(out)
    check_output_dir(out, overwrite)
    task = get_task(task) if task is not None else task_for_dataset(data)
    if "train" not in data:
        raise PocketsizeError(f"the dataset has no 'train' split (it has {sorted(data)})")
    names = list(data["train"].features["label"].names)
    set_seed(seed)
    model = load_module(model)
    init_style(type(model), module_config(model))  # loadable again? checked up front
    teacher_model = load_module(teacher) if teacher is not None else None
    weights = dict(losses or ({"kl": 0.5, "ce": 0.5} if teacher_model is not None else {"ce": 1}))
    unknown = [n for n in weights if n not in LOSSES]
    if unknown:
        raise PocketsizeError(f"unknown loss(es) {unknown}; known: {', '.join(sorted(LOSSES))}")
    if teacher_model is None and set(weights) - {"ce"}:
        raise PocketsizeError(f"losses {sorted(weights)} need a teacher; pass teacher=...")
    features = task.encode(data["train"])
    with torch.no_grad():
        probe = task.collator()([features[0], features[1]])
        for who, m in (("model", model), ("teacher", teacher_model)):
            if m is None:
                continue
            width = m(**{n: probe[n] for n in task.input_names}).shape[-1]
            if width != len(names):
                raise PocketsizeError(
                    f"the {who} outputs {width} logits but the data has {len(names)} labels; "
                    "build it with num_labels matching the data"
                )
    context = LossContext(output_names=("logits",), temperature=temperature)
    if hasattr(teacher_model, "requires_grad_"):
        teacher_model.eval().requires_grad_(False)

    class _ModuleTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = model(**{n: inputs[n] for n in task.input_names})
            student = {"logits": logits}
            teacher_view = {"logits": None}
            if teacher_model is not None:
                with torch.no_grad():
                    teacher_view["logits"] = teacher_model(
                        **{n: inputs[n] for n in task.input_names}
                    )
            loss = sum(
                w * LOSSES[n](student, teacher_view, inputs, context) for n, w in weights.items()
            )
            return (loss, {"logits": logits}) if return_outputs else loss

    with atomic_dir(out, overwrite) as tmp:
        args = plain_training_arguments(
            tmp / ".work",
            epochs,
            max_steps,
            batch_size,
            learning_rate,
            seed,
            logging_steps,
            progress,
        )
        trainer = _ModuleTrainer(
            model=model,
            args=args,
            train_dataset=features,
            data_collator=task.collator(),
            callbacks=callbacks,
        )
        result = trainer.train()
        shutil.rmtree(tmp / ".work", ignore_errors=True)
        model = trainer.model.eval()
        save_module_dir(model, tmp, labels=names, task=task.name)
        write_json(
            tmp / "stage.json",
            {
                "stage": "distill" if teacher_model is not None else "finetune",
                "task": task.name,
                "module": f"{type(model).__module__}:{type(model).__qualname__}",
                "teacher": str(teacher) if isinstance(teacher, (str, os.PathLike)) else None,
                "labels": names,
                "config": dict(
                    losses=weights,
                    temperature=temperature,
                    epochs=epochs,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                    max_steps=max_steps,
                    seed=seed,
                ),
                "steps": result.global_step,
                "train_loss": result.training_loss,
                "parameters": sum(p.numel() for p in model.parameters()),
                "wall_time_s": round(time.time() - started, 2),
            },
        )
    return out


def plain_training_arguments(
    work, epochs, max_steps, batch_size, learning_rate, seed, logging_steps, progress
):
    """TrainingArguments of the non-encoder trainers (generic modules, GPT-2, T5): CPU, no
    checkpoints (these runs are short), inputs passed through as the task collates them."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(work),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        use_cpu=True,
        save_strategy="no",
        logging_steps=logging_steps,
        report_to=[],
        disable_tqdm=not progress,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
