"""Does the harness's latency figure repeat? Measure the same model twice, compare with the spread.

Two measurements of one model:
  - "first" and "second": the same model entered twice into one evaluate() call, so the two are
    timed in the same rotating rounds (how the report compares variants);
  - "rerun": a second, separate evaluate() call right after the first.
For each batch size it prints each measurement's p50 and the spread the report gives for it
(the range of the per-round medians), and whether the other measurements' p50 fall inside it.

    .venv/bin/python benchmarks/eval_repeatability.py                       # minilm-l6, rt-polarity
    .venv/bin/python benchmarks/eval_repeatability.py --model out/int8 --threads 2
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_variant(ref: str):
    """A model directory as is; a catalogue name (minilm-l6) as a classifier with a fresh head
    (latency does not depend on the head's weights)."""
    if os.path.exists(ref):
        return ref
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import pocketsize as ps

    path = ps.fetch(ref)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    return (model, AutoTokenizer.from_pretrained(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--data", default="rt-polarity")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--examples", type=int, default=128, help="test inputs timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", default="1,32")
    args = parser.parse_args()

    import pocketsize as ps

    data = ps.load_dataset(args.data)
    variant = load_variant(args.model)
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    common = dict(
        reference="first",
        batch_sizes=batch_sizes,
        threads=args.threads,
        memory=False,
        max_examples=args.examples,
        latency_examples=args.examples,
        repeats=args.repeats,
        progress=False,
    )
    both = ps.evaluate({"first": variant, "second": variant}, data, **common)
    rerun = ps.evaluate({"first": variant}, data, **common)
    measurements = {
        "first": both["first"]["latency_ms"],
        "second (same rounds)": both["second"]["latency_ms"],
        "rerun (separate call)": rerun["first"]["latency_ms"],
    }
    settings = both.metrics["settings"]["latency"]
    print(
        f"model {args.model}, {settings['inputs_timed']} inputs timed, {args.repeats} rounds, "
        f"{args.threads} threads"
    )
    pairs = [("first", "second (same rounds)"), ("first", "rerun (separate call)")]
    verdicts = []
    for bs in map(str, batch_sizes):
        print(f"\nbatch {bs}: p50 ms [spread = min..max of per-round medians], p95")
        for name, lat in measurements.items():
            s = lat[bs]
            low, high = s["p50_spread"]
            print(f"  {name:24s} {s['p50']:9.3f} [{low:.3f} .. {high:.3f}]  p95 {s['p95']:9.3f}")
        for a, b in pairs:
            sa, sb = measurements[a][bs], measurements[b][bs]
            inside = (
                sa["p50_spread"][0] <= sb["p50"] <= sa["p50_spread"][1]
                and sb["p50_spread"][0] <= sa["p50"] <= sb["p50_spread"][1]
            )
            verdicts.append(inside)
            print(
                f"  {a} vs {b}: p50 ratio {sb['p50'] / sa['p50']:.3f}; each p50 inside the "
                f"other's spread: {'yes' if inside else 'NO'}"
            )
    print(
        "\nall pairs within each other's reported spread"
        if all(verdicts)
        else "\nsome pair fell outside the reported spread (NO above): the machine's load changed "
        "between the measurements; variants in the same rounds share such drift, separate calls do not"
    )


if __name__ == "__main__":
    main()
