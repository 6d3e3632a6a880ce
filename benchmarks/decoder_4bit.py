"""4-bit weights for a real decoder, method against method (issue 31): how close to the float
model each 4-bit file stays, at what size and decode speed, on SmolLM2-135M.

Every 4-bit variant quantizes all weight MatMuls, the LM head (tied to the token table: untied
first, quantize/tied_weights.py) and the token table (Gather) at blocks of 32 unless said:
  int8           pocketsize's dynamic int8 (MatMulInteger, the head and table int8 too)
  int8, head float  the same with the LM head left in float (as before the untying)
  rtn            pocketsize's 4-bit path (`quantize(method="dynamic", matmul_bits=4,
                 embedding_bits=4)`): onnxruntime's round-to-nearest, integer zero points
  rtn, head float  the LM head left in float (its table float too)
  rtn + head 8-bit  `head_bits=8`: the LM head an 8-bit MatMulNBits
  rtn, table int8  the table int8 (`embedding_bits=8`)
  rtn b16        blocks of 16
  grid kept      pocketsize's 4-bit path as it is (`keep_grid`, the default): a weight already
                 on a block grid (SmolLM2's GGUF file: Q4_1 MatMuls, a Q8_0 table) keeps that
                 grid exactly (quantize/source_grid.py); the rtn rows turn it off
  grid kept + head 8-bit  and the LM head's 8-bit MatMulNBits keeps the table's Q8_0 grid
  k-quant        onnxruntime's k-quant (llama.cpp's weighted search for each block's scale
                 and minimum; integer zero points, so MatMulNBits keeps its fast path)
  k-quant, head 8-bit  the LM head's MatMulNBits at 8 bits
  hqq            onnxruntime's HQQ (float zero points: MatMulNBits' slow path)
  gptq           with --gptq N: onnxruntime's GPTQ, calibrated on N training sentences
Scores: perplexity of held-out text and next-token agreement with the float model at every
position (one prefill per prompt); prefill and one decode step timed at batch 1 (_decode.py).

    python benchmarks/decoder_4bit.py --work /tmp/d4 [--onnx DIR] [--prompts 64]

Name the CPU beside any figure you report from it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _decode import scores, time_decoders

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BLOCK = 32


def _float_dir(work: Path, onnx_dir: str | None) -> Path:
    import pocketsize as ps
    from pocketsize.assets import resolve_model

    if onnx_dir:
        return Path(onnx_dir)
    out = work / "float"
    if not (out / "model.onnx").exists():
        ps.export(resolve_model("smollm2-135m"), out, task="causal-lm", overwrite=True)
    return out


def _pocketsize(float_dir: Path, out: Path, **kw) -> Path:
    import pocketsize as ps
    from pocketsize.formats.onnx_dir import model_file

    if not out.exists():
        ps.quantize(float_dir, method="dynamic", out=out, task="causal-lm", **kw)
    return model_file(out)


def _onnxruntime(float_dir: Path, out: Path, config=None, head_bits: int = 4) -> Path:
    """Weight MatMuls by onnxruntime's `config` algorithm (None: round-to-nearest), the
    token table by pocketsize's 4-bit Gather, both after untying the head."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from pocketsize.quantize.four_bit import quantize_4bit, table_gathers
    from pocketsize.quantize.tied_weights import fold_transposed_weights

    path = out / "model.onnx"
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(float_dir / "model.onnx"))
    heads = fold_transposed_weights(model)
    if config is not None and head_bits != 4:
        config.customized_weight_config = {h: {"bits": head_bits} for h in heads}
    quantizer = MatMulNBitsQuantizer(model, block_size=BLOCK, accuracy_level=4,
                                     op_types_to_quantize=("MatMul",), algo_config=config)  # fmt: skip
    quantizer.process()
    model = quantizer.model.model
    for node in model.graph.node:  # HQQ and k-quant nodes may carry no accuracy_level
        if node.op_type == "MatMulNBits" and not any(
            a.name == "accuracy_level" and a.i for a in node.attribute
        ):
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", 4))
    model = quantize_4bit(model, table_gathers(model), BLOCK)
    onnx.save(model, str(path))
    return path


def _tied_heads(float_dir: Path) -> list[str]:
    """The MatMuls reading the token table through a Transpose (the tied LM head)."""
    import onnx

    from pocketsize.quantize.tied_weights import transposed_weight_matmuls

    model = onnx.load(str(float_dir / "model.onnx"), load_external_data=False)
    return [n.name for users in transposed_weight_matmuls(model).values() for n in users]


