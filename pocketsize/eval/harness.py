"""`evaluate(variants, dataset, reference=...)`: every variant measured against the reference.

A short driver: the options as one EvalConfig (eval/config.py), then in order: resolve and
check every variant and the data (cheap, fails fast with a PocketsizeError), predictions per
variant and the latency run (variants in rotating blocks), fidelity and bootstrap intervals,
then peak memory in one child process per variant, and the report.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pocketsize.errors import PocketsizeError
from pocketsize.eval import bootstrap, fidelity
from pocketsize.eval import latency as timing
from pocketsize.eval import memory as peak_memory
from pocketsize.eval.config import EvalConfig
from pocketsize.eval.environment import library_versions, machine_info
from pocketsize.eval.labels import align_labels
from pocketsize.eval.report import SCHEMA_VERSION, Report, mark_pareto
from pocketsize.eval.suite import check_suite, score_suite
from pocketsize.formats.model_dir import max_length_of
from pocketsize.options import keywords_from
from pocketsize.runtime import cost, devices
from pocketsize.runtime.registry import make_runner
from pocketsize.runtime.runners import default_threads, load_tokenizer, resolve_variant
from pocketsize.runtime.scoring import encode_split, predict, run_batches, stack_outputs
from pocketsize.tasks import check_architecture, get_task, task_for_dataset

MEMORY_CHILDREN = 2  # peak-memory child processes at a time
MAX_DISAGREEMENTS = 1000  # kept per variant in metrics.json; the total is always reported


@keywords_from(EvalConfig)
def evaluate(
    variants: dict[str, Any],
    dataset,
    *,
    config: EvalConfig | None = None,
    task=None,
    final: str | None = None,
    progress: bool = True,
    trust_module_code: bool = False,
    trust_remote_code: bool = False,
    **options,
) -> Report:
    """Measure every variant against `reference` (default: the first) on one split.

    variants: name -> a save_pretrained dir, an optimum ONNX dir, an .onnx/.ort file (with
    config and tokenizer beside it), a transformers model, or (model, tokenizer).
    dataset: a datasets.Dataset, a DatasetDict of which `split` is used, or a dataset name.
    config: an EvalConfig (pocketsize.eval.config); keywords build or override one:
    split: the split to evaluate on; "all" takes every row of every split (of a name or path:
    every row of its files, with no validation or test split cut from them).
    latency_examples: how many test inputs are timed (per batch size: that many examples,
    i.e. latency_examples // batch_size calls per round), `repeats` rounds, `warmup` calls per block.
    trust_module_code: import the classes of module directories from outside pocketsize.
    trust_remote_code: run the code a directory's config or tokenizer config names (auto_map);
    off, such a variant is refused in one line.
    device: "cpu" (default: where most compressed models are deployed), "cuda" (PyTorch
    variants on the GPU, ONNX variants on onnxruntime-gpu's CUDA provider when installed), or
    "auto" (the GPU where there is one); an in-memory model is moved there. The report names
    where each variant ran; peak memory is always measured on the CPU.
    baselines: variants that are another tool's result (e.g. optimum's int8 of the teacher);
    the report sets the final variant's speed, size and agreement against each.
    label_map: data label -> model label, for data whose labels the models call otherwise
    (e.g. {"0": "negative", "1": "positive"}, or "0=negative,1=positive"); every other label
    is matched by name (pocketsize.tasks.labels), whatever order the model lists them in.
    """
    cfg = EvalConfig.build(config, **options)  # refused in one line before any work
    trust = dict(trust_module_code=trust_module_code, trust_remote_code=trust_remote_code)
    run = _resolve(variants, dataset, cfg, task, final, progress, trust)
    check_suite(run)
    with _torch_threads(run.threads):
        _predict_all(run)
        if cfg.latency:
            run.latency, run.timed = _latency(run)
    records = _records(run)
    if cfg.suite:
        with _torch_threads(run.threads):
            score_suite(run, records, functools.partial(_predict_on, run))
    if cfg.memory:
        _measure_memory(run, records)
    _relative_figures(records, run.reference)
    mark_pareto(records)
    return Report(_metrics(run, records))


@dataclass
class _Run:
    """What the phases of one evaluation share: the inputs as resolved and checked, then the
    predictions (`runs`) and the timings."""

    cfg: EvalConfig
    progress: bool
    reference: str
    final: str | None
    baselines: list
    split: str | None  # as metrics.json records it: None for a Dataset given without splits
    fingerprint: str | None  # of the data as given
    task: Any
    threads: int
    placement: Any
    batch_sizes: tuple
    examples: Any = None  # the split as scored: its labels as the reference's output indices
    aligned: Any = None  # eval/labels.py AlignedLabels
    resolved: dict = field(default_factory=dict)
    tokenizers: dict = field(default_factory=dict)
    runners: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # per variant: outputs and predictions (_predict)
    latency: dict = field(default_factory=dict)
    timed: int = 0


def _resolve(variants, dataset, cfg: EvalConfig, task, final, progress, trust) -> _Run:
    """Every variant and the data resolved and checked, before any long work."""
    reference = _check_names(variants, cfg, final)
    dataset, examples = _load_examples(dataset, cfg)
    task = get_task(task) if task is not None else task_for_dataset(examples)
    _check_columns(task, examples)
    run = _Run(
        cfg=cfg,
        progress=progress,
        reference=reference,
        final=final,
        baselines=list(cfg.baselines),
        split=cfg.split if hasattr(dataset, "keys") or cfg.split == "all" else None,
        fingerprint=getattr(examples, "_fingerprint", None),
        task=task,
        threads=cfg.threads or default_threads(),
        placement=devices.resolve_device(cfg.device),
        batch_sizes=tuple(sorted(set(cfg.batch_sizes))),
    )
    run.resolved = _resolve_variants(variants, task, trust)
    run.aligned = align_labels(task, examples, run.resolved, reference, cfg.label_map)
    run.examples = run.aligned.examples
    run.tokenizers = _tokenizers(run)
    run.runners = _runners(run)
    return run


def _check_names(variants, cfg: EvalConfig, final) -> str:
    """The reference (default: the first variant); the reference, final and baselines must
    be among the variants."""
    if not variants:
        raise PocketsizeError("no variants given; pass {name: model_dir_or_model, ...}")
    reference = cfg.reference or next(iter(variants))
    for role, name in (
        ("reference", reference),
        ("final", final),
        *(("baseline", b) for b in cfg.baselines),
    ):
        if name is not None and name not in variants:
            raise PocketsizeError(
                f"{role} {name!r} is not among the variants ({', '.join(variants)}); "
                f"pass one of them as {role}="
            )
    return reference


def _load_examples(dataset, cfg: EvalConfig):
    """(the dataset as loaded, the examples evaluated: its split, sampled to max_examples)."""
    if isinstance(dataset, (str, os.PathLike)):
        from pocketsize.data import load_dataset

        # "all": every row of the file(s) as given, nothing split off (a small labelled file)
        all_rows = cfg.split == "all"
        dataset = load_dataset(dataset, split="all") if all_rows else load_dataset(dataset)
    examples = _select_split(dataset, cfg.split)
    if cfg.max_examples is not None and cfg.max_examples < len(examples):
        # A seeded sample, not the first rows: splits are often sorted (e.g. by label).
        examples = examples.shuffle(seed=cfg.seed).select(range(cfg.max_examples))
    return dataset, examples


def _resolve_variants(variants, task, trust: dict) -> dict:
    resolved = {name: resolve_variant(name, spec) for name, spec in variants.items()}
    for variant in resolved.values():
        variant.trust_module_code = trust["trust_module_code"]
        variant.trust_remote_code = trust["trust_remote_code"]
    for variant in resolved.values():
        check_architecture(variant.config.get("model_type"), task)  # e.g. GPT-2 for extractive QA
    return resolved


def _tokenizers(run: _Run) -> dict:
    """Each variant's tokenizer, checked against its vocabulary; non-text tasks (e.g. arrays
    of pixels) read their inputs from the data, with no tokenizer."""
    if not run.task.needs_tokenizer:
        return {name: None for name in run.resolved}
    tokenizers = {name: load_tokenizer(v) for name, v in run.resolved.items()}
    for name, variant in run.resolved.items():
        _check_vocab(variant, tokenizers[name])
    return tokenizers


def _runners(run: _Run) -> dict:
    runners = {}
    for name, variant in run.resolved.items():
        runners[name] = make_runner(variant, run.task, run.threads, run.placement)
        if run.aligned.names is not None:
            _check_onnx_label_count(name, runners[name], len(run.aligned.names))
    return runners


@contextlib.contextmanager
def _torch_threads(threads: int):
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)


def _predict_all(run: _Run) -> None:
    for name, variant in run.resolved.items():
        tokenizer = run.tokenizers[name]
        run.runs[name] = _predict(
            name,
            run.runners[name],
            tokenizer,
            run.task,
            run.examples,
            max_length_of(variant.config, tokenizer, run.cfg.max_length),
            run.cfg.eval_batch_size,
            run.progress,
            run.aligned.orders.get(name),
        )


def _predict_on(run: _Run, name: str, examples) -> list:
    """One variant's predictions on other examples (a suite set), as _predict_all makes them."""
    variant, tokenizer = run.resolved[name], run.tokenizers[name]
    max_length = max_length_of(variant.config, tokenizer, run.cfg.max_length)
    found = _predict(
        name, run.runners[name], tokenizer, run.task, examples, max_length,
        run.cfg.eval_batch_size, False,
    )  # fmt: skip
    return found["predictions"]


