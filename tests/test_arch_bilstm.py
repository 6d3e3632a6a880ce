"""The BiLSTM student (Tang et al. 2019) through distill -> export -> quantize -> eval.

The student directory is config.json + model.safetensors + tokenizer; every stage loads it
with pocketsize's own loader (never pickles).
"""

from __future__ import annotations

import json

import pytest
from zoo import (
    EVAL_QUICK,
    QUICK_LOGGED,
    assert_decreased,
    loss_recorder,
    make_cls_dataset,
    make_tiny_bert,
)

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")


def test_bilstm_student_distill_export_quantize_eval(tmp_path):
    from pocketsize.distill import distill, finetune, load_bilstm
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.quantize import quantize

    data = make_cls_dataset(n_train=96)
    base = make_tiny_bert(tmp_path / "base", seed=3)
    teacher = finetune(
        base, data, tmp_path / "teacher", max_steps=150, learning_rate=3e-3, **QUICK_LOGGED
    )

    record, losses = loss_recorder()
    student_dir = distill(
        teacher,
        data,
        "bilstm:embed=16,hidden=16",
        tmp_path / "student",
        losses={"kl": 1.0, "ce": 0.5},
        max_steps=60,
        learning_rate=5e-3,
        callbacks=[record],
        **QUICK_LOGGED,
    )
    assert_decreased(losses)
    config = json.loads((student_dir / "config.json").read_text())
    assert config["model_type"] == "pocketsize-bilstm"
    assert not list(student_dir.glob("*.bin")) and not list(student_dir.glob("*.pt"))

    # export the directory: pocketsize's loader, example ids from its tokenizer, the
    # SequenceClassifierOutput's logits, config + tokenizer copied beside the graph
    onnx_dir = export(student_dir, tmp_path / "onnx")
    assert json.loads((onnx_dir / "stage.json").read_text())["parity"]["max_abs_diff"] < 1e-4
    manifest = json.loads((onnx_dir / "stage.json").read_text())
    assert manifest["inputs"] == ["input_ids", "attention_mask"] and manifest["outputs"] == [
        "logits"
    ]
    assert manifest["task"] == "text-classification"
    assert (onnx_dir / "tokenizer.json").is_file()
    assert load_bilstm(student_dir).num_parameters() > 0

    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8")

    report = evaluate(
        {"teacher": teacher, "bilstm": student_dir, "onnx": onnx_dir, "int8": int8_dir},
        data["test"],
        reference="bilstm",
        **EVAL_QUICK,
    )
    report.save(tmp_path / "report")
    variants = json.loads((tmp_path / "report" / "metrics.json").read_text())["variants"]
    assert variants["bilstm"]["kind"] == "torch"
    assert variants["onnx"]["kind"] == "onnx"
    assert variants["onnx"]["fidelity"]["max_abs_logit_diff"] < 1e-4
    assert variants["int8"]["agreement"] >= 0.9
    assert variants["int8"]["fidelity"]["max_abs_logit_diff"] < 0.25
    assert variants["bilstm"]["metric"]["value"] > 0.6


def test_bilstm_peak_memory_child_uses_pocketsize_loader(tmp_path):
    """The peak-memory child process loads a BiLSTM directory too (no transformers Auto class)."""
    from pocketsize.distill.bilstm import BiLSTMClassifier, BiLSTMConfig
    from pocketsize.eval import evaluate
    from pocketsize.formats.module_dir import save_module_dir

    data = make_cls_dataset(n_train=8, n_val=4, n_test=8)
    tok_dir = make_tiny_bert(tmp_path / "tok")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = BiLSTMClassifier(BiLSTMConfig(vocab_size=len(tok), embed_dim=8, hidden_size=8))
    save_module_dir(model, tmp_path / "bilstm", tok, task="text-classification")
    report = evaluate(
        {"bilstm": tmp_path / "bilstm"},
        data["test"],
        latency=False,
        memory=True,
        progress=False,
        bootstrap_samples=20,
    )
    memory = report["bilstm"]["memory"]
    assert "error" not in memory, memory
    assert memory["peak_rss_bytes"] > memory["baseline_rss_bytes"] > 0
