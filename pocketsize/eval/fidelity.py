"""How closely a variant follows the reference model, beyond the task metric."""

from __future__ import annotations

import numpy as np


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def kl_divergence(reference_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per-row KL(P_reference || P_variant) of the softmax distributions, in nats."""
    log_p = log_softmax(reference_logits)
    log_q = log_softmax(logits)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


def logit_differences(reference_logits: np.ndarray, logits: np.ndarray) -> dict:
    diff = np.abs(np.asarray(reference_logits, float) - np.asarray(logits, float))
    return {"max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean())}


def classification_fidelity(reference_logits: np.ndarray, logits: np.ndarray) -> dict:
    return {
        "kl": float(kl_divergence(reference_logits, logits).mean()),
        **logit_differences(reference_logits, logits),
    }


def span_fidelity(reference: dict, variant: dict) -> dict | None:
    """KL and logit differences of start/end distributions over each window's real tokens.

    Only defined when both variants cut the examples into the same token windows (same
    tokenizer); otherwise the logits of the two are not position-for-position comparable.
    """
    ref_ids, var_ids = reference["input_ids"], variant["input_ids"]
    if len(ref_ids) != len(var_ids) or any(a != b for a, b in zip(ref_ids, var_ids)):
        return None
    kls, diffs = [], []
    for name in ("start_logits", "end_logits"):
        for i, ids in enumerate(ref_ids):
            r = reference["outputs"][name][i, : len(ids)]
            v = variant["outputs"][name][i, : len(ids)]
            kls.append(float(kl_divergence(r, v)))
            diffs.append(np.abs(r.astype(float) - v.astype(float)))
    flat = np.concatenate(diffs)
    return {
        "kl": float(np.mean(kls)),
        "max_abs_logit_diff": float(flat.max()),
        "mean_abs_logit_diff": float(flat.mean()),
    }
