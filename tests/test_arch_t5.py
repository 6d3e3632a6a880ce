"""T5 (seq2seq, text-to-text QA) on a tiny random config: fine-tune, distil into fewer encoder and
decoder layers with teacher forcing, export encoder + decoders via optimum (generation parity),
dynamic int8 of every graph, evaluation by EM / token F1 and agreement with the teacher."""

from __future__ import annotations

import json

import pytest
from zoo import (
    EVAL_QUICK,
    QUICK_GENERATIVE,
    T5_MAX_LENGTH,
    assert_decreased,
    loss_recorder,
    make_qa_dataset,
    make_tiny_t5,
)

from pocketsize.errors import PocketsizeError

pytestmark = pytest.mark.usefixtures("single_thread")


def test_t5_finetune_distill_export_quantize_eval(tmp_path):
    from transformers import AutoConfig

    from pocketsize.distill import distill, finetune
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.quantize import quantize

    data = make_qa_dataset(n_train=96, n_val=8, n_test=16)
    base = make_tiny_t5(tmp_path / "base")
    teacher = finetune(base, data, tmp_path / "teacher", task="seq2seq", max_steps=120,
                       learning_rate=5e-3, max_length=T5_MAX_LENGTH,
                       **QUICK_GENERATIVE)  # fmt: skip

    record, losses = loss_recorder()
    student = distill(
        teacher, data, "truncate:0", tmp_path / "student", task="seq2seq",
        losses={"token_kl": 1.0, "token_ce": 0.5}, max_steps=40, learning_rate=5e-3,
        callbacks=[record], max_length=T5_MAX_LENGTH, **QUICK_GENERATIVE,
    )  # fmt: skip
    assert_decreased(losses)
    config = AutoConfig.from_pretrained(student)
    assert config.num_layers == 1 and config.num_decoder_layers == 1

    onnx_dir = export(student, tmp_path / "onnx")  # ps.export sees a T5 generation head
    parity = json.loads((onnx_dir / "stage.json").read_text())["parity"]
    assert parity["same_tokens"] and parity["max_abs_logit_diff"] < 1e-4
    assert {"encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"} <= set(
        p.name for p in onnx_dir.glob("*.onnx")
    )

    # the exported directory is a drop-in text2text-generation pipeline
    from pocketsize.eval import load_pipeline

    question = "question: which word is good context: the film was great"
    from_onnx = load_pipeline(onnx_dir)(question, max_new_tokens=4)[0]["generated_text"]
    assert from_onnx == load_pipeline(student)(question, max_new_tokens=4)[0]["generated_text"]

    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8")  # every graph
    assert (int8_dir / "decoder_with_past_model_quantized.onnx").is_file()

    report = evaluate(
        {"teacher": teacher, "student": student, "onnx": onnx_dir, "int8": int8_dir},
        data["test"], reference="student", task="seq2seq", **EVAL_QUICK,
    )  # fmt: skip
    report.save(tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    v = metrics["variants"]
    assert metrics["task"] == "seq2seq"
    assert set(v["teacher"]["metrics"]) == {"exact_match", "f1"}
    # the exported student generates exactly what the PyTorch student generates
    assert v["onnx"]["agreement"] == 1.0 and v["onnx"]["fidelity"]["f1_vs_reference"] == 1.0
    assert v["teacher"]["metrics"]["f1"] > 0.5
    # token F1 against the reference's generations counts partial matches: never below the
    # exact-match agreement
    assert v["int8"]["agreement"] <= v["int8"]["fidelity"]["f1_vs_reference"] <= 1


def test_t5_bad_input_is_one_clear_error(tmp_path):
    from pocketsize.export.generative import export_generative
    from pocketsize.tasks import check_architecture

    with pytest.raises(PocketsizeError, match="t5 model .* cannot do text-classification"):
        check_architecture("t5", "text-classification")
    with pytest.raises(PocketsizeError, match="bert model .* cannot do seq2seq"):
        check_architecture("bert", "seq2seq")
    base = make_tiny_t5(tmp_path / "t5")
    with pytest.raises(PocketsizeError, match="t5 model .* cannot do causal-lm"):
        export_generative(base, tmp_path / "out", task="causal-lm")
    assert not (tmp_path / "out").exists()
    from pocketsize.quantize import quantize

    graphs = tmp_path / "graphs"  # the file names are what quantize() checks first
    graphs.mkdir()
    for name in ("encoder_model.onnx", "decoder_model.onnx"):
        (graphs / name).write_bytes(b"")
    with pytest.raises(PocketsizeError, match="not supported for encoder-decoder exports"):
        quantize(graphs, method="static", out=tmp_path / "q")
