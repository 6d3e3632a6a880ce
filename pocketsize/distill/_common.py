"""What finetune and distill share: loading models, labels, lengths, training arguments, eval."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pocketsize.errors import PocketsizeError

# Columns the trainers pass through besides the tokenizer's model inputs.
LABEL_COLUMNS = ("labels", "start_positions", "end_positions")
INDEX_COLUMN = "ps_index"  # row of an example in the teacher-output cache / transfer set
LENGTH_COLUMN = "length"  # token count, read by the length-grouped sampler


def load_data(data):
    """A DatasetDict from a DatasetDict, a catalogue name, a hub id or local files."""
    if hasattr(data, "keys") and hasattr(data, "column_names"):
        return data
    if isinstance(data, (str, os.PathLike)):
        try:
            from pocketsize.data import load_dataset
        except ImportError as e:
            raise PocketsizeError(
                f"cannot load dataset {data!r}: pocketsize.data is not available ({e}); "
                "pass a datasets.DatasetDict instead"
            ) from e
        return load_dataset(str(data))
    raise PocketsizeError(
        f"data must be a datasets.DatasetDict or a dataset name, not {type(data).__name__}"
    )


def require_split(data, name: str):
    if name not in data:
        raise PocketsizeError(
            f"the dataset has no {name!r} split (it has {sorted(data)}); provide one"
        )
    return data[name]


def _default_label_names(config) -> bool:
    return all(str(v) == f"LABEL_{k}" for k, v in (config.id2label or {}).items())


def check_labels(model, names: list[str] | None, who: str) -> None:
    """Refuse a classifier whose label set differs from the dataset's."""
    config = getattr(model, "config", None)
    if names is None or config is None or not hasattr(config, "num_labels"):
        return
    if config.num_labels != len(names):
        raise PocketsizeError(
            f"the {who} predicts {config.num_labels} labels but the dataset has {len(names)} "
            f"({', '.join(names)}); fine-tune the {who} on this dataset first (pocketsize finetune)"
        )
    if not _default_label_names(config):
        model_names = [str(config.id2label[i]) for i in range(config.num_labels)]
        if model_names != names:
            raise PocketsizeError(
                f"the {who}'s labels {model_names} differ from the dataset's {names}; "
                "use a model fine-tuned on this dataset or relabel the dataset"
            )


def load_model(ref, task, labels: list[str] | None = None) -> nn.Module:
    """A model from an in-memory module, a pocketsize module dir, a catalogue name, dir or hub id.

    `labels` (classification) gives a base encoder a fresh head with these label names.
    """
    if isinstance(ref, nn.Module):
        return ref
    try:
        return task.load_model(str(ref), labels=labels)
    except PocketsizeError:
        raise
    except (OSError, ValueError) as e:
        raise PocketsizeError(
            f"cannot load model {ref!r}: {str(e).splitlines()[0]}; give a model directory, "
            "a catalogue name or a hub id"
        ) from e


def load_tokenizer(ref, model=None):
    """The tokenizer for `ref` (path/name) or for an in-memory model saved from a directory."""
    if ref is not None and not isinstance(ref, (str, os.PathLike)):
        return ref  # already a tokenizer
    if ref is None and model is not None:
        ref = getattr(model, "name_or_path", None) or None
        if ref is None or not Path(str(ref)).exists():
            raise PocketsizeError(
                "an in-memory model needs its tokenizer: pass tokenizer=... (or a model directory)"
            )
    from pocketsize.formats.module_dir import is_module_dir

    if is_module_dir(ref):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(ref))
    from pocketsize.assets import load_tokenizer as assets_load_tokenizer

    try:
        return assets_load_tokenizer(str(ref))
    except PocketsizeError:
        raise
    except (OSError, ValueError) as e:
        raise PocketsizeError(
            f"cannot load a tokenizer for {ref!r}: {str(e).splitlines()[0]}; "
            "pass tokenizer=... or a directory with tokenizer files"
        ) from e


def fit_max_length(texts, tokenizer, model=None, percentile: float = 99.0, cap: int = 512) -> int:
    """A max length that fits the data: the 99th percentile of token counts, rounded up to 8.

    Cutting the 1% longest inputs costs little accuracy and keeps CPU batches short.
    """
    sample = list(texts[:20000])
    lengths = [len(ids) for ids in tokenizer(sample, truncation=False)["input_ids"]]
    fitted = int(np.ceil(np.percentile(lengths, percentile) / 8.0) * 8) if lengths else cap
    limit = cap
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions and positions > 0:  # XLNet has no position limit and reports -1
        limit = min(limit, int(positions))
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit and tok_limit < 1_000_000:
        limit = min(limit, int(tok_limit))
    return max(8, min(fitted, limit))


