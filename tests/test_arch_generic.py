"""Any PyTorch classifier through the generic adapter: a digits CNN teacher distilled into an
MLP student (scikit-learn's bundled 8x8 digits), exported, quantized, evaluated as usual."""

from __future__ import annotations

import json

import pytest
import torch
from zoo import EVAL_QUICK, QUICK_DIGITS, assert_decreased, digits_dataset, loss_recorder

from pocketsize.errors import PocketsizeError

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def digits():
    return digits_dataset()


def test_generic_digits_cnn_to_mlp_distill_export_quantize_eval(tmp_path, digits):
    from pocketsize.distill import distill, finetune
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.formats.module_dir import load_module_dir
    from pocketsize.quantize import quantize
    from pocketsize.zoo.digits import DigitsCNN, DigitsMLP

    assert len(digits["train"]) + len(digits["validation"]) + len(digits["test"]) == 1797
    torch.manual_seed(0)
    # ps.finetune / ps.distill hand array data to the generic module trainer
    teacher = finetune(DigitsCNN(channels=8, hidden=32), digits, tmp_path / "cnn",
                       max_steps=120, learning_rate=3e-3, **QUICK_DIGITS)  # fmt: skip
    record, losses = loss_recorder()
    student = distill(
        teacher,
        digits,
        DigitsMLP(hidden=32),
        tmp_path / "mlp",
        losses={"kl": 1.0, "ce": 0.5},
        max_steps=150,
        learning_rate=5e-3,
        callbacks=[record],
        **QUICK_DIGITS,
    )
    assert_decreased(losses)
    config = json.loads((student / "config.json").read_text())
    assert config["pocketsize_class"] == "pocketsize.zoo.digits:DigitsMLP"
    assert config["num_labels"] == 10 and config["task"] == "array-classification"
    stage = json.loads((student / "stage.json").read_text())
    assert stage["stage"] == "distill" and stage["config"]["losses"] == {"kl": 1.0, "ce": 0.5}

    assert load_module_dir(student).config == {"hidden": 32, "num_labels": 10, "in_features": 64}
    x = torch.tensor(digits["test"][:4]["pixel_values"])
    # the module directory exports with its config (labels) beside the graph
    onnx_dir = export(student, tmp_path / "onnx", example_inputs={"pixel_values": x})
    assert json.loads((onnx_dir / "stage.json").read_text())["parity"]["max_abs_diff"] < 1e-4
    assert json.loads((onnx_dir / "stage.json").read_text())["task"] == "array-classification"
    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8")

    report = evaluate(
        {"cnn": teacher, "mlp": student, "onnx": onnx_dir, "int8": int8_dir},
        digits,
        reference="mlp",
        **EVAL_QUICK,
    )
    report.save(tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    v = metrics["variants"]
    assert metrics["task"] == "array-classification"
    assert metrics["labels"] == [str(i) for i in range(10)]
    assert v["cnn"]["metric"]["value"] > 0.8
    assert v["mlp"]["metric"]["value"] > 0.8
    assert v["mlp"]["params"] < v["cnn"]["params"]
    assert v["onnx"]["kind"] == "onnx" and v["onnx"]["agreement"] == 1.0
    assert v["onnx"]["fidelity"]["max_abs_logit_diff"] < 1e-4
    assert v["int8"]["agreement"] > 0.9
    assert v["int8"]["size_bytes"] < v["onnx"]["size_bytes"]
    assert (tmp_path / "report" / "report.md").is_file()


def test_generic_module_dir_refuses_unregistered_classes(tmp_path):
    from pocketsize.formats.module_dir import save_module_dir

    with pytest.raises(PocketsizeError, match="not a registered module"):
        save_module_dir(torch.nn.Linear(2, 2), tmp_path / "m")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"pocketsize_module": "os.system"}')
    from pocketsize.formats.module_dir import load_module_dir

    with pytest.raises(PocketsizeError, match="no class is registered"):
        load_module_dir(tmp_path / "x")


def test_generic_label_count_mismatch_is_caught_before_training(tmp_path, digits):
    from pocketsize.distill import finetune
    from pocketsize.zoo.digits import DigitsMLP

    with pytest.raises(PocketsizeError, match="outputs 3 logits but the data has 10 labels"):
        finetune(DigitsMLP(num_labels=3), digits, tmp_path / "m", max_steps=1, **QUICK_DIGITS)
    assert not (tmp_path / "m").exists()


def test_generic_teacher_can_be_any_callable_from_a_batch_to_logits(tmp_path, digits):
    """A plain function (no nn.Module) teaches; the student is a registered module."""
    import json

    from pocketsize.distill import distill, finetune
    from pocketsize.zoo.digits import DigitsMLP

    def pixel_sum_teacher(pixel_values):  # bright images -> high digits: a toy rule
        brightness = pixel_values.flatten(1).mean(1, keepdim=True)
        return torch.cat([brightness * k for k in range(10)], dim=1) * 10

    out = distill(pixel_sum_teacher, digits, DigitsMLP(hidden=8), tmp_path / "s",
                  losses={"kl": 1.0}, max_steps=5, **QUICK_DIGITS)  # fmt: skip
    assert json.loads((out / "stage.json").read_text())["stage"] == "distill"
    with pytest.raises(PocketsizeError, match="not a registered module"):
        finetune(torch.nn.Linear(64, 10), digits, tmp_path / "x", max_steps=1, **QUICK_DIGITS)
    assert not (tmp_path / "x").exists()