def _records(run: _Run) -> dict:
    """Per variant: where it ran, its metric, fidelity and intervals, its cost and latency."""
    indices = bootstrap.resample_indices(len(run.examples), run.cfg.bootstrap_samples, run.cfg.seed)
    ref_run = run.runs[run.reference]
    # each variant's agreement with the reference, per example, once: its interval and its
    # difference to the final's are resampled from the same parts
    agree = {
        name: run.task.agreement_parts(
            run.runs[name]["predictions"], ref_run["predictions"], run.examples
        )
        for name in run.resolved
    }
    records = {}
    for name, variant in run.resolved.items():
        quality = _quality(
            run.task, run.examples, run.runs[name], ref_run, indices, run.aligned.names,
            agree[name],
        )  # fmt: skip
        records[name] = {
            "kind": variant.kind,
            "source": variant.source,
            "runs_on": run.runners[name].runs_on,
            **quality,
            **_cost(variant, run.runners[name]),
        }
        if run.cfg.latency:
            records[name]["latency_ms"] = run.latency[name]
            records[name]["throughput_per_s"] = {
                bs: stats["throughput_per_s"] for bs, stats in run.latency[name].items()
            }
    for name, diff in _agreement_vs_final(run, agree, indices).items():
        records[name]["agreement_vs_final"] = diff
    return records


