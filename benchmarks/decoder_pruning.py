"""Decoder pruning benchmark (issues 19 and 31): depth against heads + MLP neurons and against
hidden width + MLP neurons, each recovered by distillation, and 4-bit against int8 weights,
side by side in one run.

The teacher is a real decoder (`--teacher smollm2-135m`, or any causal-LM directory) or, by
default, a small Llama-layout decoder (8 layers, hidden 256, 8 query / 4 key-value heads, MLP
768, a 4,096-piece BPE tokenizer trained on the same text) trained here briefly on the
packaged rt-polarity sentences as a causal LM. From it, with about the same parameter budget
removed from the layers:
  depth:      depth=0.5 (the layers of least block influence go)
  heads+mlp:  heads=0.5 (half the query heads of each key/value group) + ffn=0.5
  width+mlp:  width=0.3 (hidden 256 -> 176; heads keep head_dim) + ffn=0.3 (Minitron's width)
each then recovered by the same number of distillation steps from the teacher (with --top-k,
from the teacher's top-k logits cached once). All are exported with past key values, and
each export's greedy generation is compared with PyTorch's, token for token, on test
prompts; the teacher's export is quantized to int8 (dynamic MatMulInteger) and to 4-bit
weight-only MatMulNBits. Each ONNX variant then reads every test text once (batch 1): its
perplexity, next-token agreement with the teacher's export at every position, file size, and
prefill and one decode step timed (_decode.py; variants rotated per round). Scored here, not
by `pocketsize.evaluate`, whose scoring path holds every example's full-vocabulary logits.

    python benchmarks/decoder_pruning.py                    # about 25 min on 2 cores
    python benchmarks/decoder_pruning.py --teacher-steps 600 --recover-steps 300
    python benchmarks/decoder_pruning.py --teacher smollm2-135m --data vader-nyt \
        --variants depth,width+mlp --width 0.25 --width-ffn 0.3 --top-k 64 --temperature 1 \
        --recover-steps 400 --recover-lr 2e-4 --batch-size 16 --max-length 64

Every phase's output is kept in --work; a rerun with the same --work skips what exists.
Name the CPU beside any figure you report from it; compare variants as the ratios printed.
"""

from __future__ import annotations

import argparse
import json
import math
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


PLANS = {
    "depth": lambda a: {"depth": a.depth},
    "heads+mlp": lambda a: {"heads": a.heads_cut, "ffn": a.heads_ffn},
    "width+mlp": lambda a: {"width": a.width, "ffn": a.width_ffn},
}


def arguments():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--teacher", default=None, help="a causal LM (catalogue name or directory)")
    ap.add_argument("--data", default="rt-polarity")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--teacher-steps", type=int, default=400)
    ap.add_argument("--variants", default="depth,heads+mlp,width+mlp")
    ap.add_argument("--depth", type=float, default=0.5)
    ap.add_argument("--heads-cut", type=float, default=0.5)
    ap.add_argument("--heads-ffn", type=float, default=0.5)
    ap.add_argument("--width", type=float, default=0.3)
    ap.add_argument("--width-ffn", type=float, default=0.3)
    ap.add_argument("--recover-steps", type=int, default=200)
    ap.add_argument("--recover-lr", type=float, default=5e-4)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--top-k", type=int, default=None, help="recover from a top-k cache")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--test-examples", type=int, default=512)
    ap.add_argument("--prompts", type=int, default=8, help="test prompts of the parity check")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--decode-rounds", type=int, default=3, help="timing rounds per test text")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="directory for the outputs (default: temp)")
    return ap.parse_args()


def toy_teacher(args, work: Path, data, common: dict, timings: dict) -> Path:
    """A small random Llama-layout decoder with its own BPE tokenizer, trained briefly."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    import pocketsize as ps

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
    return teacher


def pruned_students(args, teacher, data, work: Path, common: dict, timings: dict) -> dict:
    """Each plan's pruned and recovered student: name -> directory."""
    import pocketsize as ps

    recover = {"max_steps": args.recover_steps, "learning_rate": args.recover_lr,
               "temperature": args.temperature, **common}  # fmt: skip
    recover.pop("task")
    # no per-epoch validation: it keeps the split's full-vocabulary logits (SmolLM2: 464
    # sentences x 49,152 floats per position, several GB; runtime/scoring.py); the test split
    # is scored below, one prompt at a time
    recover["evaluate"] = False
    if args.top_k:
        recover["cache_top_k"] = args.top_k
    out = {}
    for name in args.variants.split(","):
        path = work / name.replace("+", "-")  # a directory name transformers can import from
        if not (path / "stage.json").exists():
            started = time.time()
            ps.prune(teacher, data, task="causal-lm", recover=True, recover_options=recover,
                     out=path, overwrite=True, verbose=False, max_length=args.max_length,
                     **PLANS[name](args))  # fmt: skip
            timings[f"{name}_prune_and_recover_s"] = round(time.time() - started, 1)
        record = json.loads((path / "stage.json").read_text())
        timings.setdefault(f"{name}_prune_and_recover_s", record.get("wall_time_s"))
        out[name] = path
    return out


