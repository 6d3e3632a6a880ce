"""The quantize stage's view of a task's data: one split encoded once (through the one scoring
path every stage shares, pocketsize.runtime.scoring), fed to ORT sessions batch by batch, scored by the task.

The stage needs the task metric of many candidate models (accuracy budget, sensitivity) and
their output divergence against the float model; batches run in the split's order at a fixed
size, so every candidate sees exactly the same batches.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.formats.onnx_dir import ort_session  # noqa: F401 (re-exported)
from pocketsize.runtime.scoring import (  # noqa: F401 (divergence is re-exported)
    divergence,
    encode_split,
    predict,
    run_batches,
    session_forward,
    stack_outputs,
)


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
        self.encoded = encode_split(task, examples, tokenizer, max_length)
        self.features = self.encoded.features

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
        """Padded int64 feeds with exactly `input_names`; streamed, one batch at a time."""
        n = len(self.encoded) if limit is None else min(limit, len(self.encoded))
        for start in range(0, n, batch_size):
            batch = self.encoded.pad(self.encoded.rows[start : min(start + batch_size, n)])
            feed = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items() if k in input_names}
            if "token_type_ids" in input_names and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            yield feed

    def run(self, session, batch_size: int = 32) -> list[tuple]:
        """Model outputs per batch, as the one scoring path returns them."""
        self.check_inputs([i.name for i in session.get_inputs()])
        return run_batches(self.encoded, session_forward(session), batch_size)

    def score(self, per_batch: list[tuple]) -> dict:
        outputs = stack_outputs(per_batch, self.task.output_names)
        return self.task.score(predict(self.encoded, outputs), self.examples)

    def primary(self, per_batch: list[tuple]) -> float:
        return float(self.score(per_batch)[self.task.primary_metric])

    def predictions(self, per_batch: list[tuple]) -> list:
        return predict(self.encoded, stack_outputs(per_batch, self.task.output_names))

    def agreement(self, per_batch: list[tuple], reference_predictions: list) -> float:
        """The task's headline agreement of these outputs with the reference's predictions (e.g.
        the float model's, from predictions()): the share of examples predicted alike, or entity
        F1 against its entities."""
        num, den = self.task.agreement_parts(
            self.predictions(per_batch), reference_predictions, self.examples
        )
        return float(np.sum(num) / np.sum(den)) if np.sum(den) else 1.0


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
