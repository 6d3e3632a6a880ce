"""XLNet, ERNIE, DistilBERT, ModernBERT, DeBERTa-v3 and MPNet classification on tiny random configs
through every stage (optimum has no exporter for XLNet or ERNIE: their export takes the
torch.onnx fallback), and the hidden-state and attention losses on the 2026 encoders."""

from __future__ import annotations

import pytest
from _arch_encoders import classifier_through_every_stage
from zoo import QUICK_LOGGED, make_base, make_cls_dataset

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")


@pytest.mark.parametrize(
    "arch", ["xlnet", "ernie", "distilbert", "modernbert", "deberta-v2", "mpnet"]
)
def test_classifier_finetune_distill_export_quantize_eval(arch, tmp_path):
    classifier_through_every_stage(arch, tmp_path, make_cls_dataset(n_train=96))


@pytest.mark.parametrize("arch", ["distilbert", "modernbert", "deberta-v2", "mpnet"])
@pytest.mark.parametrize("student", ["truncate:0", "config:layers=1"])
def test_students_learn_hidden_states_and_attentions(arch, student, tmp_path):
    """The hidden-state and attention losses (TinyBERT) on each encoder's own outputs, for a
    truncated and a smaller-config student (ModernBERT falls back to eager attention to
    return its attention maps)."""
    import json

    from transformers import TrainerCallback

    from pocketsize.distill import distill, finetune

    seen: list[dict] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                seen.append(dict(logs))

    data = make_cls_dataset(n_train=96)
    base = make_base(tmp_path / "base", arch)
    teacher = finetune(base, data, tmp_path / "teacher", max_steps=20, learning_rate=3e-3,
                       **QUICK_LOGGED)  # fmt: skip
    out = distill(
        teacher, data, student, tmp_path / "student",
        losses={"kl": 1.0, "hidden": 1.0, "attention": 1.0}, max_steps=8, learning_rate=1e-3,
        callbacks=[Record()], **QUICK_LOGGED,
    )  # fmt: skip
    assert json.loads((out / "stage.json").read_text())["config"]["layer_pairs"]
    attention = [entry["loss_attention_kl"] for entry in seen]
    hidden = [entry["loss_hidden_mse"] for entry in seen]
    assert len(attention) == 8 and all(a >= 0 for a in attention)
    if student.startswith("config"):  # layer 0 learns from teacher layer 1: a real gap
        assert attention[0] > 1e-4 and hidden[0] > 1e-4
