"""A minimal scorer for ONNX models on a task's validation split, built on the shared task adapter.

The quantize stage needs the task metric of many candidate models (accuracy budget, sensitivity)
and output divergence against the float model; `pocketsize.eval` is the full harness (reports,
fidelity, PyTorch runners). This file only feeds an ORT session with task-encoded batches and
asks the task adapter to predict and score, so it stays in step with eval's numbers.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.formats.onnx_dir import ort_session  # noqa: F401 (re-exported)


class TaskData:
    """One split of a task dataset, encoded once, fed to ORT sessions batch by batch."""

    def __init__(
        self, task, tokenizer, examples, max_length: int | None = None, limit: int | None = None
    ):
        if limit is not None and len(examples) > limit:
            examples = examples.select(range(limit))
        self.task, self.tokenizer, self.examples, self.max_length = (
            task,
            tokenizer,
            examples,
            max_length,
        )
        self.features = task.encode(examples, tokenizer, max_length=max_length)
        self.collate = task.collator(tokenizer)

    def subset(self, n: int) -> TaskData:
        return (
            self
            if n >= len(self.examples)
            else TaskData(self.task, self.tokenizer, self.examples, self.max_length, n)
        )

    def __len__(self) -> int:
        return len(self.features)

    def check_inputs(self, input_names: list[str]) -> None:
        """Raise when the encoded features cannot feed a model with these inputs."""
        have = set(self.features.column_names)
        missing = [n for n in input_names if n not in have and n != "token_type_ids"]
        if missing:
            raise PocketsizeError(
                f"the data's features {sorted(have)} do not match the model inputs {input_names} "
                f"(missing {missing}); use data for this model's task and tokenizer"
            )

    def batches(
        self, input_names: list[str], batch_size: int = 32, limit: int | None = None
    ) -> Iterator[dict]:
        """Padded numpy feeds; streamed, so only one batch is materialised at a time."""
        cols = [c for c in self.features.column_names if c in input_names]
        n = len(self.features) if limit is None else min(limit, len(self.features))
        for start in range(0, n, batch_size):
            rows = self.features[start : min(start + batch_size, n)]
            items = [{c: rows[c][i] for c in cols} for i in range(len(rows[cols[0]]))]
            batch = self.collate(items)
            feed = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items() if k in input_names}
            if "token_type_ids" in input_names and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            yield feed

    def run(self, session, batch_size: int = 32) -> list[dict[str, np.ndarray]]:
        """Model outputs per batch (by output name)."""
        names = [i.name for i in session.get_inputs()]
        self.check_inputs(names)
        out_names = [o.name for o in session.get_outputs()]
        return [
            dict(zip(out_names, session.run(None, feed)))
            for feed in self.batches(names, batch_size)
        ]

    def score(self, per_batch: list[dict]) -> dict:
        outputs = {name: _stack([b[name] for b in per_batch]) for name in self.task.output_names}
        predictions = self.task.predict(outputs, self.features, self.examples)
        return self.task.score(predictions, self.examples)

    def primary(self, per_batch: list[dict]) -> float:
        return float(self.score(per_batch)[self.task.primary_metric])


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate batches along axis 0, padding per-token outputs to the longest batch with a
    very negative logit (a padded position must never win an argmax)."""
    if arrays[0].ndim < 2 or len({a.shape[1:] for a in arrays}) == 1:
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    padded = [
        np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=-1e4)
        for a in arrays
    ]
    return np.concatenate(padded)


def divergence(reference: list[dict], candidate: list[dict], output_names=None) -> float:
    """Relative L2 error ||cand - ref|| / ||ref|| over all batches and task outputs."""
    num = den = 0.0
    for ref, cand in zip(reference, candidate):
        for name in output_names or ref:
            r = np.asarray(ref[name], dtype=np.float64)
            num += float(np.sum((np.asarray(cand[name], dtype=np.float64) - r) ** 2))
            den += float(np.sum(r**2))
    return float(np.sqrt(num / max(den, 1e-12)))


def latency_ms(session, feeds: list[dict], repeats: int = 3) -> float:
    """Median wall time of one batch-1 run over `feeds`, after one warm-up pass."""
    names = {i.name for i in session.get_inputs()}
    feeds = [{k: v for k, v in f.items() if k in names} for f in feeds]
    for f in feeds[:2]:
        session.run(None, f)
    times = []
    for _ in range(repeats):
        for f in feeds:
            t = time.perf_counter()
            session.run(None, f)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)
