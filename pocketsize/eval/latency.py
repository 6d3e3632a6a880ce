"""Latency and throughput, all variants interleaved in one process.

Why hand-written: the timing loop has to interleave variants call by call (so machine drift
and neighbours' load hit all of them alike) and to time only the model call on batches that
are already tokenized and padded; benchmark tools time one model at a time.

Protocol: the same real test inputs for every variant, padded per batch to its longest input;
`warmup` untimed calls per variant and batch size; then `repeats` passes over all batches, each
batch run by every variant in an order that rotates from batch to batch. Reported per batch
size: median (p50) and p95 of the per-call wall time, the range of the per-pass medians (the
spread a second measurement is expected to fall in), throughput in examples per second.

Idle threads wait passively in both runtimes, so that one variant's idle pool does not steal
the cores of the next: ONNX Runtime sessions are made with spinning off (runners.py), and
PyTorch's OpenMP pool needs OMP_WAIT_POLICY=PASSIVE in the environment before torch is
imported (the `pocketsize eval` command sets it; `settings.latency.omp_wait_policy` records it).
On a machine shared with other work, active spinning made PyTorch at 2 threads 6x slower.
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
        for name in names:
            for b in prepared[name][bs][: max(1, warmup)]:
                runners[name].forward(b)
        times = {name: np.zeros((repeats, n_batches)) for name in names}
        for r in range(repeats):
            for i in range(n_batches):
                shift = (i + r) % len(names)
                for name in names[shift:] + names[:shift]:
                    inputs = prepared[name][bs][i]
                    t0 = time.perf_counter()
                    runners[name].forward(inputs)
                    times[name][r, i] = (time.perf_counter() - t0) * 1000
                    bar.update()
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
