"""Any PyTorch classifier: the task over array inputs (e.g. scikit-learn's digits images).

The adapter is the smallest contract a model can meet: a callable from a batch (a dict of
tensors named by the task's `input_names`, e.g. `pixel_values`) to logits. Such a model is
saved as a pocketsize module directory (pocketsize.formats.module_dir: config.json with its
class and constructor arguments, label names, plus model.safetensors): never pickles. A class
keeps its constructor arguments in `self.config` (a dict); `@register_module("name")` lets its
directories load without trust_module_code.

    data = load_digits_dataset()
    teacher = ps.finetune(DigitsCNN(), data, "out/cnn")                  # fine-tune
    student = ps.distill("out/cnn", data, DigitsMLP(), "out/mlp")        # distil

The teacher may be any callable from a batch's inputs (keyword arguments named by
`input_names`) to logits, e.g. a wrapped scikit-learn or JAX model.
"""

from __future__ import annotations

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
    student_kinds = ()  # any module (or its directory) given as student=
    accepts_transfer_text = False
    cacheable = False

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        return None

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
    register_module,
    save_module_dir,
)


def __getattr__(name: str):
    # torch is imported only when an example model class is asked for
    if name in ("DigitsCNN", "DigitsMLP"):
        from pocketsize.zoo import digits

        return getattr(digits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
