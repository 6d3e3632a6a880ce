"""Pruning benchmark (issue 6): vocabulary trimming alone, then heads + FFN (+ recovery).

One run prints ratios measured side by side:
  vocab: kept pieces, embedding shrink, weights-file ratio, test accuracy change, share of
         changed test predictions, share of test tokens outside the kept pieces;
  heads+ffn: accuracy kept vs the unpruned model, speed-up at batch 1 and 32 in PyTorch and
         ONNX Runtime.
Accuracy, changed predictions and latency come from one `pocketsize.evaluate` call over all
variants (the unpruned model is the reference; latency over the same 256 real test inputs,
variants timed in rotating blocks, each runtime at its defaults).

    python benchmarks/prune_benchmark.py --model minilm-l6 --data rt-polarity
    python benchmarks/prune_benchmark.py --model runs/sentiment/student --recover

A base encoder (e.g. minilm-l6) has a random classification head: its accuracy is chance and
only the vocabulary numbers (sizes, changed predictions) mean something. Pass a fine-tuned
model (or --finetune-epochs N) for accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def export_onnx(model_dir, out):
    from optimum.exporters.onnx import main_export

    from pocketsize.prune import add_vocab_clamp_to_onnx

    main_export(str(model_dir), out, task="text-classification")
    add_vocab_clamp_to_onnx(Path(out) / "model.onnx")
    return Path(out)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--data", default="rt-polarity")
    ap.add_argument("--finetune-epochs", type=float, default=0)
    ap.add_argument("--heads", type=float, default=0.5)
    ap.add_argument("--ffn", type=float, default=0.5)
    ap.add_argument("--recover", action="store_true")
    ap.add_argument("--recover-epochs", type=float, default=1)
    ap.add_argument("--finetune-steps", type=int, default=-1, help="cap the fine-tuning steps")
    ap.add_argument("--recover-steps", type=int, default=-1, help="cap the recovery steps")
    ap.add_argument("--max-examples", type=int, default=1024, help="importance scoring examples")
    ap.add_argument("--skip-structured", action="store_true", help="vocabulary numbers only")
    ap.add_argument(
        "--vocab-extra-data", default="",
        help="comma-separated datasets whose text (all splits) is extra in-domain vocabulary text",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="directory for the outputs (default: a temp dir)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import pocketsize as ps
    from pocketsize.prune import load_pruned
    from pocketsize.tasks import task_for_dataset

    work = Path(args.work or tempfile.mkdtemp(prefix="prune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = ps.load_dataset(args.data)
    task = task_for_dataset(data)
    test = data["test"]
    import numpy as np

    model_ref = args.model
    if args.finetune_epochs:
        model_ref = work / "finetuned"
        if not model_ref.exists():
            ps.finetune(
                args.model, data, out=model_ref, epochs=args.finetune_epochs,
                max_steps=args.finetune_steps, progress=False,
            )  # fmt: skip
    # the unpruned reference, saved once so that every variant starts from the same head
    base_dir = work / "unpruned"
    if not base_dir.exists():
        from pocketsize.tasks.classification import label_names

        base = ps.load_model(model_ref, task=task.name, labels=label_names(data["train"]))
        base.save_pretrained(base_dir)
        ps.load_tokenizer(model_ref).save_pretrained(base_dir)
    from transformers import AutoTokenizer

    # --- vocabulary trimming alone ---
    extra = []
    for name in filter(None, args.vocab_extra_data.split(",")):
        extra_data = ps.load_dataset(name)
        extra += [t for split in extra_data.values() for t in split["text"]]
    vocab_dir = ps.prune(
        base_dir, data, vocab=True, vocab_extra_text=extra or None, out=work / "vocab",
        overwrite=True,
    )  # fmt: skip
    rec = json.loads((vocab_dir / "stage.json").read_text())
    vocab_tok = AutoTokenizer.from_pretrained(vocab_dir)
    kept = load_pruned(vocab_dir).config.vocab_size
    test_ids = vocab_tok(list(test["text"]), add_special_tokens=False)["input_ids"]
    n_tokens = sum(len(r) for r in test_ids)
    n_out = sum(sum(i >= kept for i in r) for r in test_ids)
    variants = {"unpruned": base_dir, "vocab": vocab_dir}

    if not args.skip_structured:
        opts = {"epochs": args.recover_epochs, "max_steps": args.recover_steps, "progress": False,
                "bf16": "auto"}  # fmt: skip
        pruned_dir = ps.prune(
            base_dir, data, heads=args.heads, ffn=args.ffn, recover=args.recover,
            recover_options=opts if args.recover else None, out=work / "structured", overwrite=True,
            max_examples=args.max_examples,
        )  # fmt: skip
        variants["structured"] = pruned_dir
        variants["unpruned-onnx"] = export_onnx(base_dir, work / "onnx-unpruned") / "model.onnx"
        variants["structured-onnx"] = (
            export_onnx(pruned_dir, work / "onnx-structured") / "model.onnx"
        )
    evaluation = ps.evaluate(
        variants, data, reference="unpruned", threads=args.threads, memory=False
    )
    evaluation.save(work / "report", overwrite=True)
    v = evaluation.metrics["variants"]

    def acc(name):
        return v[name]["metric"]["value"]

    report = {
        "model": str(args.model),
        "data": args.data,
        "unpruned_test_accuracy": acc("unpruned"),
    }
    report["vocab"] = {
        "extra_texts": len(extra),
        "kept_vocab_size": kept,
        "original_vocab_size": rec["vocab"]["original_vocab_size"],
        "embedding_shrink": rec["vocab"]["embedding_shrink"],
        "file_ratio": round(rec["file_bytes_before"] / rec["file_bytes_after"], 3),
        "file_mb_before_after": [
            round(rec["file_bytes_before"] / 1e6, 2),
            round(rec["file_bytes_after"] / 1e6, 2),
        ],
        "test_accuracy": acc("vocab"),
        "accuracy_change_points": round(100 * (acc("vocab") - acc("unpruned")), 3),
        "changed_predictions": round(1 - v["vocab"]["agreement"], 4),
        "test_tokens_outside_kept": round(n_out / n_tokens, 4),
        "test_sentences_with_dropped_piece": round(
            float(np.mean([any(i >= kept for i in r) for r in test_ids])), 4
        ),
    }
    print(json.dumps({"vocab": report["vocab"]}, indent=2))
    if "structured" in v:

        def p50(name, bs):
            return v[name]["latency_ms"][bs]["p50"]

        pairs = {"torch": ("unpruned", "structured"), "ort": ("unpruned-onnx", "structured-onnx")}
        latency = {
            f"{rt}_b{bs}": [round(p50(a, bs), 3), round(p50(b, bs), 3)]
            for rt, (a, b) in pairs.items()
            for bs in ("1", "32")
        }
        report["structured"] = {
            "heads": args.heads, "ffn": args.ffn, "recover": args.recover,
            "test_accuracy": acc("structured"),
            "accuracy_kept": round(acc("structured") / max(acc("unpruned"), 1e-9), 4),
            "params_before_after": [v["unpruned"]["params"], v["structured"]["params"]],
            "latency_ms_unpruned_pruned": latency,
            "speedup": {k: round(a / b, 2) for k, (a, b) in latency.items()},
        }  # fmt: skip
        print(json.dumps({"structured": report["structured"]}, indent=2))
    (work / "prune_benchmark.json").write_text(json.dumps(report, indent=2))
    print(f"written {work / 'prune_benchmark.json'}")


if __name__ == "__main__":
    main()
