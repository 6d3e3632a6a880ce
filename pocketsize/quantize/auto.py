"""Accuracy-budgeted quantization: try configurations fastest to safest, keep the best in budget.

Every trial is logged (settings, metric, drop, latency, size). The result is always a quantized
model: when no configuration meets the budget, the most accurate one found is saved and the
summary says by how much it misses. The float model is never returned.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import write_json
from pocketsize.quantize.dynamic import DynamicSettings, quantize_dynamic_file
from pocketsize.quantize.scoring import TaskData, divergence, latency_ms, ort_session
from pocketsize.quantize.sensitivity import candidate_nodes, rank_nodes
from pocketsize.quantize.smooth import input_absmax, smooth_file, smoothable_nodes
from pocketsize.quantize.static import StaticSettings, calibrate, prepare, quantize_with_ranges

log = logging.getLogger(__name__)
EXCLUDE_STEPS = (1, 2, 4, 8)  # how many of the most sensitive nodes to keep in float, in turn


@dataclasses.dataclass
class SmoothedDynamic:
    """Dynamic int8 after SmoothQuant rescaling of `nodes` (smooth.py)."""

    base: DynamicSettings
    nodes: list[str]
    alpha: float = 0.5

    def to_dict(self) -> dict:
        return {**self.base.to_dict(), "smooth_nodes": self.nodes, "smooth_alpha": self.alpha}


def _trials(
    base: DynamicSettings,
    sensitive: Callable[[], list[str]],
    smoothable: Callable[[list[str]], list[str]],
    static: StaticSettings | None,
) -> Iterator[tuple[str, object]]:
    """Configurations in the order tried: fastest first, then progressively safer.

    Per-channel weight scales come first: in ONNX Runtime they cost no speed over per-tensor
    scales and are markedly more accurate (on MiniLM-L6 / rt-polarity, per-tensor int8 lost 1.7
    test points where per-channel lost none, although both passed a 0.5-point validation budget),
    so per-tensor is not tried.
    """
    yield "dynamic-per-channel", dataclasses.replace(base, per_channel=True)
    if base.embedding_bits == 4:
        # the 4-bit tables are what moves the model most, as a rule: 8 bits before any float
        yield (
            "dynamic-per-channel-int8-embedding",
            dataclasses.replace(base, per_channel=True, embedding_bits=8),
        )
    ranked = sensitive()
    # At each depth k, the size-free fix first: SmoothQuant rescaling of the MatMuls among the k
    # most sensitive nodes keeps every node int8, where exclusion keeps nodes in float (on the
    # MiniLM-L6 teacher the one node that broke the budget was an FFN output MatMul).
    per_channel = dataclasses.replace(base, per_channel=True)
    smoothable_ranked = smoothable(ranked[: max(EXCLUDE_STEPS)])
    tried: list[str] = []
    for k in EXCLUDE_STEPS:
        smooth = [n for n in smoothable_ranked if n in ranked[:k]]
        if smooth and smooth != tried:
            tried = smooth
            yield f"dynamic-per-channel-smooth-top{k}", SmoothedDynamic(per_channel, smooth)
        # At least one node stays quantized: excluding every candidate returns the float model.
        if k >= len(ranked):
            break
        excluded = list(dict.fromkeys(base.exclude_nodes + ranked[:k]))
        yield (
            f"dynamic-per-channel-exclude-top{k}",
            dataclasses.replace(per_channel, exclude_nodes=excluded),
        )
    if not base.resolved().reduce_range:
        # 7-bit weights: safe on CPUs without VNNI where full-range int8 can saturate.
        yield (
            "dynamic-per-channel-reduce-range",
            dataclasses.replace(base, per_channel=True, reduce_range=True),
        )
    if static is not None:
        yield "static-matmul-minmax", static


@dataclasses.dataclass(frozen=True)
class Budget:
    """What a trial must meet: the metric's drop, and optionally the file size and the share of
    predictions that agree with the float model's."""

    max_drop: float
    max_size_bytes: int | None = None
    min_agreement: float | None = None

    def shortfalls(self, drop: float, size: int, agreement: float) -> dict[str, float]:
        """How far a trial is from each budget it misses (a share, 0 where met): the drop and
        the agreement as they are, the size relative to its limit."""
        missed = {"max_drop": max(0.0, drop - self.max_drop)}
        if self.max_size_bytes is not None:
            missed["max_size_mb"] = max(0.0, size / self.max_size_bytes - 1)
        if self.min_agreement is not None:
            missed["min_agreement"] = max(0.0, self.min_agreement - agreement)
        return {k: v for k, v in missed.items() if v > 1e-12}


