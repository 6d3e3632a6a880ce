"""`quantize(model, data, method=...)`: builds the method's config (quantize/config.py) and runs
the handler registered for its type; the ONNX methods share one resolve / check / write path."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketsize.errors import PocketsizeError
from pocketsize.formats import hf_load
from pocketsize.formats.model_dir import load_model_dir
from pocketsize.formats.onnx_dir import (
    QUANTIZED_FILE,
    check_onnx_file,
    is_multi_graph,
    model_file,
    ort_session,
)
from pocketsize.formats.ort_format import to_mobile
from pocketsize.formats.records import carried, read_record, stage_output, update_record
from pocketsize.formats.side_files import copy_model_side_files, has_tokenizer
from pocketsize.fsutil import check_output_dir, write_json
from pocketsize.options import keywords_from
from pocketsize.quantize.config import (
    AutoConfig,
    Bf16Config,
    CastConfig,
    DynamicConfig,
    FourBitConfig,
    StaticConfig,
    build_config,
    register_method,
)
from pocketsize.quantize.dynamic import DynamicSettings, check_node_names, quantize_dynamic_file
from pocketsize.quantize.static import (
    MIN_CALIBRATION_EXAMPLES,
    StaticSettings,
    quantize_static_file,
)

TRIALS_LOG = "quantize_trials.json"


@dataclass(frozen=True)
class Request:
    """What every method gets besides its config: the model, the data and where to write."""

    model: Any
    data: Any
    out: str | os.PathLike | None
    task: str | None
    overwrite: bool
    seed: int
    trust_remote_code: bool
    trust_module_code: bool


def quantize(
    model,
    data=None,
    *,
    method: str | None = None,
    config=None,
    out: str | os.PathLike | None = None,
    task: str | None = None,
    overwrite: bool = False,
    seed: int = 0,
    trust_remote_code: bool = False,
    trust_module_code: bool = False,
    **options,
) -> Path:
    """Quantize a model and return the output directory.

    model: an ONNX directory or .onnx file (a PyTorch model directory: export it first; fp16 /
      bf16 cast a PyTorch model directory).
    data: a DatasetDict or dataset name; read by static (calibration split) and auto (eval split).
    method / config: dynamic (default) | 4bit | static | auto | fp16 | bf16, or the method's
      config (DynamicConfig, FourBitConfig, StaticConfig, AutoConfig, CastConfig, Bf16Config in
      pocketsize/quantize/config.py, which says what each option does); the other keywords are
      that config's fields, and an option of another method is refused in one line. auto keeps
      the fastest configuration whose metric drops by at most max_drop on eval_split (and whose
      file is at most max_size_mb, and whose predictions agree with the float model's on at
      least min_agreement of the examples).
    seed: recorded in stage.json; the quantizers and the search are deterministic.
    trust_remote_code: a directory whose config or tokenizer config names its own code
      (auto_map) is quantized only with this set (its tokenizer runs that code); without, it is
      refused in one line before any work. trust_module_code: fp16 / bf16 of a module
      directory whose class lives outside pocketsize (importing it runs its code).
    Output: model_quantized.onnx + config.json + tokenizer files + stage.json
    (+ quantize_trials.json for auto, + model_quantized.ort with mobile=True).
    """
    cfg = build_config(method, config, options)
    if isinstance(model, (str, os.PathLike)):
        hf_load.refuse_own_code(model, trust_remote_code)
    request = Request(model, data, out, task, overwrite, seed, trust_remote_code, trust_module_code)
    return HANDLERS[type(cfg)](request, cfg)


_SIGNATURE_CLASSES = (DynamicConfig, FourBitConfig, StaticConfig, AutoConfig)
quantize = keywords_from(*_SIGNATURE_CLASSES)(quantize)

HANDLERS: dict[type, Callable[[Request, Any], Path]] = {}


def register_handler(config_class: type, handler: Callable[[Request, Any], Path]) -> None:
    """The function that quantizes for a config type (a new method: a config, register_method,
    and this)."""
    register_method(config_class)
    HANDLERS[config_class] = handler


@dataclass
class Job:
    """An ONNX method's resolved inputs: the graph, its directory, the task and the data."""

    onnx_file: Path
    src_dir: Path | None
    out: Path
    task: Any
    source: Any  # _Splits, when the method reads data

    def input_names(self) -> list[str]:
        return _input_names(self.onnx_file)


def onnx_method(write: Callable[[Job, Any, Path], dict]) -> Callable[[Request, Any], Path]:
    """A handler for a method that writes model_quantized.onnx: resolves and checks the inputs,
    then `write(job, config, file)` inside the atomic output directory returns its notes."""

    def handle(request: Request, cfg) -> Path:
        if isinstance(request.model, (str, os.PathLike)) and is_multi_graph(request.model):
            return _several_graphs(request, cfg)
        job = _resolve_job(request, cfg)
        source_record = read_record(job.src_dir)
        with stage_output(job.out, "quantize", request.overwrite) as tmp:
            info = write(job, cfg, tmp / QUANTIZED_FILE)
            info["seed"] = request.seed
            _finish_dir(tmp, job, source_record, request.model, info, cfg)
        return job.out

    return handle