def _agreement_vs_final(run: _Run, agree: dict, indices) -> dict:
    """Each variant's agreement with the reference minus the final variant's, on the same
    resamples: whether another model (a search's choice, a baseline) agrees with the reference
    more than the one the recipe ships, or only within the test split's noise."""
    if not run.final:
        return {}
    return {
        # two models that both find nothing agree fully, as in the agreement interval
        name: bootstrap.paired_ratio_difference_ci(parts, agree[run.final], indices, empty=1.0)
        for name, parts in agree.items()
        if name not in (run.final, run.reference)
    }


def _measure_memory(run: _Run, records: dict) -> None:
    """Each variant's peak in its own child process, two children at a time: a process's
    high-water mark is its own, and most of a child's time is importing its runtime."""
    from concurrent.futures import ThreadPoolExecutor

    def measure(item):
        name, variant = item
        batch = run.runs[name]["pad"](run.runs[name]["rows"][: max(run.batch_sizes)])
        return name, peak_memory.measure_peak_memory(variant, run.task, batch, run.threads)

    with ThreadPoolExecutor(max_workers=MEMORY_CHILDREN) as pool:
        found = pool.map(measure, run.resolved.items())
        for name, memory in tqdm(
            found, total=len(run.resolved), desc="peak memory", disable=not run.progress
        ):
            records[name]["memory"] = memory


