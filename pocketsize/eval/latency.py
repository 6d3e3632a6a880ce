"""Latency and throughput of all variants, in one process, in rotating blocks.

Why hand-written: the timing loop has to rotate variants round by round (so machine drift
hits all of them alike) and to time only the model call on batches that are already
tokenized and padded; benchmark tools time one model at a time.

Protocol: the same real test inputs for every variant, padded per batch to its longest input.
Per batch size, `repeats` rounds; in each round every variant, in an order that rotates from
round to round, runs `warmup` untimed calls and then one timed pass over all batches. Reported
per batch size: median (p50) and p95 of the per-call wall time, the range of the per-round
medians (the spread a second measurement is expected to fall in), throughput in examples/s.

Each runtime runs with its own defaults, as a user deploys it: ONNX Runtime's pool threads spin
between calls and PyTorch's OpenMP pool keeps its default wait policy. That is why variants run
in blocks, not call by call: a pool that spins after its own call steals the cores of the next
variant's call (measured: PyTorch batch-1 latency 2.5x worse beside two spinning ONNX Runtime
sessions), while forcing every pool to sleep instead (OMP_WAIT_POLICY=PASSIVE, ORT spinning
off) made the teacher 1.5x and a small int8 model 1.5x slower than either runs by default.
The warm-up calls at the start of each block let the previous block's pool go idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm


def make_batches(features: list[dict], batch_size: int, pad: Callable) -> list[dict]:
    """Consecutive batches of `batch_size` features, each padded to its own longest input."""
    batches = []
    for start in range(0, len(features) - batch_size + 1, batch_size):
        batch = pad(features[start : start + batch_size])
        batches.append({k: np.asarray(v) for k, v in batch.items()})
    return batches


def measure_latency(
    runners: dict[str, object],
    batches: dict[str, dict[int, list[dict]]],
    repeats: int = 3,
    warmup: int = 3,
    progress: bool = True,
) -> dict[str, dict[str, dict]]:
    """runners: name -> runner; batches: name -> batch size -> padded numpy batches.

    Returns name -> str(batch size) -> stats (see module docstring).
    """
    names = list(runners)
    prepared = {
        name: {bs: [runners[name].prepare(b) for b in bl] for bs, bl in batches[name].items()}
        for name in names
    }
    batch_sizes = sorted(next(iter(batches.values())))
    results: dict[str, dict[str, dict]] = {name: {} for name in names}
    total = sum(len(prepared[names[0]][bs]) for bs in batch_sizes) * repeats * len(names)
    bar = tqdm(total=total, desc="timing", unit="call", disable=not progress, leave=False)
    for bs in batch_sizes:
        n_batches = len(prepared[names[0]][bs])
        if n_batches == 0:
            continue
        times = {name: np.zeros((repeats, n_batches)) for name in names}
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                runner, inputs = runners[name], prepared[name][bs]
                for b in inputs[: max(1, warmup)]:
                    runner.forward(b)
                for i, b in enumerate(inputs):
                    t0 = time.perf_counter()
                    runner.forward(b)
                    times[name][r, i] = (time.perf_counter() - t0) * 1000
                bar.update(n_batches)
        for name in names:
            results[name][str(bs)] = summarize(times[name], bs, batches[name][bs])
    bar.close()
    return results


def summarize(times_ms: np.ndarray, batch_size: int, batches: list[dict]) -> dict:
    """Stats of a (repeats, batches) matrix of per-call milliseconds."""
    flat = times_ms.reshape(-1)
    per_pass = np.median(times_ms, axis=1)
    # the main input's second axis: the padded sequence length of token inputs
    mains = [b.get("input_ids", next(iter(b.values()))) for b in batches]
    seq_lens = [m.shape[1] for m in mains if m.ndim > 1]
    return {
        "p50": float(np.median(flat)),
        "p95": float(np.percentile(flat, 95)),
        "mean": float(flat.mean()),
        "p50_spread": [float(per_pass.min()), float(per_pass.max())],
        "calls": int(flat.size),
        "inputs": int(len(batches) * batch_size),
        "repeats": int(times_ms.shape[0]),
        "mean_padded_length": float(np.mean(seq_lens)) if seq_lens else None,
        "throughput_per_s": float(batch_size * flat.size / flat.sum() * 1000),
    }