class _Sentences:
    """Calibration data for onnxruntime's GPTQ: one prefill feed per sentence (empty past)."""

    def __init__(self, float_dir: Path, texts: list[str]):
        import onnxruntime as ort
        from _decode import feeds
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(float_dir)
        session = ort.InferenceSession(
            str(float_dir / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        ids = [np.asarray([tok(t)["input_ids"]], dtype=np.int64) for t in texts]
        self.feeds = [feeds(session, x, None) for x in ids if x.shape[1] > 1]

    def __iter__(self):  # how onnxruntime's GPTQ reads it
        return iter(self.feeds)


def variants(work: Path, float_dir: Path, gptq: int = 0) -> dict[str, Path]:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        HQQWeightOnlyQuantConfig,
        KQuantWeightOnlyQuantConfig,
    )

    rtn = dict(keep_grid=False)  # round every weight to a new grid, even one already on a grid
    four = dict(matmul_bits=4, embedding_bits=4, head_bits=4)  # head_bits=8 is the default
    head = dict(exclude_nodes=_tied_heads(float_dir))
    makers = {
        "int8": lambda o: _pocketsize(float_dir, o),
        "int8, head float": lambda o: _pocketsize(float_dir, o, **head),
        "rtn": lambda o: _pocketsize(float_dir, o, **four, **rtn),
        "rtn, head float": lambda o: _pocketsize(float_dir, o, **four, **head, **rtn),
        "rtn + head 8-bit": lambda o: _pocketsize(float_dir, o, **{**four, "head_bits": 8}, **rtn),
        "rtn, table int8": lambda o: _pocketsize(float_dir, o, matmul_bits=4, head_bits=4, **rtn),
        "rtn b16": lambda o: _pocketsize(float_dir, o, block_size=16, **four, **rtn),
        "grid kept": lambda o: _pocketsize(float_dir, o, **four),
        "grid kept + head 8-bit": lambda o: _pocketsize(float_dir, o, **{**four, "head_bits": 8}),
        "grid kept + head 8-bit + table int8": lambda o: _pocketsize(float_dir, o, matmul_bits=4),
        "k-quant": lambda o: _onnxruntime(float_dir, o, KQuantWeightOnlyQuantConfig()),
        "k-quant, head 8-bit": lambda o: _onnxruntime(
            float_dir, o, KQuantWeightOnlyQuantConfig(), head_bits=8
        ),
        "hqq": lambda o: _onnxruntime(
            float_dir,
            o,
            HQQWeightOnlyQuantConfig(block_size=BLOCK, op_types_to_quantize=("MatMul",)),
        ),
    }
    if gptq:
        from onnxruntime.quantization.matmul_nbits_quantizer import GPTQWeightOnlyQuantConfig

        from pocketsize.data import load_dataset

        texts = load_dataset("vader-nyt")["train"]["text"][:gptq]
        makers["gptq"] = lambda o: _onnxruntime(
            float_dir, o, GPTQWeightOnlyQuantConfig(_Sentences(float_dir, texts),
                                                    op_types_to_quantize=("MatMul",))
        )  # fmt: skip
    paths = {"float32": float_dir / "model.onnx"}
    for name, make in makers.items():
        started = time.perf_counter()
        paths[name] = make(work / name.replace(" ", "-").replace(",", ""))
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True)
    p.add_argument("--onnx", default=None, help="a causal-LM export (default: SmolLM2-135M's)")
    p.add_argument("--data", default="vader-nyt")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--gptq", type=int, default=0, help="add GPTQ, calibrated on N sentences")
    p.add_argument("--only", default=None, help="comma-separated variants (default: all)")
    args = p.parse_args()

    from transformers import AutoTokenizer

    from pocketsize.data import load_dataset
    from pocketsize.eval.environment import machine_info

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    float_dir = _float_dir(work, args.onnx)
    paths = variants(work, float_dir, args.gptq)
    if args.only:
        paths = {n: p for n, p in paths.items() if n == "float32" or n in args.only.split(",")}
    tok = AutoTokenizer.from_pretrained(float_dir)
    texts = load_dataset(args.data)["test"]["text"][: args.prompts]
    prompts = [np.asarray([tok(t)["input_ids"]], dtype=np.int64) for t in texts]
    timed = time_decoders(paths, prompts, args.rounds)
    scored = scores(timed, "float32")
    rows = {}
    for name, path in paths.items():
        size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
        rows[name] = {
            "size_mb": round(size / 1e6, 1),
            "agreement": round(scored[name]["agreement"], 4),
            "perplexity": round(scored[name]["perplexity"], 2),
            "prefill_p50_ms": round(timed[name]["prefill_p50_ms"], 2),
            "decode_p50_ms": round(timed[name]["decode_p50_ms"], 2),
        }
    base = rows["float32"]
    print(
        f"{len(prompts)} prompts of {args.data} test, {np.mean([x.shape[1] for x in prompts]):.1f} tokens on average"
    )
    print(
        "| variant | file | smaller than float32 | perplexity (ratio) | agreement | prefill p50 | decode p50 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['size_mb']} MB | {base['size_mb'] / r['size_mb']:.2f}x | {r['perplexity']} "
            f"({r['perplexity'] / base['perplexity']:.3f}) | {r['agreement']:.2%} | "
            f"{r['prefill_p50_ms']} ms | {r['decode_p50_ms']} ms |"
        )
    result = {
        "machine": machine_info(),
        "prompts": len(prompts),
        "data": args.data,
        "variants": rows,
    }
    (work / "decoder_4bit.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