def _resolve_job(request: Request, cfg) -> Job:
    if cfg.reads_data and request.data is None:
        raise PocketsizeError(f"method={cfg.method!r} needs task data; pass data=... (--data NAME)")
    src_dir, onnx_file = _resolve_onnx(request.model)
    out = request.out
    out = Path(out) if out is not None else _default_out(src_dir or onnx_file.parent, "int8")
    check_output_dir(out, request.overwrite)
    check_node_names(onnx_file, getattr(cfg, "exclude_nodes", ()))  # (a method may keep none)
    task_obj = _task_of(request.task, src_dir)
    if cfg.transformers_js and task_obj is not None and task_obj.generates:
        raise PocketsizeError(
            f"the transformers.js layout is not written for {task_obj.name} models (past key "
            "values) yet; drop transformers_js"
        )
    source = None
    if cfg.reads_data:
        source = _prepare_data(
            request.data, task_obj, src_dir, cfg.max_length, request.trust_remote_code
        )
        source.match_labels(src_dir, getattr(cfg, "label_map", None))
    return Job(onnx_file, src_dir, out, task_obj, source)


def _several_graphs(request: Request, cfg) -> Path:
    """T5-style exports hold an encoder and decoder graphs: each is quantized alone."""
    from pocketsize.quantize.multi_graph import quantize_graphs

    if not cfg.several_graphs or cfg.transformers_js:
        raise PocketsizeError(
            f"method={cfg.method!r} is not supported for encoder-decoder exports (several "
            "graphs); use method='dynamic' without transformers_js"
        )
    model = Path(str(request.model))
    out = Path(request.out) if request.out is not None else _default_out(model, "int8")
    bits = dict(
        embedding_bits=cfg.embedding_bits, matmul_bits=cfg.matmul_bits, block_size=cfg.block_size,
        head_bits=cfg.head_bits, keep_grid=cfg.keep_grid,
    )  # fmt: skip
    return quantize_graphs(
        model, out, overwrite=request.overwrite, target=cfg.target,
        per_channel=cfg.per_channel, **bits,
    )  # fmt: skip


def _write_dynamic(job: Job, cfg: DynamicConfig, dst: Path) -> dict:
    from pocketsize.quantize.source_grid import kept_grid_counts

    applied = quantize_dynamic_file(job.onnx_file, dst, cfg.dynamic_settings()).to_dict()
    kept = kept_grid_counts(dst)
    return {"quantization": {**applied, "kept_grid_matmuls": kept} if kept else applied}


def _write_static(job: Job, cfg: StaticConfig, dst: Path) -> dict:
    settings = cfg.static_settings()
    cal = job.source.split(cfg.calibration_split, cfg.calibration_size)
    names = job.input_names()
    cal.check_inputs(names)
    applied = quantize_static_file(
        job.onnx_file, dst, lambda: cal.batches(names, settings.batch_size), settings, len(cal)
    )
    return {"quantization": dict(applied.to_dict(), calibration_examples=len(cal))}


def _write_auto(job: Job, cfg: AutoConfig, dst: Path) -> dict:
    from pocketsize.quantize.auto import auto_quantize

    dyn, stat = cfg.dynamic_settings(), cfg.static_settings()
    val = job.source.split(cfg.eval_split, cfg.eval_size, scored=True)
    names = job.input_names()
    calib = None
    if len(job.source.splits.get(cfg.calibration_split, ())) >= MIN_CALIBRATION_EXAMPLES:
        cal = job.source.split(cfg.calibration_split, stat.calibration_size)
        calib = (lambda: cal.batches(names, stat.batch_size), len(cal))
    summary = auto_quantize(
        job.onnx_file, dst, val, dyn, cfg.max_drop, dst.parent / TRIALS_LOG, calib, stat,
        cfg.exhaustive,
        max_size_bytes=None if cfg.max_size_mb is None else int(cfg.max_size_mb * 1e6),
        min_agreement=cfg.min_agreement,
    )  # fmt: skip
    return _budget_notes(summary, cfg)


def _budget_notes(summary: dict, cfg: AutoConfig) -> dict:
    chosen = next(t for t in summary["trials"] if t.get("name") == summary["chosen"])
    return {
        "quantization": chosen["settings"],
        "accuracy_budget": {
            "metric": summary["metric"],
            "max_drop": cfg.max_drop,
            "float_metric": summary["float"]["metric"],
            "quantized_metric": chosen["metric"],
            "drop": chosen["drop"],
            "budget_met": summary["budget_met"],
            "missed": summary["missed"],  # each budget the kept trial misses, by how much
            "miss_by": summary["miss_by"],
            "max_size_mb": cfg.max_size_mb,
            "min_agreement": cfg.min_agreement,
            "agreement": chosen["agreement"],
            "agreement_miss_by": summary.get("agreement_miss_by"),
            "trials_log": TRIALS_LOG,
        },
    }


