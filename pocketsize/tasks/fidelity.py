"""How closely one run of a model follows another's, beyond the task metric: the measures the
tasks' `compare_runs` hooks are made of (softmax KL and logit differences, per example, per
token or per answer span)."""

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


NOT_COMPARABLE = {"kl": None, "max_abs_logit_diff": None, "mean_abs_logit_diff": None}


def not_comparable(why: str) -> dict:
    return dict(NOT_COMPARABLE, note=why)


def _same_inputs(reference: dict, variant: dict) -> bool:
    """Both runs cut the examples into the same token positions: the same number of features
    of the same lengths, and outputs of one width. (A vocabulary-trimmed model renumbers its
    ids but segments exactly as its original, so ids alone would say no.)"""
    ref_ids, var_ids = reference["input_ids"], variant["input_ids"]
    if len(ref_ids) != len(var_ids) or any(len(a) != len(b) for a, b in zip(ref_ids, var_ids)):
        return False
    return all(
        np.shape(reference["outputs"][n])[2:] == np.shape(variant["outputs"].get(n))[2:]
        for n in reference["outputs"]
    )


def token_fidelity(reference: dict, variant: dict) -> dict | None:
    """KL and logit differences over every real (unpadded) position; same tokenizer only."""
    if not _same_inputs(reference, variant):
        return None
    kls, diffs = [], []
    for i, row in enumerate(reference["input_ids"]):
        r = reference["outputs"]["logits"][i, : len(row)]
        v = variant["outputs"]["logits"][i, : len(row)]
        kls.append(kl_divergence(r, v))
        diffs.append(np.abs(r.astype(float) - v.astype(float)).reshape(-1))
    flat = np.concatenate(diffs)
    return {
        "kl": float(np.concatenate(kls).mean()),
        "max_abs_logit_diff": float(flat.max()),
        "mean_abs_logit_diff": float(flat.mean()),
    }


def span_fidelity(reference: dict, variant: dict) -> dict | None:
    """KL and logit differences of start/end distributions over each window's real tokens.

    Only defined when both variants cut the examples into the same token windows (same
    tokenizer); otherwise the logits of the two are not position-for-position comparable.
    """
    if not _same_inputs(reference, variant):
        return None
    ref_ids = reference["input_ids"]
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


def token_runs(reference: dict, variant: dict) -> dict:
    """The per-position distributions of two runs (token tags, next tokens), where comparable."""
    why = "tokenizers differ, so next-token distributions are not comparable"
    return token_fidelity(reference, variant) or not_comparable(why)