@dataclasses.dataclass
class _Search:
    """The float model's reference outputs and what every trial is measured with."""

    src: Path
    val: TaskData
    budget: Budget
    names: list[str]
    reference: dict
    float_metric: float
    reference_predictions: object
    bs1: list
    sensitivity_examples: int
    summary: dict

    @classmethod
    def start(cls, src: Path, val: TaskData, budget: Budget, sensitivity_examples: int):
        names = [i.name for i in ort_session(src).get_inputs()]
        val.check_inputs(names)
        float_session = ort_session(src)
        reference = val.run(float_session)
        bs1 = list(val.batches(names, batch_size=1, limit=16))
        summary = {
            "max_drop": budget.max_drop,
            "max_size_bytes": budget.max_size_bytes,
            "min_agreement": budget.min_agreement,
            "metric": val.task.primary_metric,
            "float": {
                "metric": val.primary(reference),
                "latency_ms": latency_ms(float_session, bs1),
                "size_bytes": src.stat().st_size,
            },
            "trials": [],
        }
        return cls(
            src, val, budget, names, reference, val.primary(reference),
            val.predictions(reference),  # once: every trial is compared with it
            bs1, sensitivity_examples, summary,
        )  # fmt: skip


def auto_quantize(
    src: Path,
    dst: Path,
    val: TaskData,
    base: DynamicSettings,
    max_drop: float,
    log_path: Path,
    calibration: tuple[Callable[[], Iterator[dict]], int] | None = None,
    static: StaticSettings | None = None,
    exhaustive: bool = False,
    sensitivity_examples: int = 128,
    max_size_bytes: int | None = None,
    min_agreement: float | None = None,
) -> dict:
    """Write the chosen quantized model to `dst`; return the summary (also logged to `log_path`)."""
    budget = Budget(max_drop, max_size_bytes, min_agreement)
    search = _Search.start(src, val, budget, sensitivity_examples)
    ranked: list[str] = []

    def sensitive_nodes() -> list[str]:
        if not ranked:
            ranked.extend(_rank_sensitive(search, base))
        return ranked

    best: dict | None = None
    trials = _trials(
        base, sensitive_nodes, lambda nodes: smoothable_nodes(src, nodes),
        static if calibration else None,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pocketsize-auto-") as tmp:
        tmp = Path(tmp)
        best_path = tmp / "best.onnx"
        for i, (name, settings) in enumerate(trials):
            trial = _run_trial(search, name, settings, tmp / f"trial{i}.onnx", calibration)
            write_json(log_path, search.summary)
            if trial is not None and _better(trial, best):
                best = trial
                shutil.copy2(tmp / f"trial{i}.onnx", best_path)
            (tmp / f"trial{i}.onnx").unlink(missing_ok=True)
            if best is not None and best["within_budget"] and not exhaustive:
                break
        if best is None:
            raise PocketsizeError(
                "every quantization configuration failed (see the trial log); try method='dynamic' with exclude_nodes"
            )
        shutil.copy2(best_path, dst)
    _conclude(search, best)
    write_json(log_path, search.summary)
    return search.summary


def _rank_sensitive(search: _Search, base: DynamicSettings) -> list[str]:
    """The quantizable nodes, most sensitive first (each quantized alone, on a subset)."""
    src = search.src
    per_channel = dataclasses.replace(base, per_channel=True).resolved()
    nodes = [
        n
        for n in candidate_nodes(src, per_channel.op_types)
        if n["node"] not in per_channel.exclude_nodes
    ]
    subset = search.val.subset(search.sensitivity_examples)
    ranking = rank_nodes(
        src,
        nodes,
        lambda p, only: quantize_dynamic_file(src, p, per_channel, nodes_to_quantize=only),
        subset,
        subset.run(ort_session(src)),
        None,
        by="divergence",
    )
    search.summary["sensitivity"] = ranking
    return [r["node"] for r in ranking]


def _run_trial(search: _Search, name: str, settings, path: Path, calibration) -> dict | None:
    """Quantize one configuration to `path` and measure it; a configuration that fails is
    logged and skipped (one must not end the search)."""
    started = time.perf_counter()
    try:
        settings = _quantize_trial(search, settings, path, calibration)
    except PocketsizeError:
        raise
    except Exception as e:
        failed = {"name": name, "settings": settings.to_dict(), "error": f"{type(e).__name__}: {e}"}
        search.summary["trials"].append(failed)
        return None
    trial = _measure(search, name, settings, path)
    trial["seconds"] = time.perf_counter() - started
    search.summary["trials"].append(trial)
    log.info(
        "auto trial %s: %s=%.4f drop=%.4f latency=%.2fms",
        name, search.val.task.primary_metric, trial["metric"], trial["drop"], trial["latency_ms"],
    )  # fmt: skip
    return trial


def _quantize_trial(search: _Search, settings, path: Path, calibration):
    """Write the trial's model; returns its settings as resolved."""
    src, tmp = search.src, path.parent
    if isinstance(settings, StaticSettings):
        settings = settings.resolved()
        pre = prepare(src, tmp)
        ranges, _ = calibrate(pre, calibration[0](), settings, tmp)
        quantize_with_ranges(pre, path, ranges, settings)
        return settings
    if isinstance(settings, SmoothedDynamic):
        batches = search.val.subset(search.sensitivity_examples).batches(search.names, 32)
        smoothed = tmp / f"{path.stem}-smoothed.onnx"
        smooth_file(src, smoothed, input_absmax(src, settings.nodes, batches), settings.alpha)
        resolved = quantize_dynamic_file(smoothed, path, settings.base)
        smoothed.unlink()
        return dataclasses.replace(settings, base=resolved)
    return quantize_dynamic_file(src, path, settings)


def _measure(search: _Search, name: str, settings, path: Path) -> dict:
    session = ort_session(path)
    outputs = search.val.run(session)
    metric = search.val.primary(outputs)
    size = path.stat().st_size
    agreement = search.val.agreement(outputs, search.reference_predictions)
    drop = search.float_metric - metric
    missed = search.budget.shortfalls(drop, size, agreement)
    return {
        "name": name,
        "settings": settings.to_dict(),
        "metric": metric,
        "drop": drop,
        "agreement": agreement,
        "within_budget": not missed,
        "within_size": "max_size_mb" not in missed,
        "within_agreement": "min_agreement" not in missed,
        "missed": missed,
        "divergence": divergence(search.reference, outputs, search.val.task.output_names),
        "latency_ms": latency_ms(session, search.bs1),
        "size_bytes": size,
    }


def _conclude(search: _Search, best: dict) -> None:
    """The summary's verdict: the trial kept, and each budget it misses, by how much."""
    budget, summary = search.budget, search.summary
    summary["chosen"] = best["name"]
    summary["budget_met"] = best["within_budget"]
    summary["missed"] = best["missed"]
    summary["miss_by"] = max(0.0, best["drop"] - budget.max_drop)
    if budget.max_size_bytes is not None:
        summary["over_size_by_bytes"] = max(0, best["size_bytes"] - budget.max_size_bytes)
    if budget.min_agreement is not None:
        summary["agreement_miss_by"] = max(0.0, budget.min_agreement - best["agreement"])
    if not best["within_budget"]:
        log.warning(
            "no configuration met the budget; saved the nearest found (%s), which misses %s",
            best["name"],
            ", ".join(f"{k} by {v:.4f}" for k, v in best["missed"].items()),
        )


def _better(trial: dict, best: dict | None) -> bool:
    """Within budget beats out of budget; within budget the faster wins. Outside, one within
    the size limit beats one over it (keeping big nodes in float must not buy the accuracy),
    then the one missing fewer budgets, then the one nearest to them, then the more accurate."""
    if best is None:
        return True
    if trial["within_budget"] != best["within_budget"]:
        return trial["within_budget"]
    if trial["within_budget"]:
        return trial["latency_ms"] < best["latency_ms"]
    return _nearness(trial) > _nearness(best)


def _nearness(trial: dict) -> tuple:
    missed = trial["missed"]
    return (trial["within_size"], -len(missed), -sum(missed.values()), trial["metric"])
