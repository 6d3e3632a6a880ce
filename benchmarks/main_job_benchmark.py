"""The main job against what a user would do with optimum alone, in one process and one run.

    python benchmarks/main_job_benchmark.py --run-dir runs/sentiment --out /tmp/main-bench

Variants, evaluated side by side by pocketsize's harness (latency in rotating blocks, 2 threads):
- teacher        the fine-tuned teacher in PyTorch fp32 (the reference)
- optimum-int8   the same teacher through optimum only: export, ORTOptimizer O2, ORTQuantizer
                 dynamic int8 for this CPU (pocketsize/quantize/baselines.py; the run's own
                 optimum-int8 stage when the recipe built one)
- student        the distilled student in PyTorch fp32
- final          the recipe's shipped model (the run directory's int8 stage)
It prints ratios and writes metrics.json (the harness's schema) and report.md to --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default="runs/sentiment", help="a finished sentiment run")
    p.add_argument("--data", default="rt-polarity")
    p.add_argument("--out", default="/tmp/pocketsize-main-bench")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-examples", type=int, default=None, help="test examples (default all)")
    p.add_argument("--latency-examples", type=int, default=256)
    p.add_argument("--no-memory", action="store_true")
    args = p.parse_args()

    import pocketsize as ps

    run = Path(args.run_dir)
    missing = [s for s in ("teacher", "student", "int8") if not (run / s / "stage.json").exists()]
    if missing:
        raise SystemExit(f"{run} has no finished {', '.join(missing)} stage; run the recipe first")
    out = Path(args.out)
    baseline = run / "optimum-int8"  # the recipe builds it when eval.baselines names it
    if not (baseline / "stage.json").exists():
        from pocketsize.quantize.baselines import optimum_int8
        from pocketsize.tasks import get_task

        baseline = optimum_int8(
            run / "teacher", out / "optimum-int8", task=get_task("text-classification"),
            overwrite=True,
        )  # fmt: skip
    variants = {
        "teacher": run / "teacher",
        "optimum-int8": baseline,
        "student": run / "student",
        "final": run / "int8",
    }
    report = ps.evaluate(
        variants,
        args.data,
        reference="teacher",
        final="final",
        baselines=["optimum-int8"],
        threads=args.threads,
        max_examples=args.max_examples,
        latency_examples=args.latency_examples,
        memory=not args.no_memory,
    )
    report.save(out / "report", overwrite=True)
    v = report.metrics["variants"]

    def ratio(a: str, b: str, key: str) -> float:
        lat_a, lat_b = v[a].get("latency_ms", {}), v[b].get("latency_ms", {})
        if key not in lat_a or key not in lat_b:  # e.g. fewer timed inputs than the batch
            return float("nan")
        return lat_b[key]["p50"] / lat_a[key]["p50"]

    print(report.table())
    print()
    for name in ("optimum-int8", "student", "final"):
        print(
            f"{name:13s} {v[name]['size_ratio']:5.1f}x smaller  "
            f"{ratio(name, 'teacher', '1'):5.1f}x faster (b1)  "
            f"{ratio(name, 'teacher', '32'):5.1f}x faster (b32)  "
            f"accuracy {v[name]['metric']['value']:.4f}  retention {v[name]['retention']:.1%}"
        )
    print(
        f"final vs optimum-int8: {ratio('final', 'optimum-int8', '1'):.2f}x faster (b1), "
        f"{ratio('final', 'optimum-int8', '32'):.2f}x (b32), "
        f"{v['optimum-int8']['size_bytes'] / v['final']['size_bytes']:.2f}x smaller"
    )
    print(f"metrics.json and report.md: {out / 'report'}")


if __name__ == "__main__":
    main()
