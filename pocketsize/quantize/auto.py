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
    names = [i.name for i in ort_session(src).get_inputs()]
    val.check_inputs(names)
    float_session = ort_session(src)
    reference = val.run(float_session)
    float_metric = val.primary(reference)
    reference_predictions = val.predictions(reference)  # once: every trial is compared with it
    bs1 = list(val.batches(names, batch_size=1, limit=16))
    summary = {
        "max_drop": max_drop,
        "max_size_bytes": max_size_bytes,
        "min_agreement": min_agreement,
        "metric": val.task.primary_metric,
        "float": {
            "metric": float_metric,
            "latency_ms": latency_ms(float_session, bs1),
            "size_bytes": src.stat().st_size,
        },
        "trials": [],
    }
    ranked_cache: list[str] = []

    def sensitive_nodes() -> list[str]:
        if not ranked_cache:
            per_channel = dataclasses.replace(base, per_channel=True).resolved()
            nodes = [
                n
                for n in candidate_nodes(src, per_channel.op_types)
                if n["node"] not in per_channel.exclude_nodes
            ]
            subset = val.subset(sensitivity_examples)
            ranking = rank_nodes(
                src,
                nodes,
                lambda p, only: quantize_dynamic_file(src, p, per_channel, nodes_to_quantize=only),
                subset,
                subset.run(float_session),
                None,
                by="divergence",
            )
            summary["sensitivity"] = ranking
            ranked_cache.extend(r["node"] for r in ranking)
        return ranked_cache

    best: dict | None = None
    with tempfile.TemporaryDirectory(prefix="pocketsize-auto-") as tmp:
        tmp = Path(tmp)
        for i, (name, settings) in enumerate(
            _trials(
                base,
                sensitive_nodes,
                lambda nodes: smoothable_nodes(src, nodes),
                static if calibration else None,
            )
        ):
            path = tmp / f"trial{i}.onnx"
            started = time.perf_counter()
            try:
                if isinstance(settings, StaticSettings):
                    settings = settings.resolved()
                    pre = prepare(src, tmp)
                    ranges, _ = calibrate(pre, calibration[0](), settings, tmp)
                    quantize_with_ranges(pre, path, ranges, settings)
                elif isinstance(settings, SmoothedDynamic):
                    batches = val.subset(sensitivity_examples).batches(names, batch_size=32)
                    smoothed = tmp / f"trial{i}-smoothed.onnx"
                    smooth_file(
                        src, smoothed, input_absmax(src, settings.nodes, batches), settings.alpha
                    )
                    resolved = quantize_dynamic_file(smoothed, path, settings.base)
                    settings = dataclasses.replace(settings, base=resolved)
                    smoothed.unlink()
                else:
                    settings = quantize_dynamic_file(src, path, settings)
            except PocketsizeError:
                raise
            except Exception as e:  # one failing configuration must not end the search
                summary["trials"].append(
                    {
                        "name": name,
                        "settings": settings.to_dict(),
                        "error": f"{type(e).__name__}: {e}",
                    }
                )
                continue
            session = ort_session(path)
            outputs = val.run(session)
            metric = val.primary(outputs)
            size = path.stat().st_size
            fits = max_size_bytes is None or size <= max_size_bytes
            agreement = val.agreement(outputs, reference_predictions)
            agrees = min_agreement is None or agreement >= min_agreement - 1e-12
            trial = {
                "name": name,
                "settings": settings.to_dict(),
                "metric": metric,
                "drop": float_metric - metric,
                "agreement": agreement,
                "within_budget": float_metric - metric <= max_drop + 1e-12 and fits and agrees,
                "within_size": fits,
                "within_agreement": agrees,
                "divergence": divergence(reference, outputs, val.task.output_names),
                "latency_ms": latency_ms(session, bs1),
                "size_bytes": size,
                "seconds": time.perf_counter() - started,
            }
            summary["trials"].append(trial)
            write_json(log_path, summary)
            log.info(
                "auto trial %s: %s=%.4f drop=%.4f latency=%.2fms",
                name,
                val.task.primary_metric,
                metric,
                trial["drop"],
                trial["latency_ms"],
            )
            if _better(trial, best):
                best, best_path = trial, tmp / "best.onnx"
                shutil.copy2(path, best_path)
            path.unlink()
            if best["within_budget"] and not exhaustive:
                break
        if best is None:
            raise PocketsizeError(
                "every quantization configuration failed (see the trial log); try method='dynamic' with exclude_nodes"
            )
        shutil.copy2(best_path, dst)
    summary["chosen"] = best["name"]
    summary["budget_met"] = best["within_budget"]
    summary["miss_by"] = max(0.0, best["drop"] - max_drop)
    if max_size_bytes is not None:
        summary["over_size_by_bytes"] = max(0, best["size_bytes"] - max_size_bytes)
    if min_agreement is not None:
        summary["agreement_miss_by"] = max(0.0, min_agreement - best["agreement"])
    write_json(log_path, summary)
    if not best["within_budget"]:
        log.warning(
            "no configuration met max_drop=%.4f; saved the best found (%s, drop %.4f: misses by %.4f)",
            max_drop,
            best["name"],
            best["drop"],
            summary["miss_by"],
        )
    return summary


def _better(trial: dict, best: dict | None) -> bool:
    """Within budget beats out of budget; within budget the faster wins; outside, one within
    the size limit beats one over it, then the more accurate wins."""
    if best is None:
        return True
    if trial["within_budget"] != best["within_budget"]:
        return trial["within_budget"]
    if trial["within_budget"]:
        return trial["latency_ms"] < best["latency_ms"]
    if trial.get("within_size", True) != best.get("within_size", True):
        return trial.get("within_size", True)
    if trial.get("within_agreement", True) != best.get("within_agreement", True):
        return trial.get("within_agreement", True)
    return trial["metric"] > best["metric"]
