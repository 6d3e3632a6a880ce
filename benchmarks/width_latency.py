"""What the chain's final model would weigh and how fast it would run at other head/width shares:
a run's distilled student pruned at each share (untrained: latency and size only, accuracy
is not measured), exported and quantized as the recipe does, timed at batch 1 beside the
run's teacher and its own final int8 in one evaluate() call.

    .venv/bin/python benchmarks/width_latency.py --run-dir runs/sentiment-large --shares 0.6667,0.75
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build(run: Path, data, share: float, ffn: float, out: Path) -> Path:
    """The run's student pruned at `share` of heads and width, exported and quantized to int8
    with a 4-bit table in blocks of 128 (the recipe's settings)."""
    from pocketsize.export import export
    from pocketsize.prune import prune
    from pocketsize.quantize import quantize

    if (out / "int8" / "stage.json").exists():
        return out / "int8"
    pruned = prune(
        run / "student", data, heads=share, width=share, ffn=ffn, vocab=True,
        out=out / "pruned", verbose=False, overwrite=True,
    )  # fmt: skip
    onnx_dir = export(pruned, out / "onnx", optimize=True, overwrite=True)
    return quantize(
        onnx_dir, data, method="dynamic", embedding_bits=4, block_size=128, out=out / "int8",
        overwrite=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/sentiment-large"))
    parser.add_argument("--data", default="rt-polarity")
    parser.add_argument("--shares", default="0.6667,0.75")
    parser.add_argument("--ffn", type=float, default=0.875)
    parser.add_argument("--work", type=Path, default=Path("/tmp/width-latency"))
    parser.add_argument("--examples", type=int, default=512)
    args = parser.parse_args()

    from pocketsize.data import load_dataset
    from pocketsize.eval import evaluate

    data = load_dataset(args.data)
    variants = {"teacher": args.run_dir / "teacher", "int8 (the run's)": args.run_dir / "int8"}
    for share in [float(s) for s in args.shares.split(",")]:
        model = build(args.run_dir, data, share, args.ffn, args.work / f"share-{share}")
        variants[f"int8, heads and width {share} (untrained)"] = model
    report = evaluate(
        variants, data, batch_sizes=[1], reference="teacher", memory=False,
        max_examples=args.examples,
    )  # fmt: skip
    machine = report.metrics["machine"]
    print(
        f"CPU: {machine['cpu']} ({machine.get('cpu_family_model')}), {machine['usable_cores']} cores"
    )
    for name, v in report.metrics["variants"].items():
        print(
            f"{name:42s} {v['size_bytes'] / 1e6:7.2f} MB  b1 p50 {v['latency_ms']['1']['p50']:.3f} ms"
            f"  {v.get('speedup') or 1:.1f}x faster  {v.get('size_ratio') or 1:.1f}x smaller"
        )


if __name__ == "__main__":
    main()
