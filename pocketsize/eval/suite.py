"""More labelled sets than the evaluated split: every variant scored on each set's test split
(a seeded sample of `suite_examples`), each set's scalar metrics kept, and their mean.

For a sentence embedder this is the downstream suite in the style of MTEB: on each set a
logistic regression on the frozen embeddings (accuracy) and k-means clustering (V-measure), and
one mean over every set and both.
"""

from __future__ import annotations

import numpy as np

from pocketsize.errors import PocketsizeError


def check_suite(run) -> None:
    """Suite sets are scored as they are: for tasks whose models name no labels (a sentence
    embedder's figures read the set's own labels); a classifier's labels would need matching."""
    if run.cfg.suite and run.aligned.names is not None:
        raise PocketsizeError(
            f"suite= scores tasks whose models name no labels (sentence-embedding); for "
            f"{run.task.name}, evaluate each labelled set on its own"
        )


def suite_examples(name: str, n: int, seed: int):
    """The test split of catalogue dataset (or data reference) `name`, sampled to n."""
    from pocketsize.data import load_dataset

    data = load_dataset(name)
    if "test" not in data:
        raise PocketsizeError(f"suite set {name!r} has no test split; name a labelled dataset")
    examples = data["test"]
    if n < len(examples):
        examples = examples.shuffle(seed=seed).select(range(n))
    return examples


def score_suite(run, records: dict, predict) -> None:
    """records[variant]["suite"] = {set: {metric: value}} and "suite_mean"; `predict(name,
    examples)` is the harness's prediction of one variant on some examples."""
    cfg = run.cfg
    for set_name in cfg.suite:
        examples = suite_examples(set_name, cfg.suite_examples, cfg.seed)
        for name in run.resolved:
            scores = run.task.score(predict(name, examples), examples)
            figures = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}
            records[name].setdefault("suite", {})[set_name] = figures
    for record in records.values():
        values = [v for figures in record["suite"].values() for v in figures.values()]
        record["suite_mean"] = float(np.mean(values))


def suite_rows(variants: dict) -> tuple[list[str], list[list[str]]] | None:
    """The report's suite table: one column per set and metric, then the mean."""
    first = next(iter(variants.values()))
    if "suite" not in first:
        return None
    columns = [(s, m) for s, figures in first["suite"].items() for m in figures]
    header = ["variant", *(f"{s} {m}" for s, m in columns), "mean"]
    rows = [
        [name, *(f"{r['suite'][s][m]:.4f}" for s, m in columns), f"{r['suite_mean']:.4f}"]
        for name, r in variants.items()
    ]
    return header, rows
