"""The one scoring path: a split encoded once for a task, a model run over padded batches, the
outputs stacked back into example order, the task's predictions and metrics.

The evaluation harness, quantize's accuracy budget and distillation's validation all call it,
so a metric means the same wherever it is printed. A model is any `forward(batch) -> {output
name: array}` over padded numpy batches: a runner of pocketsize.runtime.runners, an ONNX Runtime
session (`session_forward`) or a PyTorch model (`torch_forward`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError

PAD_LOGIT = -1e4  # per-token outputs of padded positions: never wins an argmax or a softmax


@dataclass
class EncodedSplit:
    """One split of a task's data, tokenized once: what every model run over it shares."""

    task: Any
    examples: Any  # the datasets.Dataset the predictions are scored against
    features: Any  # task.encode(examples): the model inputs plus what predict() needs
    rows: list[dict]  # per feature, the model inputs (lists of ids or arrays)
    input_names: list[str]  # the task's inputs that the features provide, main input first
    pad: Callable[[list[dict]], dict[str, np.ndarray]]  # rows -> one padded numpy batch

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self, batch_size: int = 32, by_length: bool = False) -> Iterator[tuple]:
        """(feature indices, padded batch); by_length groups similar lengths (less padding)."""
        order = np.arange(len(self.rows))
        if by_length:
            main = self.input_names[0]
            order = np.argsort([len(r[main]) for r in self.rows], kind="stable")
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield index, self.pad([self.rows[i] for i in index])


def encode_split(task, examples, tokenizer, max_length: int | None = None, progress=False):
    """Encode `examples` with the task's adapter (and its collator for padding)."""
    features = _quiet(task.encode, progress)(examples, tokenizer, max_length=max_length)
    inputs = [n for n in task.input_names if n in features.column_names]
    rows = features.select_columns(inputs).to_list()
    collate = task.collator(tokenizer)

    def pad(batch_rows: list[dict]) -> dict[str, np.ndarray]:
        batch = collate(batch_rows)
        return {k: np.asarray(v) for k, v in batch.items() if k in task.input_names}

    return EncodedSplit(task, examples, features, rows, inputs, pad)


class ScoringMemoryError(PocketsizeError):
    """The outputs a split's scoring keeps would not fit in the memory that is free."""


