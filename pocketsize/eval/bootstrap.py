"""Paired bootstrap confidence intervals over test examples.

Every variant is resampled with the same example indices as the reference ("paired"), so the
interval of a difference reflects which examples are hard, not two independent draws. Written
out (a few lines of numpy) rather than scipy.stats.bootstrap so that one index matrix is shared
by every variant's metric, difference and agreement interval.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SAMPLES = 1000


def resample_indices(n: int, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> np.ndarray:
    """(samples, n) example indices drawn with replacement; reuse them for every variant."""
    if n == 0:
        raise ValueError("cannot bootstrap over zero examples")
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def _resampled_means(values: np.ndarray, indices: np.ndarray, chunk: int = 200) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.concatenate(
        [values[indices[i : i + chunk]].mean(axis=1) for i in range(0, len(indices), chunk)]
    )


def mean_ci(values, indices: np.ndarray, confidence: float = 0.95) -> dict:
    """The mean of per-example values with its percentile bootstrap interval."""
    means = _resampled_means(values, indices)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"value": float(np.mean(values)), "ci_low": float(low), "ci_high": float(high)}


def paired_difference_ci(values, reference_values, indices: np.ndarray, confidence=0.95) -> dict:
    """mean(values) - mean(reference_values) with its interval; `significant` when 0 is outside."""
    diff = np.asarray(values, dtype=float) - np.asarray(reference_values, dtype=float)
    result = mean_ci(diff, indices, confidence)
    result["significant"] = bool(result["ci_low"] > 0 or result["ci_high"] < 0)
    return result
