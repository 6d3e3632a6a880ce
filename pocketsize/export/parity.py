"""PyTorch vs ONNX Runtime on real inputs of several shapes; a mismatch fails loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.formats.onnx_dir import ort_session, run_session
from pocketsize.formats.ort_format import compare_outputs
from pocketsize.fsutil import write_json


def sample_inputs(tokenizer, task, max_length: int = 128) -> list[dict[str, np.ndarray]]:
    """Tokenized batches of sizes 1, 2 and 4 with different sequence lengths (the task's)."""
    from pocketsize.tasks import get_task

    return get_task(task).example_inputs(tokenizer, max_length)


def check_parity(
    torch_model,
    onnx_path: str | Path,
    inputs: list[dict[str, np.ndarray]],
    output_names: list[str] | tuple[str, ...],
    atol: float = 1e-4,
    rtol: float = 1e-4,
    report_path: str | Path | None = None,
) -> dict:
    """Run `torch_model(**inputs)` (a module returning a tuple in `output_names` order) and the ONNX
    model on every input batch; write the figures to `report_path`; raise when beyond tolerance."""
    import torch

    session = ort_session(onnx_path)
    session_inputs = {i.name for i in session.get_inputs()}
    cases = []
    for feed in inputs:
        with torch.inference_mode():
            ref = torch_model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        reference = {n: t.detach().float().numpy() for n, t in zip(output_names, ref)}
        # the exporter drops inputs the graph never reads (e.g. an unused attention_mask)
        feed = {k: v for k, v in feed.items() if k in session_inputs}
        figures = compare_outputs(reference, run_session(session, feed), atol, rtol)
        shapes = {k: list(v.shape) for k, v in feed.items()}
        cases.append({"input_shapes": shapes, "outputs": figures})
    worst = max(
        ((c, n, f) for c in cases for n, f in c["outputs"].items()),
        key=lambda t: t[2]["max_abs_diff"] - t[2]["tolerance"],
    )
    result = {
        "ok": all(f["ok"] for c in cases for f in c["outputs"].values()),
        "atol": atol,
        "rtol": rtol,
        "max_abs_diff": max(f["max_abs_diff"] for c in cases for f in c["outputs"].values()),
        "cases": cases,
    }
    if report_path is not None:
        write_json(report_path, result)
    if not result["ok"]:
        case, name, fig = worst
        raise PocketsizeError(
            f"ONNX output {name!r} differs from PyTorch by {fig['max_abs_diff']:.3g} "
            f"(tolerance {fig['tolerance']:.3g}) on inputs {case['input_shapes']}; the export is "
            "wrong: try exporter='torch' or optimize=False"
        )
    return result
