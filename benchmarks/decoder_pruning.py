"""Decoder pruning benchmark (issue 19): depth against heads + MLP neurons and against hidden
width + MLP neurons, each recovered by distillation, and 4-bit against int8 weights, side by
side in one run.

A small Llama-layout decoder (default: 8 layers, hidden 256, 8 query / 4 key-value heads,
MLP 768, a 4,096-piece BPE tokenizer trained on the same text) is trained briefly on the
packaged rt-polarity sentences as a causal LM: the teacher. From it, with the same parameter
budget removed from the layers (about half):
  depth:      depth=0.5 (the 4 layers of least block influence go)
  heads+mlp:  heads=0.5 (half the query heads of each key/value group) + ffn=0.5
  width+mlp:  width=0.3 (hidden 256 -> 176; heads keep head_dim) + ffn=0.3 (Minitron's width)
each then recovered by the same number of distillation steps from the teacher. All four are
exported (past key values); the teacher's export is quantized to int8 (dynamic MatMulInteger)
and to 4-bit weight-only MatMulNBits. One `pocketsize.evaluate` call on the test split gives
perplexity, next-token agreement with the teacher, size and latency (batch 1 and 32, each
runtime at its defaults, variants timed in rotating blocks).

    python benchmarks/decoder_pruning.py                    # about 25 min on 2 cores
    python benchmarks/decoder_pruning.py --teacher-steps 600 --recover-steps 300

Name the CPU beside any figure you report from it; compare variants as the ratios printed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def train_tokenizer(texts, vocab_size, out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<unk>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    core.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="<s>", model_input_names=["input_ids", "attention_mask"],
    )  # fmt: skip
    tok.save_pretrained(out)
    return tok


def _round(x, digits=3):
    return None if x is None else round(x, digits)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="rt-polarity")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--teacher-steps", type=int, default=400)
    ap.add_argument("--recover-steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--test-examples", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="directory for the outputs (default: temp)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.set_num_threads(args.threads)
    import pocketsize as ps
    from pocketsize.eval.environment import machine_info

    work = Path(args.work or tempfile.mkdtemp(prefix="decoder-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = ps.load_dataset(args.data).select_columns(["text"])
    test = data["test"].select(range(min(args.test_examples, len(data["test"]))))
    timings = {}
    common = dict(task="causal-lm", batch_size=args.batch_size, max_length=args.max_length,
                  progress=False)  # fmt: skip

    base = work / "base"
    if not (base / "config.json").exists():
        tok = train_tokenizer(data["train"]["text"], args.vocab, base)
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.ffn,
            num_hidden_layers=args.layers, num_attention_heads=args.heads,
            num_key_value_heads=args.kv_heads, head_dim=args.hidden // args.heads,
            max_position_embeddings=128, pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        )  # fmt: skip
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(base)

    teacher = work / "teacher"
    if not (teacher / "config.json").exists():
        started = time.time()
        ps.finetune(base, data, teacher, max_steps=args.teacher_steps, learning_rate=1e-3,
                    **common)  # fmt: skip
        timings["teacher_s"] = round(time.time() - started, 1)

    recover = {"max_steps": args.recover_steps, "learning_rate": 5e-4, **common}
    recover.pop("task")
    plans = {
        "depth": {"depth": 0.5},
        "heads+mlp": {"heads": 0.5, "ffn": 0.5},
        "width+mlp": {"width": 0.3, "ffn": 0.3},
    }
    variants = {"teacher": teacher}
    for name, plan in plans.items():
        out = work / name
        if not (out / "stage.json").exists():
            started = time.time()
            ps.prune(teacher, data, task="causal-lm", recover=True, recover_options=recover,
                     out=out, overwrite=True, verbose=False, **plan)  # fmt: skip
            timings[f"{name}_s"] = round(time.time() - started, 1)
        variants[name] = out
    for name in list(variants):
        onnx_dir = work / f"{name}-onnx"
        if not onnx_dir.exists():
            ps.export(variants[name], onnx_dir)
        variants[f"{name}-onnx"] = onnx_dir
    for name, bits in (("teacher-int8", 8), ("teacher-4bit", 4)):
        out = work / name
        if not out.exists():
            ps.quantize(work / "teacher-onnx", method="dynamic", matmul_bits=bits,
                        out=out, task="causal-lm")  # fmt: skip
        variants[name] = out

    evaluation = ps.evaluate(variants, test, reference="teacher", task="causal-lm",
                             threads=args.threads, memory=False)  # fmt: skip
    evaluation.save(work / "report", overwrite=True)
    v = evaluation.metrics["variants"]

    def row(name):
        m = v[name]
        lat = m.get("latency_ms", {})
        return {
            "perplexity": round(m["metrics"]["perplexity"], 2),
            "agreement": round(m["agreement"], 4),
            "size_mb": round(m["size_bytes"] / 1e6, 2),
            "p50_ms_b1": _round(lat.get("1", {}).get("p50")),
            "p50_ms_b32": _round(lat.get("32", {}).get("p50")),
        }

    rows = {name: row(name) for name in variants}

    def ratio(a, b, key):
        return round(rows[a][key] / rows[b][key], 2) if rows[a][key] and rows[b][key] else None

    result = {
        "machine": machine_info(),
        "threads": args.threads,
        "model": {
            k: getattr(args, k)
            for k in (
                "layers",
                "hidden",
                "heads",
                "kv_heads",
                "ffn",
                "vocab",
                "teacher_steps",
                "recover_steps",
            )
        },
        "timings": timings,
        "variants": rows,
        "ratios": {
            "onnx speed-up over the teacher's export, batch 1": {
                n: ratio("teacher-onnx", f"{n}-onnx", "p50_ms_b1") for n in plans
            },
            "onnx speed-up over the teacher's export, batch 32": {
                n: ratio("teacher-onnx", f"{n}-onnx", "p50_ms_b32") for n in plans
            },
            "4-bit vs int8: size": ratio("teacher-4bit", "teacher-int8", "size_mb"),
            "4-bit vs int8: p50 batch 1": ratio("teacher-4bit", "teacher-int8", "p50_ms_b1"),
            "4-bit vs int8: p50 batch 32": ratio("teacher-4bit", "teacher-int8", "p50_ms_b32"),
        },
        "report": str(work / "report"),
    }
    print(json.dumps(result, indent=2))
    (work / "decoder_pruning.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
