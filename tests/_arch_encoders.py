"""XLNet, ERNIE, DistilBERT, ModernBERT, DeBERTa-v3 and MPNet classifiers on tiny random configs: the
chain every stage runs.

optimum-onnx does not know XLNet or ERNIE, so their export takes the torch.onnx fallback; the
others go through optimum.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from zoo import EVAL_QUICK, QUICK_LOGGED, assert_decreased, loss_recorder, make_base

from pocketsize.errors import PocketsizeError

LABELS = ["negative", "positive"]
EXPORTER = {
    "xlnet": "torch", "ernie": "torch", "distilbert": "optimum", "modernbert": "optimum",
    "deberta-v2": "optimum", "mpnet": "optimum",
}  # fmt: skip
# what structured pruning can remove from each (prune/layouts/); it does not know XLNet
PRUNING = {
    "ernie": dict(heads=0.5, ffn=0.5),
    "distilbert": dict(heads=0.5, ffn=0.5),
    # fewer heads only with the hidden size they leave
    "modernbert": dict(heads=0.5, width=0.5, ffn=0.5),
    "deberta-v2": dict(heads=0.5, width=0.5, ffn=0.5),
    "mpnet": dict(heads=0.5, width=0.5, ffn=0.5),
}


def classifier_through_every_stage(arch, tmp_path, data):
    """Fine-tune, distil, export, quantize and evaluate a tiny `arch` classifier."""
    from transformers import AutoConfig

    from pocketsize.distill import distill, finetune
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.prune import prune
    from pocketsize.quantize import quantize

    base = make_base(tmp_path / "base", arch)

    # fine-tune: a fresh classification head on the base encoder, labels from the data
    teacher = finetune(
        base, data, tmp_path / "teacher", max_steps=150, learning_rate=3e-3, **QUICK_LOGGED
    )
    config = AutoConfig.from_pretrained(teacher)
    assert config.model_type == arch
    assert config.architectures[0].endswith("ForSequenceClassification")
    assert [config.id2label[i] for i in range(2)] == LABELS

    # distil into a one-layer student of the same architecture (logits + hidden states)
    record, losses = loss_recorder()
    student = distill(
        teacher,
        data,
        "config:layers=1",
        tmp_path / "student",
        losses={"kl": 1.0, "ce": 0.5, "hidden": 1.0},
        max_steps=40,
        learning_rate=1e-3,
        callbacks=[record],
        **QUICK_LOGGED,
    )
    assert_decreased(losses)
    stage = json.loads((student / "stage.json").read_text())
    assert stage["config"]["layer_pairs"] == [[0, 1]]
    assert AutoConfig.from_pretrained(student).model_type == arch

    if arch in PRUNING:
        settings = PRUNING[arch]
        pruned = prune(student, data, **settings, out=tmp_path / "pruned", verbose=False)
        record = json.loads((pruned / "stage.json").read_text())
        assert record["ffn"]["intermediate_size_after"] == 19  # 37 - round(18.5)
        assert ("heads" in record) == ("heads" in settings)
        if "heads" in settings:  # 2 of 4 heads: in pruned_heads, or the config's head count
            pruned_config = AutoConfig.from_pretrained(pruned)
            assert record["heads"]["kept_per_layer"] == [2]
            assert pruned_config.pruned_heads or pruned_config.num_attention_heads == 2
        to_export = pruned
    else:
        with pytest.raises(PocketsizeError, match="does not support architecture 'xlnet'"):
            prune(student, data, heads=0.5, out=tmp_path / "pruned", verbose=False)
        to_export = student

    # export: the torch.onnx fallback, checked against PyTorch on several shapes
    onnx_dir = export(to_export, tmp_path / "onnx")
    manifest = json.loads((onnx_dir / "stage.json").read_text())
    assert manifest["exporter"] == EXPORTER[arch] and manifest["model_type"] == arch
    parity = json.loads((onnx_dir / "stage.json").read_text())["parity"]
    assert parity["max_abs_diff"] < 1e-4

    # quantize: dynamic int8; its logits stay close to the float graph's
    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8")
    assert (int8_dir / "model_quantized.onnx").is_file()

    report = evaluate(
        {"teacher": teacher, "student": to_export, "onnx": onnx_dir, "int8": int8_dir},
        data["test"],
        reference="student",
        **EVAL_QUICK,
    )
    report.save(tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    variants = metrics["variants"]
    assert metrics["task"] == "text-classification"
    assert variants["onnx"]["fidelity"]["max_abs_logit_diff"] < 1e-4
    assert variants["onnx"]["agreement"] == 1.0
    assert variants["int8"]["fidelity"]["max_abs_logit_diff"] < 0.25
    assert variants["int8"]["agreement"] >= 0.9
    # the weights are stored in 8 bits (the file of a model this tiny barely shrinks: its node
    # names weigh as much as its weights); int8 or uint8 as the target CPU wants (uint8 on a
    # CPU with AVX2 but no AVX-512 VNNI)
    graph = onnx.load(str(int8_dir / "model_quantized.onnx")).graph
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    assert any(i.data_type in eight_bit and i.dims for i in graph.initializer)
    assert any(n.op_type == "MatMulInteger" for n in graph.node)
    # the distilled student learned the task, not just the teacher's noise
    assert variants["student"]["metric"]["value"] > 0.6
    assert np.isfinite(variants["teacher"]["fidelity"]["kl"])
    assert (tmp_path / "report" / "report.md").is_file()
