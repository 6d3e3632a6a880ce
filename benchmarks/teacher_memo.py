"""The teacher memo against the live teacher: the main job's distillation, side by side.

    python benchmarks/teacher_memo.py --teacher runs/sentiment/teacher [--examples 2048]

The main job's student distillation (truncate 0,2,4; KL + CE + hidden states; 3 epochs) on
the first N training sentences of rt-polarity, twice per round: `cache="off"` (the live teacher
at every step, as before distill/memo.py) and the default (the teacher's outputs kept from the
first epoch). Rounds alternate the order, so drift on a shared machine hits both alike. Prints
the wall time of each run, their ratio, the memo's own record (batches served, megabytes) and
how far the two students' weights are apart (training from the memo is training from the live
teacher, up to the float noise of another padding).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _run(teacher, data, out: Path, cache: str) -> tuple[float, dict]:
    import pocketsize as ps

    started = time.perf_counter()
    ps.distill(
        teacher, data, "truncate:0,2,4", out, epochs=3, learning_rate=2e-4, temperature=2.0,
        losses={"kl": 0.5, "ce": 0.5, "hidden": 1}, cache=cache, evaluate=False,
        progress=False, seed=42,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return seconds, json.loads((out / "stage.json").read_text())


def _max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="runs/sentiment/teacher", help="a fine-tuned teacher")
    p.add_argument("--data", default="rt-polarity")
    p.add_argument("--examples", type=int, default=2048, help="training sentences used")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()

    from datasets import DatasetDict

    from pocketsize.data import load_dataset
    from pocketsize.eval.environment import machine_info

    full = load_dataset(args.data)
    data = DatasetDict(train=full["train"].select(range(min(args.examples, len(full["train"])))))
    print("machine:", json.dumps(machine_info()))
    times: dict[str, list[float]] = {"off": [], "auto": []}
    with tempfile.TemporaryDirectory(prefix="memo-bench-") as tmp:
        for r in range(args.rounds):
            order = ["off", "auto"] if r % 2 == 0 else ["auto", "off"]
            for cache in order:
                seconds, stage = _run(args.teacher, data, Path(tmp) / f"{cache}{r}", cache)
                times[cache].append(seconds)
                memo = stage["cache"].get("memo")
                print(
                    f"round {r} cache={cache}: {seconds:.1f} s, steps {stage['steps']}, memo {memo}"
                )
        gap = _max_weight_difference(Path(tmp) / "off0", Path(tmp) / "auto0")
    live, kept = min(times["off"]), min(times["auto"])
    print(f"live teacher {live:.1f} s, memo {kept:.1f} s: {live / kept:.2f}x faster")
    print(f"largest weight difference between the two students: {gap:.2e}")


if __name__ == "__main__":
    main()
