"""Paired bootstrap confidence intervals over test examples.

A metric is a ratio of per-example sums: a mean (denominators 1) or, e.g., micro entity F1
(2 TP over 2 TP + FP + FN per sentence), which is no mean of per-sentence scores; a resample
draws examples and takes both sums again.

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


def _resampled_ratios(numerators, denominators, indices: np.ndarray, empty=0.0, chunk=200):
    """sum(numerators) / sum(denominators) over each resample (a mean when denominators are 1);
    `empty` where the denominators sum to 0 (e.g. no entity in any resampled sentence)."""
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    out = []
    for i in range(0, len(indices), chunk):
        rows = indices[i : i + chunk]
        sums = den[rows].sum(axis=1)
        filled = np.full(len(rows), float(empty))
        out.append(np.divide(num[rows].sum(axis=1), sums, out=filled, where=sums > 0))
    return np.concatenate(out)


def _ratio(numerators, denominators, empty=0.0) -> float:
    total = float(np.sum(denominators))
    return float(np.sum(numerators)) / total if total else float(empty)


def _interval(resampled: np.ndarray, value: float, confidence: float) -> dict:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return {"value": value, "ci_low": float(low), "ci_high": float(high)}


def ratio_ci(numerators, denominators, indices: np.ndarray, confidence=0.95, empty=0.0) -> dict:
    """A ratio of per-example sums (e.g. micro F1 = sum 2TP / sum (2TP + FP + FN)) with its
    percentile bootstrap interval: the examples are resampled, the sums taken again. `empty`:
    the value when the denominators sum to 0."""
    resampled = _resampled_ratios(numerators, denominators, indices, empty)
    return _interval(resampled, _ratio(numerators, denominators, empty), confidence)


def mean_ci(values, indices: np.ndarray, confidence: float = 0.95) -> dict:
    """The mean of per-example values with its percentile bootstrap interval."""
    values = np.asarray(values, dtype=float)
    return ratio_ci(values, np.ones_like(values), indices, confidence)


def paired_ratio_difference_ci(
    parts, reference_parts, indices: np.ndarray, confidence=0.95, empty=0.0
):
    """ratio(parts) - ratio(reference_parts), each (numerators, denominators), with its
    interval over the same resamples; `significant` when 0 is outside. `empty`: a ratio's value
    where its denominators sum to 0."""
    diff = _resampled_ratios(*parts, indices, empty) - _resampled_ratios(
        *reference_parts, indices, empty
    )
    value = _ratio(*parts, empty) - _ratio(*reference_parts, empty)
    result = _interval(diff, value, confidence)
    result["significant"] = bool(result["ci_low"] > 0 or result["ci_high"] < 0)
    return result


def paired_difference_ci(values, reference_values, indices: np.ndarray, confidence=0.95) -> dict:
    """mean(values) - mean(reference_values) with its interval; `significant` when 0 is outside."""
    values = np.asarray(values, dtype=float)
    reference_values = np.asarray(reference_values, dtype=float)
    return paired_ratio_difference_ci(
        (values, np.ones_like(values)),
        (reference_values, np.ones_like(reference_values)),
        indices,
        confidence,
    )
