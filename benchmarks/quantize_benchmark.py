"""int8 (ONNX Runtime) vs PyTorch fp32, side by side in one run: accuracy, size, batch-1 latency.

    python benchmarks/quantize_benchmark.py --model runs/sentiment/teacher --data rt-polarity \
        --method auto --max-drop 0.005 --out /tmp/qbench

The model is exported (optimum / torch.onnx, ORT fusions) and quantized with pocketsize; every
model is scored on the test split (never seen by the accuracy-budget search, which uses the
validation split). Accuracy and batch-1 latency come from `pocketsize.evaluate` (the same real
test inputs, each model timed in rotating blocks with its runtime's defaults); sizes compare
the PyTorch weights file with the one ONNX model file.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="fine-tuned PyTorch model directory")
    p.add_argument("--data", default="rt-polarity")
    p.add_argument("--method", default="auto", choices=["dynamic", "static", "auto"])
    p.add_argument("--max-drop", type=float, default=0.005)
    p.add_argument("--eval-size", type=int, default=None, help="validation examples used by auto")
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--latency-samples", type=int, default=100)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--out", default="/tmp/pocketsize-quantize-bench")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import pocketsize as ps
    from pocketsize.tasks import task_for_dataset

    out = Path(args.out)
    model_dir = Path(args.model) if Path(args.model).exists() else Path(ps.fetch(args.model))
    data = ps.load_dataset(args.data)
    task = task_for_dataset(data)

    t0 = time.time()
    onnx_dir = ps.export(model_dir, out / "onnx", overwrite=True)
    t1 = time.time()
    int8_dir = ps.quantize(
        onnx_dir,
        data,
        method=args.method,
        max_drop=args.max_drop,
        out=out / "int8",
        eval_size=args.eval_size,
        max_length=args.max_length,
        overwrite=True,
    )
    t2 = time.time()
    manifest = json.loads((int8_dir / "stage.json").read_text())

    files = {
        "pytorch fp32": model_dir,
        "onnx fp32 (fused)": onnx_dir / "model.onnx",
        f"onnx int8 ({args.method})": int8_dir / manifest["file"],
    }
    report = ps.evaluate(
        files,
        data,
        reference="pytorch fp32",
        batch_sizes=(1,),
        threads=args.threads,
        memory=False,
        max_examples=args.test_size,
        latency_examples=args.latency_samples,
        repeats=5,
    )
    variants = report.metrics["variants"]
    weights = {
        name: sum(f.stat().st_size for f in path.glob("*.safetensors")) if path.is_dir()
        else path.stat().st_size
        for name, path in files.items()
    }  # fmt: skip
    rows = {
        name: {
            "metric": variants[name]["metric"]["value"],
            "size_bytes": weights[name],
            "latency_ms": variants[name]["latency_ms"]["1"]["p50"],
        }
        for name in files
    }
    ref = rows["pytorch fp32"]
    timing = report.metrics["settings"]["latency"]
    print(
        f"\n{task.primary_metric} on {args.data} test ({report.metrics['settings']['examples']} "
        f"examples); batch-1 latency: median over {timing['inputs_timed']} test inputs x "
        f"{timing['repeats']} rounds (pocketsize.evaluate, blocks), {args.threads} threads; "
        "size = weights file vs model file"
    )
    print(
        f"{'model':24} {task.primary_metric:>9} {'of fp32':>8} {'size MB':>8} {'smaller':>8} {'ms':>7} {'faster':>7}"
    )
    for name, r in rows.items():
        print(
            f"{name:24} {r['metric']:9.4f} {r['metric'] / ref['metric']:8.2%} {r['size_bytes'] / 1e6:8.1f} "
            f"{ref['size_bytes'] / r['size_bytes']:7.2f}x {r['latency_ms']:7.2f} {ref['latency_ms'] / r['latency_ms']:6.2f}x"
        )
    q = manifest["quantization"]
    keys = ("method", "per_channel", "weight_type", "reduce_range", "exclude_nodes", "smooth_nodes")
    print("quantization:", json.dumps({k: q[k] for k in keys if k in q}))
    budget = manifest.get("accuracy_budget")
    if budget:
        print(
            f"auto: validation {budget['metric']} {budget['float_metric']:.4f} -> {budget['quantized_metric']:.4f} "
            f"(drop {budget['drop']:.4f}, max {budget['max_drop']}, met: {budget['budget_met']})"
        )
    print(f"export {t1 - t0:.0f} s, quantize {t2 - t1:.0f} s")
    (out / "benchmark.json").write_text(
        json.dumps(
            {"args": vars(args), "rows": rows, "quantization": manifest}, indent=2, default=str
        )
    )


if __name__ == "__main__":
    main()
