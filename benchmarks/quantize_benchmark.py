"""int8 (ONNX Runtime) vs PyTorch fp32, side by side in one run: accuracy, size, batch-1 latency.

    python benchmarks/quantize_benchmark.py --model runs/sentiment/teacher --data rt-polarity \
        --method auto --max-drop 0.005 --out /tmp/qbench

The model is exported (optimum / torch.onnx, ORT fusions) and quantized with pocketsize; every
model is scored on the test split (never seen by the accuracy-budget search, which uses the
validation split). Latency is the median of batch-1 runs over the same real test sentences,
measured in interleaved rounds (PyTorch, ORT fp32, ORT int8, repeat) so that a change in
machine load hits all models alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def torch_model_runner(model_dir: Path, task, tokenizer, test, max_length):
    """(metric, size in bytes, one batch-1 call per test sentence)."""
    import numpy as np
    import torch

    model = task.auto_model_class().from_pretrained(model_dir).eval()
    features = task.encode(test, tokenizer, max_length=max_length)
    collate = task.collator(tokenizer)
    cols = [c for c in features.column_names if c in tokenizer.model_input_names]
    outputs = {n: [] for n in task.output_names}
    with torch.inference_mode():
        for start in range(0, len(features), 64):
            rows = features[start : start + 64]
            batch = collate([{c: rows[c][i] for c in cols} for i in range(len(rows[cols[0]]))])
            out = model(**{k: v for k, v in batch.items() if k in cols})
            for n in task.output_names:
                outputs[n].append(out[n].float().numpy())
    stacked = {n: np.concatenate(v) for n, v in outputs.items()}
    metric = task.score(task.predict(stacked, features, test), test)[task.primary_metric]
    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))

    def one(i):
        with torch.inference_mode():
            model(**{c: torch.tensor([features[i][c]]) for c in cols})

    return metric, size, one


def onnx_model_runner(onnx_file: Path, task, tokenizer, test, max_length, threads):
    from pocketsize.quantize.scoring import TaskData, ort_session

    session = ort_session(onnx_file, threads=threads)
    data = TaskData(task, tokenizer, test, max_length=max_length)
    metric = data.primary(data.run(session))
    names = [i.name for i in session.get_inputs()]
    singles = list(data.batches(names, batch_size=1))

    def one(i):
        session.run(None, singles[i])

    return metric, onnx_file.stat().st_size, one


def interleaved_latency(runners: dict, n: int, rounds: int = 5) -> dict[str, float]:
    times = {name: [] for name in runners}
    for run in runners.values():  # warm-up
        for i in range(min(5, n)):
            run(i)
    for _ in range(rounds):
        for name, run in runners.items():
            for i in range(n):
                t = time.perf_counter()
                run(i)
                times[name].append(time.perf_counter() - t)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


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

    import torch
    from transformers import AutoTokenizer

    import pocketsize as ps
    from pocketsize.tasks import task_for_dataset

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    model_dir = Path(args.model) if Path(args.model).exists() else Path(ps.fetch(args.model))
    data = ps.load_dataset(args.data)
    task = task_for_dataset(data)
    test = data["test"]
    if args.test_size is not None:
        test = test.select(range(min(args.test_size, len(test))))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

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
    manifest = json.loads((int8_dir / "pocketsize.json").read_text())

    built = {
        "pytorch fp32": torch_model_runner(model_dir, task, tokenizer, test, args.max_length),
        "onnx fp32 (fused)": onnx_model_runner(
            onnx_dir / "model.onnx", task, tokenizer, test, args.max_length, args.threads
        ),
        f"onnx int8 ({args.method})": onnx_model_runner(
            int8_dir / manifest["file"], task, tokenizer, test, args.max_length, args.threads
        ),
    }
    n = min(args.latency_samples, len(test))
    latency = interleaved_latency({k: v[2] for k, v in built.items()}, n)
    rows = {
        k: {"metric": v[0], "size_bytes": v[1], "latency_ms": latency[k]} for k, v in built.items()
    }
    ref = rows["pytorch fp32"]
    print(
        f"\n{task.primary_metric} on {args.data} test ({len(test)} examples); batch-1 latency: median "
        f"over {n} test sentences x 5 interleaved rounds, {args.threads} threads"
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
    keys = ("method", "per_channel", "weight_type", "reduce_range", "exclude_nodes")
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
