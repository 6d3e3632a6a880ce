"""MatMulNBits' accuracy_level 0 against 4 on a real decoder (issue 31): SmolLM2-135M's ONNX
export, its weight MatMuls in 4 bits (blocks of 32) by round-to-nearest at both levels and by
onnxruntime's HQQ at level 4, timed side by side with the float model in one run.

    python benchmarks/nbits_accuracy_level.py [--prompts 16] [--rounds 5]

accuracy_level 0 dequantizes the 4-bit weights and multiplies in float32; 4 quantizes the
activations to int8 and multiplies in int8 (the fast CPU path, pocketsize's default). Per
variant: prefill of each prompt (batch 1) and one decode step after it (the prompt's past key
values fed back), p50 over prompts and rounds, variants rotated per round; next-token agreement
with the float model at every prompt position, and the prompts' perplexity; the model file's
size. The prompts are the first rt-polarity test sentences. Name the CPU beside any figure you
report from it.

Why the timing and the scores are written here (benchmarks/_decode.py): `pocketsize.evaluate`
times whole forwards, not a decode step fed its past, and its causal-LM scores would need the
4-bit models as directories; a decode-step latency in eval's report (issue 31) would replace
both.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _decode import scores, time_decoders

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _export(out: Path) -> Path:
    import pocketsize as ps
    from pocketsize.assets import resolve_model

    started = time.perf_counter()
    ps.export(resolve_model("smollm2-135m"), out, task="causal-lm", overwrite=True)
    print(f"export: {time.perf_counter() - started:.1f} s")
    return out / "model.onnx"


def _quantize(float_path: Path, level: int, out: Path) -> Path:
    import onnx

    from pocketsize.quantize.four_bit import constant_matmuls, quantize_4bit

    started = time.perf_counter()
    model = onnx.load(str(float_path))
    model = quantize_4bit(model, constant_matmuls(model), block_size=32, accuracy_level=level)
    path = out / f"model-nbits-level{level}.onnx"
    onnx.save(model, str(path))
    print(f"4-bit, accuracy_level {level}: {time.perf_counter() - started:.1f} s")
    return path


def _quantize_hqq(float_path: Path, out: Path) -> Path:
    """The same MatMuls in 4 bits by onnxruntime's HQQ (half-quadratic scales and zero points,
    no calibration data) instead of round-to-nearest, then set to accuracy_level 4."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    started = time.perf_counter()
    config = HQQWeightOnlyQuantConfig(block_size=32, op_types_to_quantize=("MatMul",))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(float_path)), algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":  # HQQ's nodes carry no accuracy_level (0)
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", 4))
    path = out / "model-nbits-hqq.onnx"
    onnx.save(model, str(path))
    print(f"4-bit HQQ, accuracy_level 4: {time.perf_counter() - started:.1f} s")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    from transformers import AutoTokenizer

    from pocketsize.data import load_dataset
    from pocketsize.eval.environment import machine_info

    print("machine:", json.dumps(machine_info()))
    with tempfile.TemporaryDirectory(prefix="nbits-") as tmp:
        float_path = _export(Path(tmp) / "onnx")
        paths = {"float32": float_path}
        for level in (0, 4):
            paths[f"4-bit level {level}"] = _quantize(float_path, level, Path(tmp) / "onnx")
        paths["4-bit HQQ level 4"] = _quantize_hqq(float_path, Path(tmp) / "onnx")
        tok = AutoTokenizer.from_pretrained(float_path.parent)
        texts = load_dataset("rt-polarity")["test"]["text"][: args.prompts]
        prompts = [np.asarray([tok(t)["input_ids"]], dtype=np.int64) for t in texts]
        timed = time_decoders(paths, prompts, args.rounds)
        scored = scores(timed, "float32")
        names = list(paths)
        print(f"{len(prompts)} prompts, mean {np.mean([x.shape[1] for x in prompts]):.1f} tokens")
        print(
            "| variant | model file | prefill p50 | decode step p50 | next-token agreement "
            "| perplexity |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for name in names:
            size = paths[name].stat().st_size / 1e6
            print(
                f"| {name} | {size:.1f} MB | {timed[name]['prefill_p50_ms']:.2f} ms | "
                f"{timed[name]['decode_p50_ms']:.2f} ms | {scored[name]['agreement']:.2%} | "
                f"{scored[name]['perplexity']:.1f} |"
            )


if __name__ == "__main__":
    main()
