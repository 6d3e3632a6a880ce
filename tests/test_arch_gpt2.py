"""GPT-2 (causal LM) on a tiny random config: fine-tune, distil into fewer layers, prune (depth,
heads, MLP neurons, recovery), export with past key values (generation parity), dynamic int8,
evaluation (perplexity, next-token agreement)."""

from __future__ import annotations

import json
import math
from collections import Counter

import onnx
import pytest
from zoo import (
    EVAL_QUICK,
    LM_MAX_LENGTH,
    QUICK_GENERATIVE,
    assert_decreased,
    lm_data,
    loss_recorder,
    make_qa_dataset,
    make_tiny_gpt2,
)

from pocketsize.errors import PocketsizeError

pytestmark = pytest.mark.usefixtures("single_thread")


def test_gpt2_finetune_distill_export_quantize_eval(tmp_path):
    from transformers import AutoConfig

    from pocketsize.distill import distill, finetune
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.export.generative import generate, load_generator
    from pocketsize.quantize import quantize

    data = lm_data()
    base = make_tiny_gpt2(tmp_path / "base", n_layer=2)
    # ps.finetune / ps.distill hand causal-lm data to the token-level trainer
    teacher = finetune(base, data, tmp_path / "teacher", task="causal-lm", max_steps=60,
                       learning_rate=3e-3, max_length=LM_MAX_LENGTH,
                       **QUICK_GENERATIVE)  # fmt: skip
    assert json.loads((teacher / "stage.json").read_text())["stage"] == "finetune"

    record, losses = loss_recorder()
    student = distill(
        teacher, data, "truncate:0", tmp_path / "student", task="causal-lm",
        losses={"token_kl": 1.0, "token_ce": 0.5}, temperature=2.0,
        max_steps=40, learning_rate=3e-3, callbacks=[record], max_length=LM_MAX_LENGTH,
        **QUICK_GENERATIVE,
    )  # fmt: skip
    assert_decreased(losses)
    assert AutoConfig.from_pretrained(student).n_layer == 1

    # export with past key values; the export itself refuses logit or token mismatches
    onnx_dir = export(student, tmp_path / "onnx")  # ps.export sees a GPT-2 LM head
    parity = json.loads((onnx_dir / "stage.json").read_text())["parity"]
    assert parity["same_tokens"] and parity["max_abs_logit_diff"] < 1e-4
    assert all(len(t) == 8 for t in parity["onnx_tokens"])
    import onnxruntime as ort

    graph_inputs = [i.name for i in ort.InferenceSession(str(onnx_dir / "model.onnx")).get_inputs()]
    assert "past_key_values.0.key" in graph_inputs

    # the exported directory is a drop-in text-generation pipeline
    from pocketsize.eval import load_pipeline

    settings = dict(max_new_tokens=4, do_sample=False)
    from_onnx = load_pipeline(onnx_dir)("the film", **settings)[0]["generated_text"]
    assert from_onnx == load_pipeline(student)("the film", **settings)[0]["generated_text"]
    assert from_onnx.startswith("the film") and len(from_onnx.split()) == 6

    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8", task="causal-lm")
    int8_model, tok = load_generator(int8_dir, "causal-lm")
    torch_model, _ = load_generator(student, "causal-lm")
    prompts = ["the film", "a good story with"]
    same = [
        a[:3] == b[:3]
        for a, b in zip(generate(int8_model, prompts, tok), generate(torch_model, prompts, tok))
    ]
    assert sum(same) >= 1  # int8 keeps the first greedy tokens of at least one prompt

    report = evaluate(
        {"teacher": teacher, "student": student, "onnx": onnx_dir, "int8": int8_dir},
        data["test"], reference="student", task="causal-lm", **EVAL_QUICK,
    )  # fmt: skip
    report.save(tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    v = metrics["variants"]
    assert metrics["task"] == "causal-lm"
    assert v["onnx"]["agreement"] == 1.0
    assert v["onnx"]["fidelity"]["max_abs_logit_diff"] < 1e-3
    assert v["int8"]["agreement"] > 0.8
    vocab = len(tok)
    for name in ("teacher", "student", "int8"):
        m = v[name]["metrics"]
        assert m["perplexity"] == pytest.approx(math.exp(m["loss"]))  # exp of the mean NLL
        assert m["perplexity"] < vocab  # learned: better than uniform
    assert v["teacher"]["metrics"]["perplexity"] < 0.3 * vocab
    assert v["teacher"]["metrics"]["next_token_accuracy"] > 0.3


def test_gpt2_prune_recover_export_quantize_eval(tmp_path):
    """Heads removed globally leave layers with different head counts; the export states each
    layer's past shape, and ONNX Runtime generates PyTorch's tokens from it."""
    import onnxruntime as ort
    from transformers import AutoConfig

    from pocketsize.distill import finetune
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.prune import prune
    from pocketsize.quantize import quantize

    data = lm_data()
    base = make_tiny_gpt2(tmp_path / "base", n_layer=4)
    teacher = finetune(base, data, tmp_path / "teacher", task="causal-lm", max_steps=60,
                       learning_rate=3e-3, max_length=LM_MAX_LENGTH,
                       **QUICK_GENERATIVE)  # fmt: skip
    pruned = prune(
        teacher, data, depth=0.25, heads=0.5, scope="global", ffn=0.5, task="causal-lm",
        recover=True, out=tmp_path / "pruned", verbose=False,
        recover_options={"max_steps": 20, "learning_rate": 1e-3, "max_length": LM_MAX_LENGTH,
                         **QUICK_GENERATIVE},
    )  # fmt: skip
    config = AutoConfig.from_pretrained(pruned)
    kept = json.loads((pruned / "stage.json").read_text())["heads"]["kept_per_layer"]
    assert (config.n_layer, config.n_inner, sum(kept)) == (3, 64, 6)

    onnx_dir = export(pruned, tmp_path / "onnx")
    parity = json.loads((onnx_dir / "stage.json").read_text())["parity"]
    assert parity["same_tokens"] and parity["max_abs_logit_diff"] < 1e-4
    inputs = ort.InferenceSession(str(onnx_dir / "model.onnx")).get_inputs()
    past_heads = [i.shape[1] for i in inputs if i.name.endswith(".key")]
    assert past_heads == kept

    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8", task="causal-lm")
    # 4-bit: GPT-2's Conv1D layers export as Gemm, and every one becomes MatMulNBits; so does
    # the LM head, tied to the token table (quantize/tied_weights.py)
    q4_dir = quantize(onnx_dir, method="dynamic", matmul_bits=4, out=tmp_path / "q4",
                      task="causal-lm")  # fmt: skip
    ops = Counter(n.op_type for n in onnx.load(onnx_dir / "model.onnx").graph.node)
    q4_ops = Counter(n.op_type for n in onnx.load(q4_dir / "model_quantized.onnx").graph.node)
    assert ops["Gemm"] == 4 * 3 and q4_ops["MatMulNBits"] == ops["Gemm"] + 1 and not q4_ops["Gemm"]
    report = evaluate(
        {"teacher": teacher, "pruned": pruned, "onnx": onnx_dir, "int8": int8_dir, "q4": q4_dir},
        data["test"], reference="pruned", task="causal-lm", **EVAL_QUICK,
    )  # fmt: skip
    report.save(tmp_path / "report")
    v = json.loads((tmp_path / "report" / "metrics.json").read_text())["variants"]
    assert v["onnx"]["fidelity"]["max_abs_logit_diff"] < 1e-3
    assert v["onnx"]["agreement"] == 1.0
    assert v["int8"]["agreement"] > 0.5 and v["q4"]["agreement"] > 0.4
    assert v["q4"]["size_bytes"] < v["int8"]["size_bytes"]
    assert v["q4"]["metrics"]["perplexity"] < 0.5 * AutoConfig.from_pretrained(pruned).vocab_size
    vocab = AutoConfig.from_pretrained(pruned).vocab_size
    assert v["pruned"]["metrics"]["perplexity"] < 0.5 * vocab  # recovery kept what it learned


def test_gpt2_bad_input_is_one_clear_error(tmp_path):
    from pocketsize.distill import distill
    from pocketsize.export.generative import (
        check_generation_settings,
        export_generative,
        generate,
        load_generator,
    )
    from pocketsize.tasks import check_architecture

    with pytest.raises(PocketsizeError, match="gpt2 model .* cannot do extractive-qa"):
        check_architecture("gpt2", "extractive-qa")
    teacher = make_tiny_gpt2(tmp_path / "t")
    from pocketsize.eval import evaluate

    with pytest.raises(PocketsizeError, match="gpt2 model .* cannot do extractive-qa"):
        evaluate({"gpt2": teacher}, make_qa_dataset(2, 2, 2), task="extractive-qa")
    other = make_tiny_gpt2(tmp_path / "s", words=["x", "y", "z"])
    with pytest.raises(PocketsizeError, match="different vocabularies"):
        distill(teacher, lm_data(8, 2, 2), str(other), tmp_path / "out", task="causal-lm",
                max_length=LM_MAX_LENGTH, **QUICK_GENERATIVE)  # fmt: skip
    assert not (tmp_path / "out").exists()
    model, _ = load_generator(teacher, "causal-lm")
    with pytest.raises(PocketsizeError, match="exceeds the model's 64 positions"):
        check_generation_settings(model, {"max_length": 500})
    onnx_dir = export_generative(teacher, tmp_path / "onnx")
    ort_model, tok = load_generator(onnx_dir, "causal-lm")
    with pytest.raises(PocketsizeError, match="output_attentions=True: the exported ONNX graph"):
        generate(ort_model, ["the film"], tok, output_attentions=True)
