"""Shared builders for the distill/finetune tests: tiny QA data, a user module, quick kwargs."""

from __future__ import annotations

import random

from conftest import NEGATIVE, NEUTRAL, POSITIVE

# Settings that keep a Trainer run on a tiny model to a fraction of a second.
QUICK = dict(progress=False, logging_steps=1000, evaluate=False, batch_size=16)


def make_qa_dataset(n_train=48, n_val=12, n_test=12, seed=0):
    """SQuAD-layout data: the answer is the one positive word in a short context."""
    from datasets import Dataset, DatasetDict

    splits = {}
    for k, (name, n) in enumerate([("train", n_train), ("validation", n_val), ("test", n_test)]):
        rng = random.Random(seed * 10 + k)
        rows = {"id": [], "title": [], "context": [], "question": [], "answers": []}
        for i in range(n):
            words = rng.sample(NEUTRAL, 8) + rng.sample(NEGATIVE, 2)
            answer = rng.choice(POSITIVE)
            words.insert(rng.randint(0, len(words)), answer)
            context = " ".join(words)
            start = context.index(f" {answer}") + 1 if not context.startswith(answer) else 0
            rows["id"].append(f"{name}-{i}")
            rows["title"].append("t")
            rows["context"].append(context)
            rows["question"].append("which word is good")
            rows["answers"].append({"text": [answer], "answer_start": [start]})
        splits[name] = Dataset.from_dict(rows)
    return DatasetDict(splits)
