"""pocketsize's variants of a large teacher beside the published compression points.

Reads the report (metrics.json) of one or more runs of recipes/sentiment-large.yaml (one per
seed, same CPU) and prints, per variant: parameters, test accuracy, the share of the teacher's
accuracy it keeps, how many times smaller its files are and how many times faster it runs at
batch 1 than the PyTorch fp32 teacher (the report's own ratios, measured in one run), averaged
over the runs, with each run's figures beside. Then the published points: DistilBERT keeps 97% of
BERT-base at 40% fewer parameters and 1.6x the speed; TinyBERT-4 keeps 96.8% at 7.5x smaller and
9.4x faster (the papers' own figures, on GLUE), and the issue's bars.

    .venv/bin/python benchmarks/published_points.py runs/sentiment-large [runs/large-seed1 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# (variant of the recipe, the published point it stands beside)
POINTS = {
    "six-layer": "DistilBERT: 97% kept, 1.66x fewer parameters, 1.6x faster",
    "four-layer-pruned": "TinyBERT-4: 96.8% kept, 7.5x smaller, 9.4x faster",
}
# the bars: (variant, least retention, least x smaller, least x faster at batch 1)
BARS = [("int8", 0.97, 50.0, 50.0), ("six-layer", 0.99, None, None)]


def read_runs(run_dirs: list[Path]) -> list[dict]:
    runs = []
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        seed = json.loads((run_dir / "teacher" / "stage.json").read_text())["recipe"]["seed"]
        runs.append({"dir": run_dir, "seed": seed, "metrics": metrics})
    return runs


def figures(variant: dict) -> dict:
    """The report's own figures for one variant (its ratios are to the reference, the
    teacher, whose own record holds 1 or nothing)."""
    return {
        "params_m": (variant.get("params") or 0) / 1e6,
        "accuracy": variant["metric"]["value"],
        "retention": variant.get("retention") or 1.0,
        "agreement": variant.get("agreement"),
        "smaller": variant.get("size_ratio") or 1.0,
        "faster_b1": variant.get("speedup") or 1.0,
    }


def table(runs: list[dict]) -> list[str]:
    names = list(runs[0]["metrics"]["variants"])
    lines = [
        "| variant | params (M) | accuracy | kept of teacher | agreement | x smaller (files) "
        "| x faster, batch 1 | per seed (kept / x smaller / x faster) | published point |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        per_run = []
        for run in runs:
            variants = run["metrics"]["variants"]
            if name in variants:
                per_run.append(figures(variants[name]))
        if not per_run:
            continue

        def mean(key, runs_figures=per_run):
            values = [f[key] for f in runs_figures if f[key] is not None]
            return statistics.mean(values) if values else float("nan")

        seeds = "; ".join(
            f"{run['seed']}: {f['retention']:.1%} / {f['smaller']:.1f} / {f['faster_b1']:.1f}"
            for run, f in zip(runs, per_run)
        )
        lines.append(
            f"| {name} | {mean('params_m'):.1f} | {mean('accuracy'):.2%} | {mean('retention'):.1%} "
            f"| {mean('agreement'):.2%} | {mean('smaller'):.1f}x | {mean('faster_b1'):.1f}x "
            f"| {seeds} | {POINTS.get(name, '')} |"
        )
    return lines


def bars(runs: list[dict]) -> list[str]:
    lines = []
    for name, kept, smaller, faster in BARS:
        for run in runs:
            variants = run["metrics"]["variants"]
            if name not in variants:
                continue
            f = figures(variants[name])
            checks = [f"kept {f['retention']:.1%} (bar {kept:.0%})", f["retention"] >= kept]
            if smaller:
                checks += [
                    f"{f['smaller']:.1f}x smaller (bar {smaller:.0f}x)",
                    f["smaller"] >= smaller,
                ]
                checks += [
                    f"{f['faster_b1']:.1f}x faster (bar {faster:.0f}x)",
                    f["faster_b1"] >= faster,
                ]
            said = ", ".join(
                f"{checks[i]}: {'met' if checks[i + 1] else 'MISSED'}"
                for i in range(0, len(checks), 2)
            )
            lines.append(f"- seed {run['seed']}, {name}: {said}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (one per seed)")
    args = parser.parse_args()
    runs = read_runs(args.runs)
    machine = runs[0]["metrics"]["machine"]
    print(f"CPU: {machine['cpu']} (family/model {machine.get('cpu_family_model')}), "
          f"{machine['usable_cores']} cores; seeds {[r['seed'] for r in runs]}")  # fmt: skip
    print("\n".join(table(runs)))
    print()
    print("\n".join(bars(runs)))


if __name__ == "__main__":
    main()
