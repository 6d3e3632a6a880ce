"""The packaged MiniLM-L6 on rt-polarity: PyTorch and ONNX agree through the whole harness."""

from __future__ import annotations

import json

import pytest
from _eval_helpers import export_onnx

from pocketsize.eval import evaluate


@pytest.mark.e2e
def test_minilm_pytorch_and_onnx_on_rt_polarity(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import pocketsize as ps

    source = ps.fetch("minilm-l6")
    data = ps.load_dataset("rt-polarity")
    names = data["test"].features["label"].names
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(names), id2label=dict(enumerate(names))
    )
    teacher = tmp_path / "teacher"
    model.save_pretrained(teacher)
    AutoTokenizer.from_pretrained(source).save_pretrained(teacher)
    onnx_dir = export_onnx(teacher, tmp_path / "onnx")
    report = evaluate(
        {"teacher": teacher, "onnx": onnx_dir},
        data,
        max_examples=64,
        batch_sizes=(1, 16),
        latency_examples=32,
        repeats=1,
        memory=False,
        threads=2,
        progress=False,
    )
    onnx = report["onnx"]
    assert onnx["agreement"] == 1.0 and onnx["fidelity"]["max_abs_logit_diff"] < 1e-3
    assert onnx["params"] == pytest.approx(report["teacher"]["params"], rel=0.01)
    assert report["teacher"]["params"] == pytest.approx(22.7e6, rel=0.02)
    assert report["teacher"]["size_bytes"] > 80e6
    out = report.save(tmp_path / "report")
    assert json.loads((out / "metrics.json").read_text())["settings"]["examples"] == 64