def _finish_dir(tmp: Path, job: Job, source_record: dict, model, info: dict, cfg) -> None:
    if job.src_dir is not None:
        copy_model_side_files(job.src_dir, tmp)
    update_record(
        tmp,
        format="onnx",
        file=QUANTIZED_FILE,
        task=job.task.name if job.task else None,
        model_type=source_record.get("model_type"),
        source=str(model) if not hasattr(model, "forward") else type(model).__name__,
        **info,
        **carried(job.src_dir),
    )
    if cfg.mobile:
        to_mobile(tmp)
    if cfg.transformers_js:
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


def _cast_torch(request: Request, cfg: CastConfig) -> Path:
    """fp16 / bf16 copy of a PyTorch model directory (save_pretrained format)."""
    from pocketsize.quantize.torch_int8 import quantize_torch

    model, dtype, out, overwrite = request.model, cfg.method, request.out, request.overwrite
    trust_remote_code = request.trust_remote_code
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
    task_obj = _task_of(request.task, path)
    if task_obj is None:
        raise PocketsizeError(
            "cannot tell the model's task; pass task='text-classification' or 'extractive-qa'"
        )
    torch_model = load_model_dir(
        path, task_obj.auto_model_class(), request.trust_module_code, trust_remote_code
    )
    tokenizer = hf_load.load_tokenizer(path, trust_remote_code)
    with stage_output(out, "quantize", overwrite) as tmp:
        quantize_torch(torch_model, dtype).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        task_obj.write_model_files(task_obj.prepare_model(torch_model, path), tmp)
        update_record(tmp, format="pytorch", dtype=dtype, task=task_obj.name, source=str(model))
    return out


register_handler(DynamicConfig, onnx_method(_write_dynamic))
register_handler(FourBitConfig, onnx_method(_write_dynamic))
register_handler(StaticConfig, onnx_method(_write_static))
register_handler(AutoConfig, onnx_method(_write_auto))
register_handler(CastConfig, _cast_torch)
register_handler(Bf16Config, _cast_torch)


_DYNAMIC_KEYS = (
    "target", "weight_type", "reduce_range", "per_channel", "quantize_embeddings", "op_types",
    "exclude_op_types", "embedding_bits", "matmul_bits", "block_size", "head_bits", "keep_grid",
)  # fmt: skip
_STATIC_KEYS = (
    "target", "calibration", "reduce_range", "per_channel", "op_types", "calibration_size",
)  # fmt: skip


def _one_node_dynamic(onnx_file: Path, settings: dict):
    """(settings, candidate nodes, quantize_only(path, nodes)) for dynamic quantization."""
    from pocketsize.quantize.sensitivity import candidate_nodes

    s = DynamicSettings(**{k: v for k, v in settings.items() if k in _DYNAMIC_KEYS}).resolved()
    nodes = candidate_nodes(onnx_file, s.op_types)

    def quantize_only(path, only):
        quantize_dynamic_file(onnx_file, path, s, nodes_to_quantize=only)

    return s, nodes, quantize_only


def _one_node_static(onnx_file: Path, settings: dict, cal, work: Path):
    """The same for static quantization: calibrated once, every single-node model reuses the
    ranges. `cal`: (data source, calibration split, the graph's input names)."""
    from pocketsize.quantize.sensitivity import candidate_nodes
    from pocketsize.quantize.static import calibrate, prepare, quantize_with_ranges

    source, calibration_split, input_names = cal
    s = StaticSettings(**{k: v for k, v in settings.items() if k in _STATIC_KEYS}).resolved()
    batches = source.split(calibration_split, s.calibration_size).batches(input_names, s.batch_size)
    pre = prepare(onnx_file, work)
    ranges, _ = calibrate(pre, batches, s, work)
    nodes = candidate_nodes(pre, s.op_types, static=True)

    def quantize_only(path, only):
        quantize_with_ranges(pre, path, ranges, s, nodes_to_quantize=only)

    return s, nodes, quantize_only


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
    from pocketsize.quantize.sensitivity import rank_nodes

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
            s, nodes, quantize_only = _one_node_dynamic(onnx_file, settings)
        else:
            work = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="pocketsize-sens-cal-"))
            )
            inputs = [i.name for i in float_session.get_inputs()]
            cal = (source, calibration_split, inputs)
            s, nodes, quantize_only = _one_node_static(onnx_file, settings, cal, work)
        ranking = rank_nodes(onnx_file, nodes, quantize_only, val, reference, ref_metric, by=by)
    if out is not None:
        write_json(out, {"method": s.to_dict(), "reference_metric": ref_metric, "ranking": ranking})
    return ranking
