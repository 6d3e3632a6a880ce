"""PyTorch vs ONNX Runtime on real inputs of several shapes; a mismatch fails loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import write_json

# Real sentences of very different lengths so that padding, truncation and several sequence
# lengths are exercised (a dynamic-axes bug shows up only when shapes change).
SAMPLE_TEXTS = [
    "a good film",
    "the plot was dull and the cast was weak, but the music was lovely",
    "it is a very long story with a brilliant director, a clumsy script, a moving ending and "
    "a cast that is rather charming in every scene of the film; the music is quite superb too",
    "boring",
]
SAMPLE_QUESTIONS = ["who directed the film?", "what was weak?", "how was the music?", "when?"]


def sample_inputs(tokenizer, task: str, max_length: int = 128) -> list[dict[str, np.ndarray]]:
    """Tokenized batches of sizes 1, 2 and 4 with different sequence lengths."""
    batches = [[0], [1, 3], [0, 1, 2, 3]]
    out = []
    for idx in batches:
        texts = [SAMPLE_TEXTS[i] for i in idx]
        if task == "extractive-qa":
            questions = [SAMPLE_QUESTIONS[i] for i in idx]
            enc = tokenizer(
                questions,
                texts,
                padding=True,
                truncation="only_second",
                max_length=max_length,
                return_tensors="np",
            )
        else:
            enc = tokenizer(
                texts, padding=True, truncation=True, max_length=max_length, return_tensors="np"
            )
        out.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
    return out


def random_inputs(session, vocab_size: int = 100, shapes=((1, 8), (2, 16))) -> list[dict]:
    """Inputs built from a session's input metadata, for models without a tokenizer."""
    rng = np.random.default_rng(0)
    cases = []
    for batch, seq in shapes:
        feed = {}
        for inp in session.get_inputs():
            dims = [
                d if isinstance(d, int) else (batch if i == 0 else seq)
                for i, d in enumerate(inp.shape)
            ]
            if "int" in inp.type:
                if "mask" in inp.name:
                    feed[inp.name] = np.ones(dims, dtype=np.int64)
                elif "type" in inp.name:
                    feed[inp.name] = np.zeros(dims, dtype=np.int64)
                else:
                    feed[inp.name] = rng.integers(0, vocab_size, dims, dtype=np.int64)
            else:
                feed[inp.name] = rng.standard_normal(dims).astype(np.float32)
        cases.append(feed)
    return cases


def ort_session(path: str | Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_session(session, feed: dict) -> dict[str, np.ndarray]:
    names = {i.name for i in session.get_inputs()}
    outputs = session.run(None, {k: v for k, v in feed.items() if k in names})
    return {o.name: v for o, v in zip(session.get_outputs(), outputs)}


def compare_outputs(reference: dict, candidate: dict, atol: float, rtol: float) -> dict:
    """Max absolute difference per output and whether it is within atol + rtol * max|reference|."""
    figures = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise PocketsizeError(f"output {name!r} is missing from the ONNX model; re-export it")
        ref = np.asarray(ref, dtype=np.float64)
        cand = np.asarray(candidate[name], dtype=np.float64)
        if ref.shape != cand.shape:
            raise PocketsizeError(
                f"output {name!r} has shape {cand.shape} in ONNX but {ref.shape} in the reference; "
                "check the exported dynamic axes"
            )
        diff = float(np.max(np.abs(ref - cand))) if ref.size else 0.0
        tol = atol + rtol * float(np.max(np.abs(ref))) if ref.size else atol
        figures[name] = {"max_abs_diff": diff, "tolerance": tol, "ok": diff <= tol}
    return figures


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
