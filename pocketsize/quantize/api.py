"""`quantize(model, data, method=...)`: resolves inputs, validates them, writes the output dir."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats import hf_load
from pocketsize.formats.model_dir import load_model_dir
from pocketsize.formats.onnx_dir import (
    QUANTIZED_FILE,
    check_onnx_file,
    is_multi_graph,
    model_file,
    ort_session,
    read_manifest,
    write_manifest,
)
from pocketsize.formats.ort_format import to_mobile
from pocketsize.formats.side_files import copy_model_side_files, has_tokenizer
from pocketsize.fsutil import atomic_dir, check_output_dir, write_json
from pocketsize.quantize.dynamic import DynamicSettings, check_node_names, quantize_dynamic_file
from pocketsize.quantize.static import (
    MIN_CALIBRATION_EXAMPLES,
    StaticSettings,
    quantize_static_file,
)

METHODS = ("dynamic", "static", "auto", "fp16", "bf16")
TRIALS_LOG = "quantize_trials.json"


def quantize(
    model,
    data=None,
    *,
    method: str = "dynamic",
    out: str | os.PathLike | None = None,
    max_drop: float = 0.01,
    task: str | None = None,
    target: str = "auto",
    per_channel: bool = True,
    weight_type: str | None = None,
    reduce_range: bool | None = None,
    quantize_embeddings: bool = True,
    op_types: list[str] | None = None,
    exclude_op_types: list[str] | None = None,
    exclude_nodes: list[str] | None = None,
    embedding_bits: int = 8,
    matmul_bits: int = 8,
    block_size: int = 32,
    calibration: str = "minmax",
    calibration_size: int = 256,
    calibration_split: str = "train",
    eval_split: str = "validation",
    eval_size: int | None = None,
    label_map: dict | str | None = None,
    max_length: int | None = None,
    exhaustive: bool = False,
    max_size_mb: float | None = None,
    min_agreement: float | None = None,
    mobile: bool = False,
    transformers_js: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    trust_remote_code: bool = False,
    trust_module_code: bool = False,
) -> Path:
    """Quantize a model and return the output directory.

    model: an ONNX directory or .onnx file (a PyTorch model directory: export it first).
    data: a DatasetDict or dataset name; needed by static (calibration split) and auto (eval split).
    method: dynamic | static | auto (accuracy budget `max_drop`, absolute drop of the task's
      primary metric on `eval_split`; with max_size_mb, a configuration whose model file is
      larger is out of budget too, so that keeping a big node such as the embedding in float
      cannot buy the accuracy; with min_agreement, one whose predictions agree with the float
      model's on less than that share of `eval_split` is out of budget too: "is this still my
      model" as a budget) | fp16 | bf16 (PyTorch casts of a PyTorch model directory).
    target: CPU preset auto | avx2 | avx512 | avx512_vnni | arm64 (weight type, reduce_range).
    embedding_bits / matmul_bits: 8 (int8) or 4 (dynamic and auto): 4-bit embedding tables
      (GatherBlockQuantized; a fused EmbedLayerNormalization is unfused first) and 4-bit MatMul
      weights (MatMulNBits), each block of `block_size` values with its own scale and zero point.
    seed: recorded in the manifest; the quantizers and the search are deterministic.
    trust_remote_code: a directory whose config or tokenizer config names its own code
      (auto_map) is quantized only with this set (its tokenizer runs that code); without, it is
      refused in one line before any work. trust_module_code: fp16 / bf16 of a module
      directory whose class lives outside pocketsize (importing it runs its code).
    label_map: data label -> model label for auto's scoring, as evaluate's (labels are matched
      to the model's id2label by name; e.g. {"0": "negative", "1": "positive"}).
    transformers_js: also lay the result out as transformers.js loads it (onnx/
      model_quantized.onnx, or onnx/model_q4.onnx with 4-bit weights).
    Output: model_quantized.onnx + config.json + tokenizer files + pocketsize.json
    (+ quantize_trials.json for auto, + model_quantized.ort with mobile=True).
    """
    if method not in METHODS:
        raise PocketsizeError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not 0 <= max_drop <= 1:
        raise PocketsizeError(
            f"max_drop={max_drop} is not an absolute metric drop in [0, 1]; e.g. 0.01 = one point"
        )
    if max_size_mb is not None and (method != "auto" or not max_size_mb > 0):
        raise PocketsizeError(
            f"max_size_mb={max_size_mb} applies to method='auto' only, as a size in MB above 0"
        )
    if min_agreement is not None and (method != "auto" or not 0 < min_agreement <= 1):
        raise PocketsizeError(
            f"min_agreement={min_agreement} applies to method='auto' only, as a share of "
            "examples in (0, 1], e.g. 0.99"
        )
    if transformers_js and (method in ("fp16", "bf16") or is_multi_graph(str(model))):
        raise PocketsizeError(
            "the transformers.js layout is written for one ONNX graph of an encoder model "
            f"(int8 or 4-bit); method={method!r} on this model is not one (drop transformers_js)"
        )
    if isinstance(model, (str, os.PathLike)):
        hf_load.refuse_own_code(model, trust_remote_code)
    if method in ("fp16", "bf16"):
        trust = {"trust_remote_code": trust_remote_code, "trust_module_code": trust_module_code}
        return _cast_torch(model, method, out, task, overwrite, **trust)
    if isinstance(model, (str, os.PathLike)) and is_multi_graph(model):
        # T5-style exports hold an encoder and decoder graphs: each is quantized
        if method != "dynamic":
            raise PocketsizeError(
                f"method={method!r} is not supported for encoder-decoder exports (several "
                "graphs); use method='dynamic'"
            )
        from pocketsize.quantize.multi_graph import quantize_graphs

        out = Path(out) if out is not None else _default_out(Path(str(model)), "int8")
        bits = dict(embedding_bits=embedding_bits, matmul_bits=matmul_bits, block_size=block_size)
        return quantize_graphs(
            model, out, overwrite=overwrite, target=target, per_channel=per_channel, **bits
        )
    dyn = DynamicSettings(
        target=target,
        weight_type=weight_type,
        reduce_range=reduce_range,
        per_channel=per_channel,
        quantize_embeddings=quantize_embeddings,
        op_types=op_types,
        exclude_op_types=list(exclude_op_types or []),
        exclude_nodes=list(exclude_nodes or []),
        embedding_bits=embedding_bits,
        matmul_bits=matmul_bits,
        block_size=block_size,
    ).resolved()
    if (embedding_bits, matmul_bits) != (8, 8) and method == "static":
        raise PocketsizeError(
            "4-bit weights are weight-only (method='dynamic' or 'auto'); drop embedding_bits / "
            "matmul_bits for static quantization"
        )
    stat = None
    if method in ("static", "auto"):
        stat = StaticSettings(
            target=target,
            calibration=calibration,
            reduce_range=reduce_range,
            per_channel=per_channel,
            exclude_nodes=list(exclude_nodes or []),
            calibration_size=calibration_size,
        )
        if op_types and method == "static":
            stat.op_types = list(op_types)
        stat = stat.resolved()
        if data is None:
            raise PocketsizeError(f"method={method!r} needs task data; pass data=... (--data NAME)")
    src_dir, onnx_file = _resolve_onnx(model)
    out = Path(out) if out is not None else _default_out(src_dir or onnx_file.parent, "int8")
    check_output_dir(out, overwrite)
    check_node_names(onnx_file, dyn.exclude_nodes)
    manifest = read_manifest(src_dir)
    task_obj = _task_of(task, src_dir)
    if transformers_js and task_obj is not None and task_obj.generates:
        raise PocketsizeError(
            f"the transformers.js layout is not written for {task_obj.name} models (past key "
            "values) yet; drop transformers_js"
        )
    source = None
    if data is not None:
        source = _prepare_data(data, task_obj, src_dir, max_length, trust_remote_code)
    if source is not None:
        source.match_labels(src_dir, label_map)
    with atomic_dir(out, overwrite) as tmp:
        dst = tmp / QUANTIZED_FILE
        info: dict = {}
        if method == "dynamic":
            info["quantization"] = quantize_dynamic_file(onnx_file, dst, dyn).to_dict()
        elif method == "static":
            cal = source.split(calibration_split, calibration_size)
            names = _input_names(onnx_file)
            cal.check_inputs(names)
            applied = quantize_static_file(
                onnx_file, dst, lambda: cal.batches(names, stat.batch_size), stat, len(cal)
            )
            info["quantization"] = dict(applied.to_dict(), calibration_examples=len(cal))
        else:
            info.update(
                _run_auto(
                    onnx_file, dst, tmp, source, dyn, stat,
                    max_drop=max_drop,
                    eval_split=eval_split,
                    eval_size=eval_size,
                    calibration_split=calibration_split,
                    exhaustive=exhaustive,
                    max_size_mb=max_size_mb,
                    min_agreement=min_agreement,
                )
            )  # fmt: skip
        info["seed"] = seed
        _finish_dir(tmp, src_dir, manifest, task_obj, model, info, mobile, transformers_js)
    return out


def _run_auto(
    onnx_file, dst, tmp, source, dyn, stat, *, max_drop, eval_split, eval_size,
    calibration_split, exhaustive, max_size_mb=None, min_agreement=None,
) -> dict:  # fmt: skip
    from pocketsize.quantize.auto import auto_quantize

    val = source.split(eval_split, eval_size, scored=True)
    names = _input_names(onnx_file)
    calib = None
    if len(source.splits.get(calibration_split, ())) >= MIN_CALIBRATION_EXAMPLES:
        cal = source.split(calibration_split, stat.calibration_size)
        calib = (lambda: cal.batches(names, stat.batch_size), len(cal))
    summary = auto_quantize(
        onnx_file, dst, val, dyn, max_drop, tmp / TRIALS_LOG, calib, stat, exhaustive,
        max_size_bytes=None if max_size_mb is None else int(max_size_mb * 1e6),
        min_agreement=min_agreement,
    )  # fmt: skip
    chosen = next(t for t in summary["trials"] if t.get("name") == summary["chosen"])
    return {
        "quantization": chosen["settings"],
        "accuracy_budget": {
            "metric": summary["metric"],
            "max_drop": max_drop,
            "float_metric": summary["float"]["metric"],
            "quantized_metric": chosen["metric"],
            "drop": chosen["drop"],
            "budget_met": summary["budget_met"],
            "miss_by": summary["miss_by"],
            "max_size_mb": max_size_mb,
            "min_agreement": min_agreement,
            "agreement": chosen["agreement"],
            "agreement_miss_by": summary.get("agreement_miss_by"),
            "trials_log": TRIALS_LOG,
        },
    }


def _finish_dir(
    tmp: Path, src_dir, manifest, task_obj, model, info, mobile, transformers_js=False
) -> None:
    if src_dir is not None:
        copy_model_side_files(src_dir, tmp)
    write_manifest(
        tmp,
        format="onnx",
        file=QUANTIZED_FILE,
        task=task_obj.name if task_obj else None,
        model_type=manifest.get("model_type"),
        source=str(model) if not hasattr(model, "forward") else type(model).__name__,
        **info,
    )
    if mobile:
        to_mobile(tmp)
    if transformers_js:
        from pocketsize.formats.transformers_js import add_transformers_js_layout

        add_transformers_js_layout(tmp)  # q8, or q4 with 4-bit weights


def _resolve_onnx(model) -> tuple[Path | None, Path]:
    """(directory holding config/tokenizer or None, the .onnx file to quantize)."""
    if hasattr(model, "forward"):
        raise PocketsizeError(
            "quantize takes an ONNX model directory or file; export the model first (ps.export)"
        )
    path = Path(str(model))
    if not path.exists():
        from pocketsize.assets import resolve_model

        path = Path(resolve_model(str(model)))
    if not path.exists():
        raise PocketsizeError(f"model {model} not found; pass an ONNX directory or .onnx file")
    if path.is_file():
        check_onnx_file(path)
        return (path.parent if (path.parent / "config.json").is_file() else None), path
    if not any(path.glob("*.onnx")) and (path / "config.json").is_file():
        raise PocketsizeError(
            f"{path} is a PyTorch model directory; export it first (pocketsize export --model "
            f"{path} --out DIR, or ps.export) and quantize the ONNX directory"
        )
    onnx_file = model_file(path, allow_ort=False)
    if onnx_file.stem.endswith("_quantized"):
        raise PocketsizeError(
            f"{onnx_file} is already quantized; pass the float graph (e.g. {path}/model.onnx)"
        )
    return path, onnx_file


def _task_of(task, src_dir):
    from pocketsize.tasks import get_task, task_of_model

    if task:
        return get_task(task)
    return task_of_model(src_dir) if src_dir is not None else None


def _prepare_data(data, task_obj, src_dir, max_length, trust_remote_code=False):
    from pocketsize.tasks import task_for_dataset

    if isinstance(data, (str, os.PathLike)):
        from pocketsize.data import load_dataset

        data = load_dataset(str(data))
    if not hasattr(data, "keys"):
        raise PocketsizeError(
            "data must be a DatasetDict (train/validation/test) or a dataset name"
        )
    if task_obj is None:
        raise PocketsizeError(
            "cannot tell the model's task; pass task='text-classification' or 'extractive-qa'"
        )
    data_task = task_for_dataset(data)
    if data_task != task_obj:
        raise PocketsizeError(
            f"the data is for {data_task.name} but the model is a {task_obj.name} model; pass matching data"
        )
    if src_dir is None or not has_tokenizer(src_dir):
        where = src_dir or "the model's directory"
        raise PocketsizeError(
            f"{where} has no tokenizer files (tokenizer.json or tokenizer_config.json + vocab); "
            "copy the tokenizer of the original model into it"
        )
    tokenizer = hf_load.load_tokenizer(src_dir, trust_remote_code)
    return _Splits(task_obj, tokenizer, data, max_length)


@dataclass
class _Splits:
    """A task's data splits and what encoding them needs; hands out one split as TaskData."""

    task: object
    tokenizer: object
    splits: dict
    max_length: int | None
    model_labels: list | None = None  # the model's id2label names, in output order
    label_map: dict | str | None = None

    def match_labels(self, src_dir, label_map) -> None:
        """Score the model's outputs against the data's labels by name (tasks.labels)."""
        from pocketsize.formats.model_dir import read_config
        from pocketsize.tasks.labels import model_labels

        self.model_labels = model_labels(read_config(src_dir)) if src_dir is not None else None
        self.label_map = label_map

    def split(self, name: str, limit: int | None, scored: bool = False):
        """One split as TaskData; `scored`: its labels matched to the model's outputs by name
        (calibration reads no labels, so a split only calibrated on is taken as it is)."""
        from pocketsize.quantize.scoring import TaskData

        if name not in self.splits:
            raise PocketsizeError(
                f"the data has no {name!r} split (has {', '.join(self.splits)}); pass another "
                "split name"
            )
        if len(self.splits[name]) == 0:
            raise PocketsizeError(f"the {name!r} split is empty; pass data with examples in it")
        examples = self.splits[name]
        if scored:
            examples, _ = self.task.align_labels(
                examples, self.model_labels, self.label_map, "the model"
            )
        return TaskData(
            self.task, self.tokenizer, examples, max_length=self.max_length, limit=limit
        )


def _input_names(onnx_file: Path) -> list[str]:
    return [i.name for i in ort_session(onnx_file).get_inputs()]


def _default_out(model_dir: Path, suffix: str) -> Path:
    return model_dir.with_name(f"{model_dir.name}-{suffix}")


def _cast_torch(
    model, dtype: str, out, task, overwrite, trust_remote_code=False, trust_module_code=False
) -> Path:
    """fp16 / bf16 copy of a PyTorch model directory (save_pretrained format)."""
    from pocketsize.quantize.torch_int8 import quantize_torch

    path = Path(str(model))
    if not (path.is_dir() and (path / "config.json").is_file()) or any(path.glob("*.onnx")):
        raise PocketsizeError(
            f"method={dtype!r} casts a PyTorch model directory; {model} is not one"
        )
    if not has_tokenizer(path):
        raise PocketsizeError(
            f"{path} has no tokenizer files; save the tokenizer into the model directory"
        )
    out = Path(out) if out is not None else _default_out(path, dtype)
    check_output_dir(out, overwrite)
    task_obj = _task_of(task, path)
    if task_obj is None:
        raise PocketsizeError(
            "cannot tell the model's task; pass task='text-classification' or 'extractive-qa'"
        )
    torch_model = load_model_dir(
        path, task_obj.auto_model_class(), trust_module_code, trust_remote_code
    )
    tokenizer = hf_load.load_tokenizer(path, trust_remote_code)
    with atomic_dir(out, overwrite) as tmp:
        quantize_torch(torch_model, dtype).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / "pocketsize.json",
            {"format": "pytorch", "dtype": dtype, "task": task_obj.name, "source": str(model)},
        )
    return out


def layer_sensitivity(
    model,
    data,
    *,
    method: str = "dynamic",
    split: str = "validation",
    num_examples: int = 128,
    by: str = "divergence",
    task: str | None = None,
    out: str | os.PathLike | None = None,
    max_length: int | None = None,
    calibration_split: str = "train",
    **settings,
) -> list[dict]:
    """Rank the model's quantizable nodes by how much quantizing each alone hurts (most first).

    Each row: node, op_type, divergence (relative L2 of the task outputs vs float), metric and
    metric_drop, rank. `settings` are quantize()'s (per_channel, target, calibration, ...).
    Written to `out` (a .json file) when given.
    """
    from pocketsize.quantize.sensitivity import candidate_nodes, rank_nodes
    from pocketsize.quantize.static import calibrate, prepare, quantize_with_ranges

    if method not in ("dynamic", "static"):
        raise PocketsizeError(f"unknown sensitivity method {method!r}; use 'dynamic' or 'static'")
    if by not in ("divergence", "metric"):
        raise PocketsizeError(f"unknown ranking {by!r}; use 'divergence' or 'metric'")
    with contextlib.ExitStack() as stack:
        src_dir, onnx_file = _resolve_onnx(model)
        task_obj = _task_of(task, src_dir)
        source = _prepare_data(data, task_obj, src_dir, max_length)
        source.match_labels(src_dir, settings.pop("label_map", None))
        val = source.split(split, num_examples, scored=True)
        float_session = ort_session(onnx_file)
        reference = val.run(float_session)
        ref_metric = val.primary(reference)
        if method == "dynamic":
            keys = {
                "target",
                "weight_type",
                "reduce_range",
                "per_channel",
                "quantize_embeddings",
                "op_types",
                "exclude_op_types",
                "embedding_bits",
                "matmul_bits",
                "block_size",
            }
            s = DynamicSettings(**{k: v for k, v in settings.items() if k in keys}).resolved()
            nodes = candidate_nodes(onnx_file, s.op_types)

            def quantize_only(path, only):
                quantize_dynamic_file(onnx_file, path, s, nodes_to_quantize=only)
        else:
            keys = {
                "target",
                "calibration",
                "reduce_range",
                "per_channel",
                "op_types",
                "calibration_size",
            }
            s = StaticSettings(**{k: v for k, v in settings.items() if k in keys}).resolved()
            cal = source.split(calibration_split, s.calibration_size)
            names = [i.name for i in float_session.get_inputs()]
            work = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="pocketsize-sens-cal-"))
            )
            pre = prepare(onnx_file, work)
            # Calibrate once; every single-node model reuses the ranges.
            ranges, _ = calibrate(pre, cal.batches(names, s.batch_size), s, work)
            nodes = candidate_nodes(pre, s.op_types, static=True)

            def quantize_only(path, only):
                quantize_with_ranges(pre, path, ranges, s, nodes_to_quantize=only)

        ranking = rank_nodes(onnx_file, nodes, quantize_only, val, reference, ref_metric, by=by)
    if out is not None:
        write_json(out, {"method": s.to_dict(), "reference_metric": ref_metric, "ranking": ranking})
    return ranking