def exported(variants: dict, work: Path, timings: dict) -> dict:
    """Each PyTorch variant's ONNX export (past key values): name-onnx -> directory."""
    import pocketsize as ps

    out = {}
    for name, path in variants.items():
        onnx_dir = work / f"{name.replace('+', '-')}-onnx"
        if not onnx_dir.exists():
            started = time.time()
            ps.export(path, onnx_dir, task="causal-lm")
            timings[f"{name}_export_s"] = round(time.time() - started, 1)
        out[f"{name}-onnx"] = onnx_dir
    for name, bits in (("teacher-int8", 8), ("teacher-4bit", 4)):
        out[name] = work / name
        if not out[name].exists():
            started = time.time()
            ps.quantize(work / "teacher-onnx", method="dynamic", matmul_bits=bits,
                        out=out[name], task="causal-lm")  # fmt: skip
            timings[f"{name}_s"] = round(time.time() - started, 1)
    return out


def generation_parity(variants: dict, prompts: list[str], new_tokens: int) -> dict:
    """Greedy generation of each PyTorch variant and its ONNX export, token for token."""
    from pocketsize.export.generative import generation_parity as parity
    from pocketsize.export.generative import load_generator

    out = {}
    for name, path in variants.items():
        torch_model, tok = load_generator(path, "causal-lm", onnx=False)
        onnx_model, _ = load_generator(path.parent / f"{path.name}-onnx", "causal-lm", onnx=True)
        found = parity(torch_model, onnx_model, tok, prompts, atol=1e-3, max_new_tokens=new_tokens)
        out[name] = {"same_tokens": found["same_tokens"], "prompts": len(prompts),
                     "new_tokens": new_tokens,
                     "max_abs_logit_diff": round(found["max_abs_logit_diff"], 6)}  # fmt: skip
    return out


def scored_and_timed(onnx_dirs: dict, texts: list[str], rounds: int, threads: int) -> dict:
    """Per ONNX variant, one prefill per test text (batch 1): perplexity, next-token agreement
    with the teacher's export at every position, and prefill and decode-step p50 in ms."""
    import numpy as np
    from _decode import scores, time_decoders
    from transformers import AutoTokenizer

    from pocketsize.formats.onnx_dir import model_file

    tok = AutoTokenizer.from_pretrained(onnx_dirs["teacher-onnx"])
    prompts = [np.asarray([tok(t)["input_ids"]], dtype=np.int64) for t in texts]
    prompts = [p for p in prompts if p.shape[1] > 1]
    paths = {n: model_file(Path(d)) for n, d in onnx_dirs.items()}
    timed = time_decoders(paths, prompts, rounds, threads)
    scored = scores(timed, "teacher-onnx")
    out = {}
    for name, path in paths.items():
        size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
        out[name] = {
            "perplexity": round(scored[name]["perplexity"], 2),
            "agreement": round(scored[name]["agreement"], 4),
            "size_mb": round(size / 1e6, 1),
            "prefill_p50_ms": round(timed[name]["prefill_p50_ms"], 2),
            "decode_p50_ms": round(timed[name]["decode_p50_ms"], 2),
        }
    return out


def main():
    args = arguments()
    import torch

    torch.set_num_threads(args.threads)
    import pocketsize as ps
    from pocketsize.assets import resolve_model
    from pocketsize.eval.environment import machine_info

    work = Path(args.work or tempfile.mkdtemp(prefix="decoder-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = ps.load_dataset(args.data).select_columns(["text"])
    test = data["test"].select(range(min(args.test_examples, len(data["test"]))))
    timings = json.loads((work / "timings.json").read_text()) if (
        work / "timings.json").exists() else {}  # fmt: skip
    common = dict(task="causal-lm", batch_size=args.batch_size, max_length=args.max_length,
                  progress=False)  # fmt: skip
    if args.teacher:
        teacher = Path(resolve_model(args.teacher))
        if not (work / "teacher").exists():
            (work / "teacher").symlink_to(teacher)
        teacher = work / "teacher"
    else:
        teacher = toy_teacher(args, work, data, common, timings)
    variants = {"teacher": teacher, **pruned_students(args, teacher, data, work, common, timings)}
    onnx = exported(variants, work, timings)
    (work / "timings.json").write_text(json.dumps(timings, indent=2))
    parity = generation_parity(variants, list(test["text"][: args.prompts]), args.new_tokens)
    rows = scored_and_timed(onnx, list(test["text"]), args.decode_rounds, args.threads)
    sizes = {f"{n}-onnx": parameters(p) for n, p in variants.items()}
    result = summary(args, rows, timings, parity, sizes)
    result.update(machine=machine_info(), test_texts=len(test))
    print(json.dumps(result, indent=2))
    (work / "decoder_pruning.json").write_text(json.dumps(result, indent=2))


def parameters(path: Path) -> float | None:
    """Millions of parameters in a PyTorch directory's safetensors (tied tables once)."""
    from safetensors import safe_open

    files = list(Path(path).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with safe_open(str(f), "pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return round(total / 1e6, 2)


def summary(args, rows: dict, timings: dict, parity: dict, sizes: dict) -> dict:
    for name, row in rows.items():
        row["parameters_m"] = sizes.get(name)

    def ratio(a, b, key):
        return round(rows[a][key] / rows[b][key], 2) if rows[a][key] and rows[b][key] else None

    plans = args.variants.split(",")
    keys = ("prefill_p50_ms", "decode_p50_ms")
    return {
        "teacher": args.teacher or "toy",
        "data": args.data,
        "threads": args.threads,
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "threads")},
        "timings": timings,
        "generation_parity": parity,
        "variants": rows,
        "speed-up of each export over the teacher's": {
            key: {n: ratio("teacher-onnx", f"{n}-onnx", key) for n in plans} for key in keys
        },
        "4-bit vs int8": {
            key: ratio("teacher-4bit", "teacher-int8", key) for key in ("size_mb", *keys)
        },  # fmt: skip
    }


if __name__ == "__main__":
    main()
