"""Issue 32's first bar over seeds: does the search's model agree with the teacher more than the
hand-made final, within the final's size and batch-1 latency?

Reads the report (metrics.json) of runs of recipes/sentiment-search.yaml, one per seed, on one
CPU, and prints per seed: the chosen candidate, the search's minutes, both models' size and
batch-1 latency against the teacher, their agreement on the test split, and the difference
with its paired 95% bootstrap interval. Then the difference pooled over the seeds: every test
sentence's agreement averaged over the seeds for each model, the same sentences resampled for
both (the seeds share the test split, so a hard sentence is hard in every seed).

A variant's per-sentence agreement is read back from the report's disagreements (their indices;
the report lists up to 1000, so a model that disagrees on more is refused).

    .venv/bin/python benchmarks/search_seeds.py RUN42 RUN1 RUN2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pocketsize.eval import bootstrap

SEARCH, FINAL = "search", "int8"


def agreed(metrics: dict, name: str) -> np.ndarray:
    """1 where the variant predicted what the reference did, per test example."""
    record = metrics["variants"][name]
    listed = record["disagreements"]
    if record["disagreements_total"] != len(listed):
        sys.exit(f"{name}: {record['disagreements_total']} disagreements, the report lists only "
                 f"{len(listed)}; cannot rebuild its per-example agreement")  # fmt: skip
    values = np.ones(metrics["settings"]["examples"])
    values[[d["index"] for d in listed]] = 0
    return values


def read_run(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recipe = json.loads((run_dir / "teacher" / "stage.json").read_text())["recipe"]
    return {"seed": recipe["seed"], "metrics": metrics}


def _interval(diff: dict) -> str:
    mark = "significant" if diff["significant"] else "within noise"
    return (f"{diff['value']:+.2%} [{diff['ci_low']:+.2%}, {diff['ci_high']:+.2%}] "
            f"({mark})")  # fmt: skip


def seed_row(run: dict, samples: int) -> str:
    m = run["metrics"]
    search, final = m["variants"][SEARCH], m["variants"][FINAL]
    idx = bootstrap.resample_indices(m["settings"]["examples"], samples, seed=0)
    diff = bootstrap.paired_difference_ci(agreed(m, SEARCH), agreed(m, FINAL), idx)
    check = search["agreement"] - final["agreement"]
    assert abs(diff["value"] - check) < 1e-9, "rebuilt agreement differs from the report's"
    chosen = m["search"]["chosen_trial"]["candidate"]
    return (
        f"| {run['seed']} | {chosen} | {m['search']['seconds'] / 60:.1f} "
        f"| {final['size_ratio']:.1f}x / {search['size_ratio']:.1f}x "
        f"| {final['speedup']:.1f}x / {search['speedup']:.1f}x "
        f"| {final['agreement']:.2%} | {search['agreement']:.2%} | {_interval(diff)} |"
    )


def pooled(runs: list[dict], samples: int) -> dict:
    sizes = {r["metrics"]["settings"]["examples"] for r in runs}
    prints = {r["metrics"]["settings"]["dataset_fingerprint"] for r in runs}
    if len(sizes) != 1 or len(prints) != 1:
        sys.exit("the runs were scored on different test data; pooling needs the same split")
    search = np.mean([agreed(r["metrics"], SEARCH) for r in runs], axis=0)
    final = np.mean([agreed(r["metrics"], FINAL) for r in runs], axis=0)
    idx = bootstrap.resample_indices(sizes.pop(), samples, seed=0)
    return bootstrap.paired_difference_ci(search, final, idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories, one per seed")
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap resamples")
    args = parser.parse_args()
    runs = [read_run(d) for d in args.runs]
    cpus = {r["metrics"]["machine"]["cpu"] for r in runs}
    print(f"CPU: {', '.join(sorted(cpus))}; test sentences per seed: "
          f"{runs[0]['metrics']['settings']['examples']}\n")  # fmt: skip
    print("| seed | chosen | search min | x smaller final / search | x faster b1 final / search "
          "| agreement final | agreement search | search - final (95% CI) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for run in runs:
        print(seed_row(run, args.samples))
    if len(runs) > 1:
        print(f"\nPooled over {len(runs)} seeds: search - final = "
              f"{_interval(pooled(runs, args.samples))}")  # fmt: skip


if __name__ == "__main__":
    main()
