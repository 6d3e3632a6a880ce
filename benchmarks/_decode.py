"""Prefill and one decode step of an exported decoder (optimum's layout: input_ids,
attention_mask, position_ids and past_key_values.N.key/value in; logits and present.N.* out),
timed by hand at batch 1; shared by the decoder benchmarks.

Why by hand: `pocketsize.evaluate` times whole forwards, not a decode step fed its past.
"""

from __future__ import annotations

import time

import numpy as np


def feeds(session, ids: np.ndarray, past: dict | None) -> dict:
    """One call's inputs: `ids` after `past` (empty past for a prefill)."""
    past_len = 0 if past is None else next(iter(past.values())).shape[2]
    out = {
        "input_ids": ids,
        "attention_mask": np.ones((1, past_len + ids.shape[1]), dtype=np.int64),
        "position_ids": np.arange(past_len, past_len + ids.shape[1], dtype=np.int64)[None],
    }
    for i in session.get_inputs():
        if i.name.startswith("past_key_values."):
            out[i.name] = (
                past[i.name] if past else np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
            )
    return {k: v for k, v in out.items() if k in {i.name for i in session.get_inputs()}}


def step(session, ids: np.ndarray):
    """Prefill `ids`, then decode one token; returns (prefill logits, prefill s, decode s)."""
    names = [o.name for o in session.get_outputs()]
    t0 = time.perf_counter()
    outputs = dict(zip(names, session.run(None, feeds(session, ids, None))))
    t1 = time.perf_counter()
    past = {
        n.replace("present.", "past_key_values."): v for n, v in outputs.items() if n != "logits"
    }
    token = outputs["logits"][:, -1:].argmax(-1).astype(np.int64)
    t2 = time.perf_counter()
    session.run(["logits"], feeds(session, token, past))
    t3 = time.perf_counter()
    return outputs["logits"][0], t1 - t0, t3 - t2


def next_token_nll(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The negative log-likelihood of each prompt token after the first."""
    from pocketsize.tasks.fidelity import log_softmax

    return -log_softmax(logits[:-1])[np.arange(len(ids) - 1), ids[1:]]


def next_tokens_and_nll(logits: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the scores need of one prompt's logits (a full-vocabulary array per position is
    6 MB for a 49k vocabulary; hundreds of prompts of several variants would not fit)."""
    return logits.argmax(-1), next_token_nll(logits, ids)


def time_decoders(paths: dict, prompts: list[np.ndarray], rounds: int, threads: int = 2) -> dict:
    """Per variant (name -> .onnx path): prefill and decode-step p50 in ms over `prompts` and
    `rounds`, the variants rotated per round (each warmed up after the previous one), and from
    the first round each prompt's argmax next tokens and next-token NLL."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {
        n: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for n, p in paths.items()
    }
    times = {n: {"prefill": [], "decode": []} for n in sessions}
    kept: dict[str, list] = {n: [] for n in sessions}
    names = list(sessions)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step(sessions[name], prompts[0])  # warm-up after the previous variant
            for ids in prompts:
                first, prefill, decode = step(sessions[name], ids)
                times[name]["prefill"].append(prefill * 1000)
                times[name]["decode"].append(decode * 1000)
                if r == 0:
                    kept[name].append(next_tokens_and_nll(first, ids[0]))
    return {
        n: {
            "prefill_p50_ms": float(np.median(times[n]["prefill"])),
            "decode_p50_ms": float(np.median(times[n]["decode"])),
            "next_tokens": [t for t, _ in kept[n]],
            "nll": [x for _, x in kept[n]],
        }
        for n in names
    }


def scores(timed: dict, reference: str) -> dict:
    """Per variant: perplexity over every prompt position and next-token agreement with the
    `reference` variant's argmax at every position."""
    ref = np.concatenate(timed[reference]["next_tokens"])
    return {
        n: {
            "perplexity": float(np.exp(np.concatenate(t["nll"]).mean())),
            "agreement": float((np.concatenate(t["next_tokens"]) == ref).mean()),
        }
        for n, t in timed.items()
    }
