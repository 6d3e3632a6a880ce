"""The sentence-embeddings recipe per seed, with pocketsize's static student beside model2vec's.

    .venv/bin/python benchmarks/embeddings.py [--seeds 42 1 2] [--root runs/embeddings-bench]

Per seed: `pocketsize run recipes/embeddings.yaml --set seed=S` (timed; its report holds the
teacher, the chain's models and the peers: sentence-transformers' int8 of the teacher,
model2vec's static model of it, all-MiniLM-L6-v2 as it ships and sentence-transformers' int8
of it), then pocketsize's static student of the same teacher (`static:dim=256`, distilled on
the recipe's training text, exported and int8-quantized) evaluated beside model2vec's on the
same suite. Prints per seed and as means over the seeds each variant's downstream figures
(rt-polarity test accuracy, suite mean), its neighbour overlap and similarity Spearman with
the teacher, size and latency, and the ratios the issue's targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "embeddings.yaml"
MINILM_INT8 = "st-int8:minilm-l6"


def run_recipe(seed: int, run_dir: Path) -> float:
    started = time.time()
    cmd = [sys.executable, "-m", "pocketsize", "run", str(RECIPE), "--run-dir", str(run_dir)]
    subprocess.run([*cmd, "--set", f"seed={seed}"], check=True)
    return time.time() - started


def static_student(seed: int, run_dir: Path) -> dict:
    """pocketsize's static student, its int8 ONNX, and a report beside model2vec's model."""
    import pocketsize as ps

    recipe = yaml.safe_load(RECIPE.read_text())
    data = ps.load_dataset(recipe["data"])
    root = run_dir / "static-bench"
    static = ps.distill(
        "mpnet-base", data, "static:dim=256", root / "static", task="sentence-embedding",
        epochs=3, seed=seed, overwrite=True, progress=False,
    )  # fmt: skip
    onnx_dir = ps.export(static, root / "static-onnx", overwrite=True)
    int8 = ps.quantize(onnx_dir, out=root / "static-int8", method="dynamic", overwrite=True)
    variants = {"model2vec": run_dir / "model2vec", "static": static, "static-int8": int8}
    eval_cfg = recipe["eval"]
    report = ps.evaluate(
        variants, data["test"], task="sentence-embedding", reference="model2vec",
        batch_sizes=eval_cfg["batch_sizes"], max_length=eval_cfg["max_length"],
        suite=eval_cfg["suite"], suite_examples=eval_cfg["suite_examples"], progress=False,
    )  # fmt: skip
    report.save(root / "report", overwrite=True)
    return report.metrics


def rows(metrics: dict) -> dict:
    out = {}
    for name, r in metrics["variants"].items():
        lat = r.get("latency_ms", {})
        out[name] = {
            "accuracy": r["metrics"]["accuracy"],
            "suite": r.get("suite_mean", float("nan")),
            "overlap": r["agreement"],
            "spearman": r["fidelity"].get("similarity_spearman", float("nan")),
            "size_mb": r["size_bytes"] / 1e6,
            "b1_ms": lat.get("1", {}).get("p50", float("nan")),
            "b32_ms": lat.get("32", {}).get("p50", float("nan")),
        }
    return out


def show(table: dict, title: str) -> None:
    print(f"\n{title}")
    print(f"{'variant':<20}{'acc':>8}{'suite':>8}{'overlap':>9}{'spearman':>9}{'MB':>9}"
          f"{'b1 ms':>9}{'b32 ms':>9}")  # fmt: skip
    for name, r in table.items():
        print(f"{name:<20}{r['accuracy']:>8.4f}{r['suite']:>8.4f}{r['overlap']:>9.4f}"
              f"{r['spearman']:>9.4f}{r['size_mb']:>9.2f}{r['b1_ms']:>9.2f}{r['b32_ms']:>9.2f}")  # fmt: skip


def targets(table: dict) -> None:
    """The issue's targets, as measured (ratios inside one report)."""
    t, f = table["teacher"], table["int8"]
    lines = [
        f"final vs teacher: suite mean kept {f['suite'] / t['suite']:.2%} (target >= 97%), "
        f"{t['size_mb'] / f['size_mb']:.1f}x smaller (>= 40x), "
        f"{t['b1_ms'] / f['b1_ms']:.1f}x faster at batch 1 (>= 40x)",
    ]
    if "minilm-l6" in table and MINILM_INT8 in table:
        m, m8 = table["minilm-l6"], table[MINILM_INT8]
        lines.append(
            f"final vs all-MiniLM-L6-v2: suite {f['suite'] - m['suite']:+.4f} (> 0), overlap "
            f"{f['overlap'] - m['overlap']:+.4f} (> 0), size {f['size_mb'] / m8['size_mb']:.2f}x "
            f"its int8 (<= 0.25), {m8['b1_ms'] / f['b1_ms']:.2f}x its int8 speed at batch 1 (>= 2)"
        )
    if "model2vec" in table:
        lines.append(
            f"final vs model2vec: suite {f['suite'] - table['model2vec']['suite']:+.4f} (> 0)"
        )
    print("\n".join(lines))


def mean_table(tables: list[dict]) -> dict:
    names = tables[0]
    return {n: {k: sum(t[n][k] for t in tables) / len(tables) for k in names[n]} for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "embeddings-bench")
    parser.add_argument("--no-static", action="store_true", help="skip the static student")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    chains, statics = [], []
    for seed in args.seeds:
        run_dir = args.root / f"seed{seed}"
        wall = run_recipe(seed, run_dir)
        print(f"seed {seed}: recipe {wall / 60:.1f} min (run directory {run_dir})")
        chains.append(rows(json.loads((run_dir / "metrics.json").read_text())))
        show(chains[-1], f"seed {seed}: the recipe's report")
        targets(chains[-1])
        if not args.no_static:
            statics.append(rows(static_student(seed, run_dir)))
            show(statics[-1], f"seed {seed}: static students (reference: model2vec)")
    show(mean_table(chains), f"mean over seeds {args.seeds}")
    targets(mean_table(chains))
    if statics:
        show(mean_table(statics), f"static students, mean over seeds {args.seeds}")


if __name__ == "__main__":
    main()
