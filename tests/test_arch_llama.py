"""Llama-layout decoders (Llama, Qwen2, Qwen3, Mistral) on tiny random configs through every
stage: fine-tune, distil into fewer layers, prune (depth, grouped-query heads, MLP neurons) with
recovery from the teacher, export with past key values (generation parity), int8 and 4-bit
weight-only quantization, evaluation (perplexity, next-token agreement)."""

from __future__ import annotations

import json

import onnx
import pytest
from zoo import (
    EVAL_QUICK,
    HEAD_DIM,
    LM_MAX_LENGTH,
    QUICK_GENERATIVE,
    assert_decreased,
    lm_data,
    loss_recorder,
    make_tiny_decoder,
)

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")


def op_types(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3", "mistral"])
def test_decoder_finetune_distill_prune_export_quantize_eval(model_type, tmp_path):
    from transformers import AutoConfig

    from pocketsize.distill import distill, finetune
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.export.generative import generate, load_generator
    from pocketsize.prune import prune
    from pocketsize.quantize import quantize

    data = lm_data()
    make_tiny_decoder(tmp_path / "base", model_type)
    teacher = finetune(tmp_path / "base", data, tmp_path / "teacher", task="causal-lm",
                       max_steps=60, learning_rate=3e-3, max_length=LM_MAX_LENGTH,
                       **QUICK_GENERATIVE)  # fmt: skip

    record, losses = loss_recorder()
    student = distill(
        teacher, data, "truncate:0,1,3", tmp_path / "student", task="causal-lm",
        losses={"token_kl": 1.0, "token_ce": 0.5}, temperature=2.0,
        max_steps=40, learning_rate=3e-3, callbacks=[record], max_length=LM_MAX_LENGTH,
        **QUICK_GENERATIVE,
    )  # fmt: skip
    assert_decreased(losses)
    config = AutoConfig.from_pretrained(student)
    assert config.num_hidden_layers == 3
    if model_type == "qwen2":  # the per-layer list follows the kept layers 0, 1, 3
        assert config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]

    pruned = prune(
        student, data, depth=0.34, heads=0.5, ffn=0.5, task="causal-lm", recover=True,
        recover_teacher=teacher,
        recover_options={"max_steps": 10, "max_length": LM_MAX_LENGTH, **QUICK_GENERATIVE},
        out=tmp_path / "pruned", verbose=False,
    )  # fmt: skip
    config = AutoConfig.from_pretrained(pruned)
    assert (config.num_hidden_layers, config.num_attention_heads, config.head_dim) == (
        2, 2, HEAD_DIM,
    )  # fmt: skip

    onnx_dir = export(pruned, tmp_path / "onnx")
    parity = json.loads((onnx_dir / "stage.json").read_text())["parity"]
    assert parity["same_tokens"] and parity["max_abs_logit_diff"] < 1e-4

    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8", task="causal-lm")
    q4_dir = quantize(onnx_dir, method="dynamic", matmul_bits=4, out=tmp_path / "q4",
                      task="causal-lm")  # fmt: skip
    assert "MatMulInteger" in op_types(int8_dir / "model_quantized.onnx")
    assert "MatMulNBits" in op_types(q4_dir / "model_quantized.onnx")
    q4_model, tok = load_generator(q4_dir, "causal-lm")
    generated = generate(q4_model, ["the film", "a good story with"], tok)
    assert len(generated) == 2 and all(len(g) > 0 for g in generated)

    report = evaluate(
        {"teacher": teacher, "pruned": pruned, "onnx": onnx_dir, "int8": int8_dir, "q4": q4_dir},
        data["test"], reference="pruned", task="causal-lm", **EVAL_QUICK,
    )  # fmt: skip
    report.save(tmp_path / "report")
    v = json.loads((tmp_path / "report" / "metrics.json").read_text())["variants"]
    assert v["onnx"]["agreement"] == 1.0
    assert v["int8"]["agreement"] > 0.8 and v["q4"]["agreement"] > 0.6
    vocab = len(tok)
    for name in ("teacher", "pruned", "int8", "q4"):
        assert v[name]["metrics"]["perplexity"] < vocab  # learned: better than uniform
    assert v["q4"]["size_bytes"] < v["int8"]["size_bytes"]