def _metrics(run: _Run, records: dict) -> dict:
    """metrics.json (schema: SCHEMA.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "task": run.task.name,
        "reference": run.reference,
        "final": run.final,
        "baselines": run.baselines,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "gpu": devices.gpu_info() if run.placement.on_gpu else None},
        "versions": library_versions(),
        "settings": _settings(run),
        "labels": run.aligned.names,
        "variants": records,
    }


def _settings(run: _Run) -> dict:
    cfg, runners = run.cfg, run.runners
    return {
        "split": run.split,
        # inputs longer than a variant's token limit are cut to it, not refused
        "truncated_inputs": {
            name: {"examples": r["truncated"], "max_length": r["max_length"]}
            for name, r in run.runs.items()
            if r["truncated"]
        },
        "examples": len(run.examples),
        "dataset_fingerprint": run.fingerprint,
        "label_mapping": run.aligned.record,
        "primary_metric": run.task.primary_metric,
        "agreement": run.task.agreement_meaning,
        "threads": run.threads,
        "device": run.placement.record(r.note for r in runners.values() if getattr(r, "note", "")),
        "batch_sizes": list(run.batch_sizes),
        "eval_batch_size": cfg.eval_batch_size,
        "max_length": cfg.max_length,
        "latency": {
            "measured": bool(cfg.latency),
            "inputs_timed": run.timed,
            "repeats": cfg.repeats,
            "warmup_calls": cfg.warmup,
            "interleaved": False,
            "protocol": "rotating blocks",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "ort_spinning": True,
            "timed": "model call only; inputs pre-tokenized, padded per batch to its longest",
        },
        "bootstrap": {"samples": cfg.bootstrap_samples, "confidence": 0.95, "seed": cfg.seed},
        "memory": {
            "measured": bool(cfg.memory),
            "method": "VmHWM (peak RSS) of a fresh process per variant running one batch "
            "on the CPU",
        },
    }


def _select_split(dataset, split: str):
    if hasattr(dataset, "keys") and split == "all" and "all" not in dataset:
        from datasets import concatenate_datasets

        dataset = concatenate_datasets([dataset[name] for name in dataset])
    elif hasattr(dataset, "keys"):
        if split not in dataset:
            raise PocketsizeError(
                f"the dataset has no {split!r} split (it has {', '.join(dataset) or 'none'}); "
                "pass split= one of them, or 'all' for every row"
            )
        dataset = dataset[split]
    if not hasattr(dataset, "column_names"):
        raise PocketsizeError(
            f"expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}; "
            "load data with pocketsize.load_dataset"
        )
    if len(dataset) == 0:
        raise PocketsizeError(f"the {split!r} split is empty; evaluate on a split with examples")
    return dataset


def _check_columns(task, examples) -> None:
    why = task.unscorable(examples)
    if why:
        raise PocketsizeError(f"{why}; evaluate on a split that has it")
    needed = task.data_columns
    missing = [c for c in needed if c not in examples.column_names]
    if missing:
        raise PocketsizeError(
            f"the data has no {', '.join(missing)} column(s) for {task.name} (it has "
            f"{', '.join(examples.column_names)}); map them with --columns (Python: "
            "pocketsize.load_dataset(..., columns=))"
        )


def _check_onnx_label_count(name: str, runner, n_labels: int) -> None:
    shape = (
        getattr(runner, "output_shapes", {}).get(runner.fetch[0])
        if hasattr(runner, "fetch")
        else None
    )
    if shape and isinstance(shape[-1], int) and shape[-1] != n_labels:
        raise PocketsizeError(
            f"variant {name!r} outputs {shape[-1]} logits but the dataset has {n_labels} labels; "
            "evaluate a model fine-tuned on this label set"
        )


def _check_vocab(variant, tokenizer) -> None:
    from pocketsize.formats.checkpoint import check_tokenizer_fits

    model = variant.model if hasattr(variant.model, "get_input_embeddings") else None
    check_tokenizer_fits(model or variant.config, tokenizer, f"variant {variant.name!r}")


def _predict(
    name, runner, tokenizer, task, examples, max_length, batch_size, progress, order=None
) -> dict:
    """Model outputs for every feature (batched by length to cut padding) and the predictions;
    `order` puts the outputs of a variant listing its labels in another order in the report's."""
    encoded = encode_split(task, examples, tokenizer, max_length, progress)
    per_batch = run_batches(
        encoded,
        runner.run,
        batch_size,
        by_length=True,
        progress=f"predicting {name}" if progress else False,
    )
    outputs = stack_outputs(per_batch, task.output_names)
    if order is not None:
        outputs = task.order_outputs(outputs, order)
    # one feature per example (no QA windows): an input as long as the limit was cut to it
    lengths = [len(r[encoded.input_names[0]]) for r in encoded.rows]
    one_per_example = len(encoded.rows) == len(examples)
    return {
        "truncated": sum(n >= max_length for n in lengths) if one_per_example else 0,
        "max_length": max_length,
        "outputs": outputs,
        "predictions": predict(encoded, outputs),
        "rows": encoded.rows,
        "input_ids": [r[encoded.input_names[0]] for r in encoded.rows],
        "pad": encoded.pad,
    }