def run_batches(encoded: EncodedSplit, forward, batch_size=32, by_length=False, progress=None):
    """forward() over every batch: [(feature indices, {output name: array})], in run order."""
    from tqdm.auto import tqdm

    batches = encoded.batches(batch_size, by_length)
    total = -(-len(encoded) // batch_size)
    if progress is not None:
        batches = tqdm(batches, total=total, desc=progress or None, disable=not progress)
    out = []
    for index, batch in batches:
        outputs = forward(batch)
        if not out:
            check_memory(encoded, outputs, batch)
        out.append((index, outputs))
    return out


def check_memory(encoded: EncodedSplit, outputs: dict, batch: dict) -> None:
    """Refuse, after the first batch, a split whose kept outputs would not fit in free memory.

    Per-token outputs are kept for every position: the batches as they come, then stacked
    to the longest feature (stack_outputs). A causal LM's logits are the vocabulary per
    position: SmolLM2's 49,152 floats, several GB for a few hundred sentences."""
    import psutil

    width = np.shape(batch[encoded.input_names[0]])[1] if encoded.input_names else 0
    per_position = sum(
        v.dtype.itemsize * int(np.prod(v.shape[2:]))
        for v in map(np.asarray, outputs.values())
        if v.ndim >= 2 and v.shape[1] == width
    )
    if not per_position:
        return
    lengths = [len(r[encoded.input_names[0]]) for r in encoded.rows]
    needed = per_position * (sum(lengths) + len(lengths) * max(lengths))
    free = psutil.virtual_memory().available
    if needed > 0.8 * free:
        raise ScoringMemoryError(
            f"scoring {len(lengths)} examples keeps {per_position:,} bytes of outputs per "
            f"token position, about {needed / 1e9:.2f} GB, more than the "
            f"{free / 1e9:.2f} GB of memory free; score fewer or shorter examples "
            "(max_examples, max_length)"
        )


def stack_outputs(per_batch: list[tuple], output_names) -> dict[str, np.ndarray]:
    """Batches' outputs concatenated into feature order; per-token outputs are padded to the
    longest batch with PAD_LOGIT."""
    order = np.concatenate([index for index, _ in per_batch]) if per_batch else np.zeros(0, int)
    stacked = {}
    for name in output_names:
        chunks = [outputs[name] for _, outputs in per_batch]
        if not chunks:
            stacked[name] = np.zeros((0,))
            continue
        # one array, filled in place: padded copies of the chunks, then their concatenation,
        # would hold three times what the result does (a causal LM's logits: gigabytes)
        first = chunks[0]
        ragged = first.ndim > 1 and len({c.shape[1] for c in chunks}) > 1
        if ragged:
            shape = (len(order), max(c.shape[1] for c in chunks), *first.shape[2:])
            result = np.full(shape, PAD_LOGIT, dtype=first.dtype)
        else:
            result = np.empty((len(order), *first.shape[1:]), dtype=first.dtype)
        for chunk, (index, _) in zip(chunks, per_batch):
            if ragged:
                result[index, : chunk.shape[1]] = chunk
            else:
                result[index] = chunk
        stacked[name] = result
    return stacked


def outputs_of(encoded, forward, batch_size=32, by_length=False, progress=None) -> dict:
    """The model's stacked outputs for every feature of the split."""
    per_batch = run_batches(encoded, forward, batch_size, by_length, progress)
    return stack_outputs(per_batch, encoded.task.output_names)


def predict(encoded: EncodedSplit, outputs: dict) -> list:
    return encoded.task.predict(outputs, encoded.features, encoded.examples)


def score(encoded: EncodedSplit, predictions: list) -> dict:
    return encoded.task.score(predictions, encoded.examples)


def evaluate_forward(encoded, forward, batch_size=32, by_length=False) -> dict:
    """The task's metrics of one model on the split."""
    return score(encoded, predict(encoded, outputs_of(encoded, forward, batch_size, by_length)))


def divergence(reference: list[tuple], candidate: list[tuple], output_names=None) -> float:
    """Relative L2 error ||cand - ref|| / ||ref|| over the same batches (run_batches' output)
    and the task outputs, so padding never enters the sums."""
    num = den = 0.0
    for (_, ref), (_, cand) in zip(reference, candidate):
        for name in output_names or ref:
            r = np.asarray(ref[name], dtype=np.float64)
            num += float(np.sum((np.asarray(cand[name], dtype=np.float64) - r) ** 2))
            den += float(np.sum(r**2))
    return float(np.sqrt(num / max(den, 1e-12)))


def session_forward(session) -> Callable[[dict], dict]:
    """An ONNX Runtime session as a forward(): feeds the inputs it takes (token_type_ids of
    zeros when the graph wants them and the batch has none)."""
    wanted = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]

    def forward(batch: dict) -> dict:
        feed = {k: np.asarray(batch[k], dtype=np.int64) for k in wanted if k in batch}
        if "token_type_ids" in wanted and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        return dict(zip(out_names, session.run(None, feed)))

    return forward


def torch_forward(model, task) -> Callable[[dict], dict]:
    """A PyTorch model as a forward() (eval mode, inference mode, outputs as float32 numpy)."""
    from pocketsize.runtime.runners import TorchRunner

    return TorchRunner(model, task.output_names, task.input_names, task.generation_settings).run


def _quiet(encode, progress: bool):
    """task.encode, without datasets' "tokenizing" bar when progress bars are off."""

    def run(*args, **kwargs):
        from pocketsize.data.progress import quiet_progress

        with quiet_progress(not progress):
            return encode(*args, **kwargs)

    return run
