"""How each variant's latency grows with sequence length and batch size, side by side in one run.

    python benchmarks/cost_curves.py --run-dir runs/sentiment [--lengths 16,64,128,256]
        [--batch-sizes 1,8,32] [--threads 2] [--device cpu|cuda|auto] [--json out.json]

Every finished stage of the run directory (teacher, student, pruned, onnx, int8, and a baseline
such as optimum-int8 when the recipe built one) is timed by the eval harness's timing loop
(pocketsize.eval.latency: rotating blocks, warm-up calls, model call only) on inputs of exactly
L tokens: real test sentences of the run's data, joined until they fill L tokens, each variant
through its own tokenizer (a vocabulary-trimmed stage has its own ids). Prints p50 per
(variant, length, batch) and each variant's growth from the shortest length; the ratios
between variants come from the same run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STAGES = ("teacher", "student", "pruned", "onnx", "int8", "optimum-int8")


def exact_length_batches(tokenizer, texts, length: int, batch_size: int, count: int) -> list:
    """`count` batches of `batch_size` rows of exactly `length` tokens: windows of `length`
    consecutive words of the joined sentences (every word is at least one token), cut to
    `length` tokens in one tokenizer call."""
    words = " ".join(texts).split()
    starts = (r * length % max(len(words) - length, 1) for r in range(batch_size * count))
    rows = [" ".join(words[start : start + length]) for start in starts]
    enc = tokenizer(
        rows, truncation=True, max_length=length, padding="max_length", return_tensors="np"
    )
    if int(enc["attention_mask"].sum(1).min()) < length:
        raise SystemExit(f"some inputs are shorter than {length} tokens; give longer texts")
    return [
        {k: np.asarray(v[b * batch_size : (b + 1) * batch_size]) for k, v in enc.items()}
        for b in range(count)
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default="runs/sentiment")
    p.add_argument("--data", default="rt-polarity")
    p.add_argument("--lengths", default="16,64,128,256")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--batches", type=int, default=8, help="timed batches per (length, batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (see pocketsize.eval)")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()

    import torch

    from pocketsize.data import load_dataset
    from pocketsize.eval.environment import machine_info
    from pocketsize.eval.latency import measure_latency
    from pocketsize.runtime.devices import gpu_info, resolve_device
    from pocketsize.runtime.registry import make_runner
    from pocketsize.runtime.runners import load_tokenizer, resolve_variant
    from pocketsize.tasks import task_of_model

    torch.set_num_threads(args.threads)
    placement = resolve_device(args.device)
    run = Path(args.run_dir)
    names = [s for s in STAGES if (run / s / "stage.json").exists()]
    if not names:
        raise SystemExit(f"{run} holds no finished stage; run a recipe first")
    lengths = [int(x) for x in args.lengths.split(",")]
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    task = task_of_model(run / "teacher")
    texts = list(load_dataset(args.data)["test"]["text"])
    variants = {n: resolve_variant(n, run / n) for n in names}
    runners = {n: make_runner(v, task, args.threads, placement) for n, v in variants.items()}

    figures: dict = {n: {} for n in names}
    for length in lengths:
        batches = {
            n: {
                bs: exact_length_batches(load_tokenizer(v), texts, length, bs, args.batches)
                for bs in sizes
            }
            for n, v in variants.items()
        }
        timed = measure_latency(runners, batches, repeats=args.repeats, progress=False)
        for n in names:
            figures[n][length] = {bs: timed[n][str(bs)]["p50"] for bs in sizes}

    machine = machine_info()
    cpu = f"{machine['cpu']} (family/model {machine['cpu_family_model']}), {machine['cpu_flags']}"
    print(f"p50 ms per call; {args.threads} threads; {cpu}")
    gpu = gpu_info() if placement.on_gpu else None
    print("ran on: " + ", ".join(f"{n} {r.runs_on}" for n, r in runners.items()))
    print(f"GPU: {gpu['name']}" if gpu else "GPU: none used")
    for note in placement.notes:
        print(f"note: {note}")
    head = " | ".join(f"L={length} b={bs}" for length in lengths for bs in sizes)
    print(f"| variant | {head} |")
    for n in names:
        cells = " | ".join(f"{figures[n][length][bs]:.2f}" for length in lengths for bs in sizes)
        print(f"| {n} | {cells} |")
    print()
    print(f"growth from L={lengths[0]} to L={lengths[-1]} (p50 ratio), per batch size:")
    for n in names:
        growth = ", ".join(
            f"b{bs} {figures[n][lengths[-1]][bs] / figures[n][lengths[0]][bs]:.1f}x" for bs in sizes
        )
        print(f"  {n:13s} {growth}")
    if "teacher" in names:
        print("speed-up over the teacher at each (L, batch):")
        for n in names[1:]:
            cells = ", ".join(
                f"L{length}/b{bs} {figures['teacher'][length][bs] / figures[n][length][bs]:.1f}x"
                for length in lengths
                for bs in sizes
            )
            print(f"  {n:13s} {cells}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": {**machine, "gpu": gpu}, "p50_ms": figures}, indent=2)
        )


if __name__ == "__main__":
    main()
