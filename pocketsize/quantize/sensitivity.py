"""Per-node sensitivity: quantize one node at a time, measure how far the model moves, rank.

This is the diagnosis users ask for when accuracy drops after quantization: which layers should
stay in float. Each candidate is quantized alone (everything else stays float) and scored on a
slice of the validation split by output divergence against the float model and, where the data
has labels, by the task metric.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pocketsize.quantize.scoring import TaskData, divergence, ort_session


def candidate_nodes(onnx_path: str | Path, op_types: list[str], static: bool = False) -> list[dict]:
    """Nodes the quantizer would touch: of a quantized op type and (dynamic) with constant weights."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    initializers = {i.name for i in graph.initializer}
    weight_input = {
        "MatMul": 1,
        "Attention": 1,
        "Gather": 0,
        "EmbedLayerNormalization": 2,
        "Conv": 1,
        "Gemm": 1,
        "LSTM": 1,
    }
    nodes = []
    for node in graph.node:
        if node.op_type not in op_types or not node.name:
            continue
        idx = weight_input.get(node.op_type)
        if (
            not static
            and idx is not None
            and (len(node.input) <= idx or node.input[idx] not in initializers)
        ):
            continue  # dynamic quantization only quantizes constant weights
        nodes.append({"node": node.name, "op_type": node.op_type})
    return nodes


def rank_nodes(
    src: str | Path,
    nodes: list[dict],
    quantize_only: Callable[[Path, list[str]], None],
    data: TaskData,
    reference: list[dict],
    reference_metric: float | None,
    by: str = "divergence",
    batch_size: int = 32,
) -> list[dict]:
    """Score each node quantized alone; most sensitive first."""
    results = []
    with tempfile.TemporaryDirectory(prefix="pocketsize-sens-") as tmp:
        for entry in nodes:
            path = Path(tmp) / "one.onnx"
            quantize_only(path, [entry["node"]])
            outputs = data.run(ort_session(path), batch_size)
            row = dict(entry, divergence=divergence(reference, outputs, data.task.output_names))
            if reference_metric is not None:
                row["metric"] = data.primary(outputs)
                row["metric_drop"] = reference_metric - row["metric"]
            results.append(row)
    key = (
        (lambda r: (r.get("metric_drop", 0.0), r["divergence"]))
        if by == "metric"
        else (lambda r: r["divergence"])
    )
    results.sort(key=key, reverse=True)
    for rank, row in enumerate(results, 1):
        row["rank"] = rank
    return results
