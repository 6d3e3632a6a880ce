"""Reference points for a finished search: other models (the hand-made chain's final model,
another tool's int8 of the teacher) scored and timed exactly as the candidates were.

Why measured again here and not taken from the report: the report scores on the test split
and times with its own protocol, the search on the validation split with ONNX Runtime at
`latency_batch`. A point on the search's figure is only comparable to the trials when it was
measured the same way, so each reference is scored against the same teacher predictions and
timed by the same function as every candidate (seconds each). Only ONNX models can be: a
PyTorch model is named in `skipped`, with why.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pocketsize.compress.config import CompressConfig
from pocketsize.compress.frontier import measure_cost, shipped
from pocketsize.compress.reference import Reference

NOT_ONNX = "not an ONNX model, and the candidates are timed in ONNX Runtime"


def with_references(search_dir: Path, teacher: Path, data, models: dict[str, Path]) -> dict:
    """The search's summary (search.json) with `references`: for each ONNX model of `models`,
    its agreement with the teacher and task metric on the validation split, its shipped size
    and its latency at the search's latency_batch; `skipped`: the models that are not ONNX."""
    from pocketsize.distill.loading import load_data
    from pocketsize.tasks import get_task

    data = load_data(data)
    summary = json.loads((Path(search_dir) / "search.json").read_text())
    cfg, task = CompressConfig.build(**summary["config"]), get_task(summary["task"])
    onnx = {name: Path(path) for name, path in models.items() if is_onnx(Path(path))}
    summary["skipped_references"] = {name: NOT_ONNX for name in models if name not in onnx}
    summary["references"] = []
    if not onnx:
        return summary
    with tempfile.TemporaryDirectory(prefix="pocketsize-references-") as work:
        reference = Reference.of(teacher, data, task, Path(work) / "teacher")
        for name, path in onnx.items():
            agreement, metric = reference.score(path)
            point = {"name": name, "agreement": round(agreement, 6), "metric": round(metric, 6)}
            summary["references"].append({**point, **_cost(path, data, cfg, task)})
    return summary


def shipped_mb(model: Path) -> float:
    """An ONNX model's shipped size in MB, counted as every candidate's is."""
    return round(shipped(Path(model))[0] / 1e6, 4)


def _cost(model: Path, data, cfg: CompressConfig, task) -> dict:
    size, params, latency = measure_cost(model, data, cfg, task)
    return {"size_mb": round(size / 1e6, 4), "params": params, "latency_ms": round(latency, 4)}


def is_onnx(path: Path) -> bool:
    return path.suffix in (".onnx", ".ort") or any(path.glob("*.onnx"))
