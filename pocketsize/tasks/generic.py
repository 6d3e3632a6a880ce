"""Any PyTorch classifier: a task over array inputs, a module registry, save/load, training.

The adapter is the smallest contract a model can meet: a callable from a batch (a dict of
tensors named by the task's `input_names`, e.g. `pixel_values`) to logits. Such a model is
saved as config.json (its registry name and constructor arguments, label names) plus
model.safetensors, and loaded by looking the name up in `MODULES`: never pickles, never code
named by the file itself. Register your own classes with `@register_module("name")`; a class
takes its configuration as keyword arguments and keeps them in `self.config` (a dict).

    data = load_digits_dataset()
    teacher = train_module(DigitsCNN(), data, "out/cnn")                        # fine-tune
    student = train_module(DigitsMLP(), data, "out/mlp", teacher="out/cnn")     # distil
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.tasks.base import register_task
from pocketsize.tasks.classification import TextClassification

MODULES: dict[str, type] = {}
BUILTIN_MODULES = ("digits-cnn", "digits-mlp")  # defined on first use (imports torch)
CONFIG_KEY = "pocketsize_module"


class ArrayClassification(TextClassification):
    """Classification of fixed-shape float arrays (images, feature vectors): no tokenizer."""

    name = "array-classification"
    pipeline_task = ""
    input_names: tuple[str, ...] = ("pixel_values",)
    data_columns = ("pixel_values", "label")
    needs_tokenizer = False

    def auto_model_class(self):
        raise PocketsizeError(
            "array-classification models are no transformers architecture; load them with "
            "pocketsize.tasks.generic.load_module_dir"
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


# ---- the module registry, saving and loading ----


def register_module(name: str, cls: type | None = None):
    """Register an nn.Module class under `name` (usable as a class decorator)."""

    def add(c):
        MODULES[name] = c
        c.pocketsize_name = name
        return c

    return add(cls) if cls is not None else add


def is_module_dir(path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return CONFIG_KEY in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def registered_name(model) -> str:
    name = getattr(type(model), "pocketsize_name", None)
    if MODULES.get(name) is not type(model):
        raise PocketsizeError(
            f"{type(model).__name__} is not a registered module; decorate its class with "
            "@pocketsize.tasks.generic.register_module('name') so it can be loaded again"
        )
    return name


def save_module_dir(model, out_dir, labels: list[str] | None = None) -> Path:
    """Write config.json (registry name, constructor arguments, labels) + model.safetensors."""
    from safetensors.torch import save_model

    name = registered_name(model)
    module_config = dict(getattr(model, "config", None) or {})
    config: dict[str, Any] = {CONFIG_KEY: name, "module_config": module_config}
    num_labels = module_config.get("num_labels")
    if labels is not None:
        config["id2label"] = {str(i): str(n) for i, n in enumerate(labels)}
        config["label2id"] = {str(n): i for i, n in enumerate(labels)}
        num_labels = len(labels)
    if num_labels is not None:
        config["num_labels"] = int(num_labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_model(model, str(out_dir / "model.safetensors"))
    return out_dir


def load_module_dir(path):
    """Rebuild a registered module from its directory and load its safetensors weights."""
    from safetensors.torch import load_model

    path = Path(path)
    if not is_module_dir(path):
        raise PocketsizeError(
            f"{path} is not a pocketsize module directory (no config.json with {CONFIG_KEY}); "
            "save the model with save_module_dir"
        )
    config = json.loads((path / "config.json").read_text())
    name = config[CONFIG_KEY]
    if name in BUILTIN_MODULES and name not in MODULES:
        _digits_models()
    if name not in MODULES:
        raise PocketsizeError(
            f"{path} holds a {name!r} module but no class is registered under that name "
            f"(known: {', '.join(sorted(MODULES))}); import the code that registers it first"
        )
    try:
        model = MODULES[name](**config.get("module_config", {}))
        load_model(model, str(path / "model.safetensors"))
    except (TypeError, RuntimeError) as e:
        raise PocketsizeError(
            f"cannot rebuild {name!r} from {path} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160]}); the weights do not match the registered class"
        ) from None
    return model.eval()


def load_module(ref):
    """An in-memory module (or any callable from a batch to logits) stays; a directory is
    loaded with load_module_dir."""
    if callable(ref):
        return ref
    return load_module_dir(ref)


def module_labels(path) -> list[str] | None:
    config = json.loads((Path(path) / "config.json").read_text())
    id2label = config.get("id2label")
    return [id2label[k] for k in sorted(id2label, key=int)] if id2label else None


# ---- two small image classifiers for the digits example ----


def _digits_models():
    if "DigitsCNN" not in globals():
        globals().update(zip(("DigitsCNN", "DigitsMLP"), _define_digits_models()))
    return globals()["DigitsCNN"], globals()["DigitsMLP"]


def _define_digits_models():
    import torch
    from torch import nn

    @register_module("digits-cnn")
    class DigitsCNN(nn.Module):
        """Two 3x3 convolutions, a max-pool and two linear layers: the teacher."""

        def __init__(self, channels: int = 16, hidden: int = 64, num_labels: int = 10):
            super().__init__()
            self.config = dict(channels=channels, hidden=hidden, num_labels=num_labels)
            self.features = nn.Sequential(
                nn.Conv2d(1, channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, 2 * channels, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(2 * channels * 4 * 4, hidden),
                nn.ReLU(),
                nn.Linear(hidden, num_labels),
            )

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(pixel_values))

    @register_module("digits-mlp")
    class DigitsMLP(nn.Module):
        """One hidden layer over the 64 pixels: the student."""

        def __init__(self, hidden: int = 32, num_labels: int = 10, in_features: int = 64):
            super().__init__()
            self.config = dict(hidden=hidden, num_labels=num_labels, in_features=in_features)
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(in_features, hidden),
                nn.ReLU(),
                nn.Linear(hidden, num_labels),
            )

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.net(pixel_values)

    return DigitsCNN, DigitsMLP


def __getattr__(name: str):
    # torch is imported only when a model class is asked for
    if name in ("DigitsCNN", "DigitsMLP"):
        return dict(zip(("DigitsCNN", "DigitsMLP"), _digits_models()))[name]
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
    registered_name(model)  # the trained student must be loadable again: checked up front
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
        save_module_dir(model, tmp, labels=names)
        write_json(
            tmp / "stage.json",
            {
                "stage": "distill" if teacher_model is not None else "finetune",
                "task": task.name,
                "module": type(model).pocketsize_name,
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