def _quality(task, examples, run, ref_run, indices, label_names, agree_parts) -> dict:
    predictions, ref_predictions = run["predictions"], ref_run["predictions"]
    scores = task.score(predictions, examples)
    parts = task.metric_parts(predictions, examples)
    ref_parts = task.metric_parts(ref_predictions, examples)
    agree = np.asarray(task.agreement(predictions, ref_predictions), dtype=float)
    metric_ci = bootstrap.ratio_ci(*parts, indices)
    # two models that both find nothing (e.g. no entity) agree fully
    agreement_ci = bootstrap.ratio_ci(*agree_parts, indices, empty=1.0)
    record: dict[str, Any] = {
        "metric": {
            "name": task.primary_metric,
            "value": float(scores[task.primary_metric]),
            "ci_low": metric_ci["ci_low"],
            "ci_high": metric_ci["ci_high"],
        },
        "metrics": {k: v for k, v in scores.items() if k not in ("per_class", "confusion_matrix")},
        "metric_diff": bootstrap.paired_ratio_difference_ci(parts, ref_parts, indices),
        "agreement": agreement_ci["value"],
        "agreement_ci": [agreement_ci["ci_low"], agreement_ci["ci_high"]],
    }
    levels = task.agreement_levels(predictions, ref_predictions, examples)
    if levels:
        record["agreement_levels"] = levels
    if "per_class" in scores:
        record["per_class"] = scores["per_class"]
    if "confusion_matrix" in scores:
        record["confusion_matrix"] = {"labels": label_names, "matrix": scores["confusion_matrix"]}
    record["fidelity"] = fidelity.of_task(task, ref_run, run)
    record["disagreements_total"] = int((agree < 1).sum())
    record["disagreements"] = _disagreements(
        task, examples, predictions, ref_predictions, agree, label_names
    )
    return record


def _disagreements(task, examples, predictions, ref_predictions, agree, label_names) -> list:
    listed = []
    for i in np.flatnonzero(agree < 1)[:MAX_DISAGREEMENTS]:
        example = examples[int(i)]
        entry = {"index": int(i), **task.show_example(example)}
        gold = task.show_gold(example, label_names)
        if gold is not None:
            entry["gold"] = gold
        entry["reference_prediction"] = task.show_prediction(
            ref_predictions[i], label_names, example
        )
        entry["prediction"] = task.show_prediction(predictions[i], label_names, example)
        listed.append(entry)
    return listed


def _cost(variant, runner) -> dict:
    files = cost.shipped_files(variant)
    size, how = cost.size_bytes(variant, files)
    model = getattr(runner, "model", None)
    return {
        "files": [f.name for f in files],
        "size_bytes": int(size),
        "size_source": how,
        "params": cost.param_count(variant, model),
    }


def _latency(run: _Run):
    """Time the same (randomly chosen, seeded) test inputs on every variant."""
    cfg = run.cfg
    n_features = min(len(r["rows"]) for r in run.runs.values())
    n_inputs = min(cfg.latency_examples, n_features)
    chosen = np.random.default_rng(cfg.seed).permutation(n_features)[:n_inputs]
    batches = {
        name: {
            bs: timing.make_batches([r["rows"][i] for i in chosen], bs, r["pad"])
            for bs in run.batch_sizes
        }
        for name, r in run.runs.items()
    }
    results = timing.measure_latency(run.runners, batches, cfg.repeats, cfg.warmup, run.progress)
    return results, int(n_inputs)


def _relative_figures(records: dict, reference: str) -> None:
    """Ratios against the reference: retention, size ratio, speed-up (batch 1 unless absent)."""
    ref = records[reference]
    ref_metric = ref["metric"]["value"]
    for record in records.values():
        value = record["metric"]["value"]
        record["retention"] = value / ref_metric if ref_metric else None
        record["size_ratio"] = (
            ref["size_bytes"] / record["size_bytes"] if record["size_bytes"] else None
        )
        record["speedup"] = None
        if "latency_ms" in record:
            bs = "1" if "1" in record["latency_ms"] else next(iter(record["latency_ms"]), None)
            if bs and bs in ref.get("latency_ms", {}):
                record["speedup"] = ref["latency_ms"][bs]["p50"] / record["latency_ms"][bs]["p50"]
                record["speedup_batch_size"] = int(bs)
