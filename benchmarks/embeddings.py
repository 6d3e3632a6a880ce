"""The sentence-embeddings recipe per seed, and one report that sets its models beside the
teacher and the embedder users pick today (all-MiniLM-L6-v2, fp32 and pocketsize's int8).

    .venv/bin/python benchmarks/embeddings.py [--seeds 42 1 2] [--root runs/embeddings-bench]

Per seed: `pocketsize run recipes/embeddings.yaml --set seed=S` (timed), then one evaluation of
the teacher, the recipe's student, pruned and int8 models, paraphrase-MiniLM-L3-v2 as it ships
(the student's start) and all-MiniLM-L6-v2 (PyTorch fp32 and its dynamic-int8 ONNX) on
rt-polarity's test split, timed side by side at batch 1 and 32 (2 threads). Prints, per seed
and as means over the seeds, each variant's downstream accuracy (cross-validated logistic
regression) and V-measure, its top-10 neighbour overlap and similarity Spearman with the
teacher, its size and latency, and the ratios the issue's targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "embeddings.yaml"


def run_recipe(seed: int, run_dir: Path) -> float:
    started = time.time()
    cmd = [sys.executable, "-m", "pocketsize", "run", str(RECIPE), "--run-dir", str(run_dir)]
    cmd += ["--set", f"seed={seed}"]
    subprocess.run(cmd, check=True)
    return time.time() - started


def minilm_int8(root: Path) -> Path:
    """all-MiniLM-L6-v2 through pocketsize's export and dynamic int8 (no pruning)."""
    import pocketsize as ps

    onnx_dir, int8_dir = root / "minilm-l6-onnx", root / "minilm-l6-int8"
    if not int8_dir.exists():
        ps.export("minilm-l6", onnx_dir, task="sentence-embedding", overwrite=True)
        ps.quantize(onnx_dir, out=int8_dir, method="dynamic", task="sentence-embedding")
    return int8_dir


def evaluate(run_dir: Path, peers: dict, out: Path) -> dict:
    import pocketsize as ps
    from pocketsize.assets import resolve_model

    data = ps.load_dataset("rt-polarity")
    variants = {
        "teacher": resolve_model("mpnet-base"),
        "student": run_dir / "student",
        "pruned": run_dir / "pruned",
        "int8": run_dir / "int8",
        **peers,
    }
    report = ps.evaluate(
        variants, data["test"], task="sentence-embedding", reference="teacher",
        batch_sizes=[1, 32], threads=2, progress=False,
    )  # fmt: skip
    report.save(out)
    return json.loads((out / "metrics.json").read_text())


def rows(metrics: dict) -> dict:
    out = {}
    for name, r in metrics["variants"].items():
        lat = r.get("latency_ms", {})
        out[name] = {
            "accuracy": r["metrics"]["accuracy"],
            "v_measure": r["metrics"]["v_measure"],
            "overlap": r["agreement"],
            "spearman": r["fidelity"].get("similarity_spearman"),
            "size_mb": r["size_bytes"] / 1e6,
            "b1_ms": lat.get("1", {}).get("p50"),
            "b32_ms": lat.get("32", {}).get("p50"),
        }
    return out


def show(table: dict, title: str) -> None:
    print(f"\n{title}")
    head = f"{'variant':<16}{'acc':>7}{'V':>7}{'overlap':>9}{'spearman':>9}{'MB':>9}{'b1 ms':>8}{'b32 ms':>8}"
    print(head)
    for name, r in table.items():
        print(
            f"{name:<16}{r['accuracy']:>7.4f}{r['v_measure']:>7.4f}{r['overlap']:>9.4f}"
            f"{(r['spearman'] or float('nan')):>9.4f}{r['size_mb']:>9.2f}"
            f"{(r['b1_ms'] or float('nan')):>8.2f}{(r['b32_ms'] or float('nan')):>8.2f}"
        )
    t, f, m = table["teacher"], table["int8"], table.get("minilm-l6-int8")
    print(f"int8 vs teacher: accuracy kept {f['accuracy'] / t['accuracy']:.2%}, "
          f"{t['size_mb'] / f['size_mb']:.1f}x smaller, {t['b1_ms'] / f['b1_ms']:.1f}x faster at batch 1")  # fmt: skip
    if m:
        print(f"int8 vs all-MiniLM-L6-v2 int8: size {f['size_mb'] / m['size_mb']:.2f}x, "
              f"{m['b1_ms'] / f['b1_ms']:.2f}x faster at batch 1, accuracy "
              f"{f['accuracy'] - m['accuracy']:+.4f}, overlap {f['overlap'] - table['minilm-l6']['overlap']:+.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "embeddings-bench")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.root.mkdir(parents=True, exist_ok=True)
    peers = {"minilm-l3": "minilm-l3", "minilm-l6": "minilm-l6"}
    peers["minilm-l6-int8"] = minilm_int8(args.root)
    tables = {}
    for seed in args.seeds:
        run_dir = args.root / f"seed{seed}"
        wall = run_recipe(seed, run_dir)
        print(f"seed {seed}: recipe {wall / 60:.1f} min")
        tables[seed] = rows(evaluate(run_dir, peers, args.root / f"report-seed{seed}"))
        show(tables[seed], f"seed {seed}")
    names = tables[args.seeds[0]]
    mean = {
        n: {k: sum(tables[s][n][k] or 0 for s in args.seeds) / len(args.seeds) for k in names[n]}
        for n in names
    }
    show(mean, f"mean over seeds {args.seeds}")


if __name__ == "__main__":
    main()
