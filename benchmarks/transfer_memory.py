"""Peak memory and wall time of distillation against the size of its transfer set.

    python benchmarks/transfer_memory.py [--sizes 10000,100000,1000000] [--steps 50]
    python benchmarks/transfer_memory.py --sizes 0,25119,125595 --epochs 1   (1x / 4x / 16x)

Transfer sentences are made from rt-polarity's training text by Tang et al. augmentation and
written to a text file first, outside the measured process. A small random teacher (BERT
layout, 2 layers of width 64, MiniLM-L6's tokenizer) is distilled into a 1-layer truncated
student from that file (`transfer=`) for a fixed number of steps (memory against the set's
size) or for whole epochs (time against it), KL + CE from the teacher cache. Each size runs in a fresh child process, which reports its peak RSS (VmHWM) and its
peak anonymous memory (RssAnon sampled every 50 ms: what the process holds itself, without
the file pages it maps, such as the memory-mapped cache and Arrow files), and the wall times
of the whole call and of building the teacher cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, threading, time
from pathlib import Path

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0

peak = {"anon": 0}
def sample():
    while True:
        peak["anon"] = max(peak["anon"], status("RssAnon"))
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()

teacher, transfer, out, steps, cache = sys.argv[1:6]
started = time.time()
from pocketsize.distill import distill
length = ({"epochs": float(steps[len("epochs:"):])} if steps.startswith("epochs:")
          else {"max_steps": int(steps)})
distill(teacher, "rt-polarity", "truncate:0", out,
        transfer=None if transfer == "none" else transfer, losses="kl=0.5,ce=0.5", cache=True,
        cache_dir=cache, evaluate=False, progress=False, batch_size=32, max_length=64,
        logging_steps=1000, overwrite=True, **length)
record = json.loads((Path(out) / "stage.json").read_text())
peak["anon"] = max(peak["anon"], status("RssAnon"))
print(json.dumps({"wall_s": round(time.time() - started, 1), "cache_s": record["cache"]["seconds"],
                  "examples": record["train_examples"], "steps": record["steps"],
                  "train_s": record["train_runtime_s"], "peak_rss": status("VmHWM"),
                  "peak_anon": peak["anon"]}))
"""


def make_teacher(directory: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from pocketsize.assets import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    config = BertConfig(
        vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=128, num_labels=2,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def make_transfer_file(path: Path, size: int) -> None:
    from pocketsize.data import load_dataset
    from pocketsize.distill.transfer import augment_texts

    texts = list(load_dataset("rt-polarity")["train"]["text"])
    copies = -(-size // len(texts)) + 2  # spare: duplicate variants are dropped
    made = augment_texts(texts, copies, seed=0)[:size]
    if len(made) < size:
        raise SystemExit(f"augmentation made {len(made)} sentences, fewer than {size}")
    path.write_text("\n".join(made) + "\n", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--epochs", type=float, default=None, help="train epochs instead of --steps")
    p.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    args = p.parse_args()

    from pocketsize.eval.environment import machine_info

    work = Path(args.work or tempfile.mkdtemp(prefix="transfer-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    teacher = work / "teacher"
    if not (teacher / "config.json").exists():
        make_teacher(teacher)
    machine = machine_info()
    length = f"epochs:{args.epochs}" if args.epochs else str(args.steps)
    per_size = f"{args.epochs:g} epoch(s)" if args.epochs else f"{args.steps} steps"
    print(f"{machine['cpu']} (family/model {machine['cpu_family_model']}), "
          f"{machine['usable_cores']} cores; {per_size} per size")  # fmt: skip
    print(
        "| transfer sentences | training examples | steps | peak RSS | peak anonymous "
        "| cache build | training | whole call |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        transfer = work / f"transfer-{size}.txt"
        if size and not transfer.exists():
            made = time.time()
            make_transfer_file(transfer, size)
            print(f"  (made {transfer.name} in {time.time() - made:.0f} s)", file=sys.stderr)
        out, cache = work / f"student-{size}", work / f"cache-{size}"
        shutil.rmtree(cache, ignore_errors=True)  # the cache is built in the measured run
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(teacher), str(transfer) if size else "none",
             str(out), length, str(cache)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {size:,} | {r['examples']:,} | {r['steps']:,} | {r['peak_rss'] / 2**20:,.0f} MiB "
            f"| {r['peak_anon'] / 2**20:,.0f} MiB | {r['cache_s']:.0f} s | {r['train_s']:.0f} s "
            f"| {r['wall_s']:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