def qa_max_length(task, model, max_length: int | None) -> int:
    """The QA window length: the adapter's default within the model's positions; a document
    stride that would not fit the window is shortened (tiny models have short positions)."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 512
    positions = positions if positions > 0 else 512  # XLNet reports -1 (no limit)
    length = min(max_length or getattr(task, "max_length", 384), int(positions))
    if getattr(task, "doc_stride", 0) >= length // 2:
        task.doc_stride = length // 4
    return length


def model_input_names(tokenizer) -> list[str]:
    return list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))


def encode_split(task, split, tokenizer, max_length, with_index: bool = True):
    """Task features for a split, with only the columns the trainers use."""
    features = task.encode(split, tokenizer, max_length=max_length)
    if task.name == "extractive-qa" and "answers" in split.column_names:
        features = add_answer_positions(features, split)
    keep = set(model_input_names(tokenizer)) | set(LABEL_COLUMNS)
    drop = [c for c in features.column_names if c not in keep]
    features = features.remove_columns(drop)
    features = features.map(
        lambda b: {LENGTH_COLUMN: [len(x) for x in b["input_ids"]]},
        batched=True,
        desc="lengths",
    )
    if with_index:
        features = features.add_column(INDEX_COLUMN, list(range(len(features))))
    return features


def add_answer_positions(features, examples):
    """start/end token positions of each window's answer ([CLS] = 0 when it is not inside).

    The QA adapter encodes for prediction (context offsets per window); training needs the
    answer's token span, found here from those offsets the way the transformers run_qa
    example does.
    """
    ids = [str(i) for i in examples["id"]] if "id" in examples.column_names else None
    ids = ids or [str(i) for i in range(len(examples))]
    answers = dict(zip(ids, examples["answers"]))

    def positions(batch):
        starts, ends = [], []
        for example_id, offsets in zip(batch["example_id"], batch["offset_mapping"]):
            answer = answers[example_id]
            s = e = 0
            if answer["text"]:
                a_start = answer["answer_start"][0]
                a_end = a_start + len(answer["text"][0])
                inside = [(k, o) for k, o in enumerate(offsets) if o is not None]
                if inside and inside[0][1][0] <= a_start and inside[-1][1][1] >= a_end:
                    s = next(k for k, o in inside if o[1] > a_start)
                    e = max(k for k, o in inside if o[0] < a_end)
            starts.append(s)
            ends.append(e)
        return {"start_positions": starts, "end_positions": ends}

    return features.map(positions, batched=True, desc="answer positions")


class FeatureCollator:
    """Pads model inputs with the task's collator and passes labels/index/length through."""

    def __init__(self, task, tokenizer):
        self.pad = task.collator(tokenizer)

    def __call__(self, rows: list[dict]) -> dict:
        extra = {}
        for key in (INDEX_COLUMN, LENGTH_COLUMN):
            if key in rows[0]:
                extra[key] = torch.tensor([r[key] for r in rows])
        rows = [{k: v for k, v in r.items() if k not in extra} for r in rows]
        batch = dict(self.pad(rows))
        batch.update(extra)
        return batch


def forward_kwargs(model: nn.Module, batch: dict, **flags) -> dict:
    """The part of a batch (and of the output flags) that the model's forward accepts."""
    params = inspect.signature(model.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    names = {"input_ids", "attention_mask", "token_type_ids", "position_ids"}
    out = {k: v for k, v in batch.items() if k in names and (takes_any or k in params)}
    out.update({k: v for k, v in flags.items() if v and (takes_any or k in params)})
    return out


def get_output(outputs: Any, name: str):
    if isinstance(outputs, torch.Tensor):
        return outputs if name == "logits" else None
    if isinstance(outputs, dict):
        return outputs.get(name)
    return getattr(outputs, name, None)


def bf16_supported() -> bool:
    """True when this CPU runs bfloat16 matmuls natively (AVX-512 BF16 or AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
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
    return root / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def work_dir_for(out: Path) -> Path:
    """Where Trainer checkpoints live while a stage runs: beside the output, kept for resume."""
    return out.parent / f".{out.name}.checkpoints"


def training_arguments(
    work_dir: Path,
    *,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    seed: int,
    bf16: bool,
    max_steps: int,
    save_steps: int | None,
    logging_steps: int,
    warmup_ratio: float,
    weight_decay: float,
    group_by_length: bool,
    progress: bool,
    **extra,
):
    from transformers import TrainingArguments

    kw = dict(
        output_dir=str(work_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size * 2,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        lr_scheduler_type="linear",
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        group_by_length=group_by_length,
        length_column_name=LENGTH_COLUMN,
        save_strategy="steps" if save_steps else "epoch",
        save_steps=save_steps or 500,
        save_total_limit=2,
        save_safetensors=True,
        logging_steps=logging_steps,
        report_to=[],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        eval_strategy="no",
    )
    kw.update(extra)
    return TrainingArguments(**kw)


def prepare_work_dir(out: Path, resume: bool) -> tuple[Path, str | None]:
    """The Trainer's checkpoint directory beside `out` and the checkpoint to resume from.

    Without resume, checkpoints of an earlier attempt are removed so training starts over.
    """
    work = work_dir_for(out)
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
        return work, None
    checkpoint = last_checkpoint(work)
    if checkpoint is None:
        raise PocketsizeError(
            f"resume=True but {work} holds no checkpoint; run without resume to start over"
        )
    return work, checkpoint


def last_checkpoint(work_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(work_dir)) if work_dir.is_dir() else None


def evaluate_model(model, tokenizer, task, split, max_length=None, batch_size: int = 64) -> dict:
    """The task's metrics of `model` on a dataset split, through eval's one scoring path."""
    from pocketsize.eval.scoring import encode_split, evaluate_forward, torch_forward

    was_training = model.training
    encoded = encode_split(task, split, tokenizer, max_length)
    metrics = evaluate_forward(encoded, torch_forward(model, task), batch_size)
    model.train(was_training)
    return metrics


def headline(metrics: dict, task) -> dict:
    """The scalar part of a metrics dict (for stage.json and printing)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def write_stage(out_dir: Path, stage: str, **fields) -> None:
    from pocketsize.fsutil import write_json

    write_json(out_dir / "stage.json", {"stage": stage, **fields})


def write_model_card(out_dir: Path, title: str, lines: list[str]) -> None:
    from pocketsize.fsutil import atomic_write_text

    atomic_write_text(out_dir / "README.md", f"# {title}\n\n" + "\n".join(lines) + "\n")


def describe(ref) -> str:
    if isinstance(ref, nn.Module):
        return f"<in-memory {type(ref).__name__}>"
    return str(ref)


def json_safe(obj):
    return json.loads(json.dumps(obj, default=str))
