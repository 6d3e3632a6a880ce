"""pocketsize's GPU paths in one short run (benchmarks/gpu_check.sh is the command to use).

    python benchmarks/gpu_check.py --out DIR [--steps 300] [--hidden 256] [--layers 4]

Nothing is downloaded: the teacher is a random BERT built from a config, with a WordPiece
vocabulary of the words of a synthetic sentiment task (a sentence's label is which kind of
sentiment word it holds), so the numbers say how the machinery runs, not how well a real model
compresses. Steps: fine-tune the teacher and distil a 2-layer student, each for --steps steps
under bf16 autocast where the device has native bf16 (the teacher-output cache is computed on
the same device); prune the teacher (half its heads and MLP neurons, scored and sliced on the
device); export the student to ONNX and quantize it to int8; evaluate the five variants with device="auto" (PyTorch on the GPU, ONNX on onnxruntime-gpu's CUDA provider when
that is installed, else on the CPU, as the report says), and time them again on the CPU in the
same run for the ratios. Prints every figure and writes DIR/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from pocketsize.data.toy_sentiment import NEGATIVE, NEUTRAL, POSITIVE, SPECIALS, WORDS


def sentiment_data(n_train: int, n_eval: int, seed: int = 0):
    """pocketsize's toy sentiment task, with longer sentences than the tests' (6-26 words)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rng = random.Random(seed)
    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])}
    )

    def split(n):
        texts, labels = [], []
        for _ in range(n):
            label = rng.random() < 0.5
            words = rng.choices(NEUTRAL, k=rng.randint(6, 24))
            words += rng.sample(POSITIVE if label else NEGATIVE, rng.randint(1, 2))
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(int(label))
        return Dataset.from_dict({"text": texts, "label": labels}, features=features)

    return DatasetDict(train=split(n_train), validation=split(n_eval), test=split(n_eval))


def random_teacher(directory: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(SPECIALS + WORDS) + "\n")
    tokenizer = BertTokenizerFast(
        vocab_file=str(directory / "vocab.txt"), do_lower_case=True, model_max_length=128
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def stage_figures(directory: Path) -> dict:
    stage = json.loads((directory / "stage.json").read_text())
    keep = ("steps", "train_runtime_s", "wall_time_s", "validation", "cache")
    figures = {k: stage[k] for k in keep if k in stage}
    figures["bf16"] = (stage.get("config") or {}).get("bf16")
    if figures.get("steps") and figures.get("train_runtime_s"):
        figures["steps_per_s"] = round(figures["steps"] / figures["train_runtime_s"], 2)
    return figures


def environment() -> dict:
    import onnxruntime
    import torch

    from pocketsize.eval.environment import library_versions, machine_info
    from pocketsize.runtime.devices import gpu_info

    return {
        "machine": machine_info(),
        "gpu": gpu_info(),
        "versions": library_versions(),
        "torch_cuda_available": torch.cuda.is_available(),
        "ort_providers": onnxruntime.get_available_providers(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="work and result directory (made fresh)")
    p.add_argument("--steps", type=int, default=300, help="training steps per stage")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--train-examples", type=int, default=20_000)
    p.add_argument("--eval-examples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    import shutil

    import pocketsize as ps

    out = Path(args.out)
    shutil.rmtree(out / "work", ignore_errors=True)
    work = out / "work"
    started = time.time()
    env = environment()
    gpu = env["gpu"]
    print(f"GPU: {gpu['name'] if gpu else 'none visible: everything below runs on the CPU'}")
    print(f"CPU: {env['machine']['cpu']} ({env['machine']['usable_cores']} usable cores)")
    print(f"onnxruntime providers: {', '.join(env['ort_providers'])}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))

    data = sentiment_data(args.train_examples, args.eval_examples)
    teacher_init = random_teacher(work / "teacher-init", args.hidden, args.layers)
    train = dict(
        max_steps=args.steps, batch_size=args.batch_size, bf16="auto", progress=False,
        save_steps=10**9, logging_steps=max(1, args.steps // 4),
    )  # fmt: skip
    teacher = ps.finetune(teacher_init, data, work / "teacher", learning_rate=1e-4, **train)
    student = ps.distill(
        teacher, data, "config:layers=2", work / "student", cache_dir=work / "cache", **train
    )
    started_prune = time.time()
    pruned = ps.prune(teacher, data, heads=0.5, ffn=0.5, out=work / "pruned", verbose=False)
    pruning = json.loads((pruned / "stage.json").read_text())
    onnx = ps.export(student, work / "student-onnx")
    int8 = ps.quantize(onnx, method="dynamic", out=work / "int8")
    stages = {
        "finetune": stage_figures(teacher),
        "distill": stage_figures(student),
        "prune": {
            "device": pruning.get("device"),
            "seconds": round(time.time() - started_prune, 2),
            "params_before": pruning["params_before"],
            "params_after": pruning["params_after"],
        },
    }
    for name in ("finetune", "distill"):
        figures = stages[name]
        print(
            f"{name}: {figures.get('steps')} steps in {figures.get('train_runtime_s')} s "
            f"({figures.get('steps_per_s')} steps/s), bf16 {figures['bf16']}, "
            f"validation {figures.get('validation')}"
        )
    cache = stages["distill"].get("cache") or {}
    print(f"teacher-output cache: built on {cache.get('device')} in {cache.get('seconds')} s")
    p = stages["prune"]
    print(
        f"prune: scored and sliced on {p['device']} in {p['seconds']} s, "
        f"{p['params_before']:,} -> {p['params_after']:,} parameters"
    )

    variants = {
        "teacher": teacher, "pruned": pruned, "student": student, "student-onnx": onnx,
        "int8": int8,
    }  # fmt: skip
    timing = dict(batch_sizes=(1, 32), latency_examples=256, repeats=3, progress=False)
    on_device = ps.evaluate(variants, data, device="auto", memory=False, **timing)
    on_device.save(out / "report", overwrite=True)
    print(on_device.table())
    for note in on_device.metrics["settings"]["device"]["notes"]:
        print(f"note: {note}")
    on_cpu = ps.evaluate(variants, data, device="cpu", memory=False, **timing)
    print("p50 ms, device run against the CPU run (same inputs, same process):")
    rows = {}
    for name in variants:
        d, c = on_device[name], on_cpu[name]
        rows[name] = {
            "runs_on": d["runs_on"],
            "agreement": d["agreement"],
            **{
                f"b{bs}": {
                    "device_p50": d["latency_ms"][bs]["p50"],
                    "cpu_p50": c["latency_ms"][bs]["p50"],
                }
                for bs in d["latency_ms"]
            },
        }
        cells = ", ".join(
            f"b{bs} {d['latency_ms'][bs]['p50']:.2f} vs {c['latency_ms'][bs]['p50']:.2f} "
            f"({c['latency_ms'][bs]['p50'] / d['latency_ms'][bs]['p50']:.1f}x)"
            for bs in d["latency_ms"]
        )
        print(f"  {name:13s} on {d['runs_on']:22s} {cells}")
    result = {**env, "stages": stages, "eval": rows, "seconds": round(time.time() - started, 1)}
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"done in {result['seconds']} s; figures in {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()
