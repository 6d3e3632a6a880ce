"""The model formats below the stages: one model-file order that every stage uses, one module-
directory format (and the 0.1 directories it still reads), one answer to "which task is this
model for"."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from pocketsize.errors import PocketsizeError


@pytest.fixture(scope="module")
def cls_onnx(tiny_cls_dir, tmp_path_factory):
    from pocketsize.export import export

    return export(tiny_cls_dir, tmp_path_factory.mktemp("formats") / "onnx", optimize=False)


def test_every_stage_takes_the_same_file_of_a_directory_without_manifest(cls_onnx, tmp_path):
    from pocketsize.eval import resolve_variant
    from pocketsize.export import find_onnx_file
    from pocketsize.formats.onnx_dir import model_file
    from pocketsize.quantize import quantize

    both = tmp_path / "both"
    shutil.copytree(cls_onnx, both)
    (both / "stage.json").unlink()
    shutil.copy2(both / "model.onnx", both / "model_quantized.onnx")
    assert model_file(both) == both / "model_quantized.onnx"
    assert find_onnx_file(both) == both / "model_quantized.onnx"
    assert resolve_variant("v", both).path == both / "model_quantized.onnx"
    # quantize takes the same file, sees it is quantized already and names the fix
    with pytest.raises(PocketsizeError, match="already quantized.*model.onnx"):
        quantize(both, out=tmp_path / "q")
    assert (quantize(both / "model.onnx", out=tmp_path / "q") / "model_quantized.onnx").is_file()
    # the manifest's choice wins over the order
    (both / "stage.json").write_text(
        json.dumps({"schema": 1, "stage": "export", "file": "model.onnx"})
    )
    assert model_file(both) == resolve_variant("v", both).path == both / "model.onnx"


def test_a_truncated_graph_is_refused_by_eval_as_by_quantize(cls_onnx, tmp_path, tiny_cls_data):
    from pocketsize.eval import evaluate

    cut = tmp_path / "cut"
    shutil.copytree(cls_onnx, cut)
    (cut / "model.onnx").write_bytes((cls_onnx / "model.onnx").read_bytes()[:3000])
    with pytest.raises(PocketsizeError, match="truncated or corrupted") as e:
        evaluate({"cut": cut}, tiny_cls_data["test"], latency=False, memory=False)
    assert "\n" not in str(e.value)


def test_quantize_says_export_first_for_a_pytorch_directory(tiny_cls_dir, tmp_path):
    from pocketsize.quantize import quantize

    with pytest.raises(PocketsizeError, match="PyTorch model directory; export it first"):
        quantize(tiny_cls_dir, out=tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_module_directories_of_pocketsize_0_1_still_load(tmp_path):
    from safetensors.torch import save_model

    from pocketsize.distill.bilstm import BiLSTMClassifier, BiLSTMConfig
    from pocketsize.formats.module_dir import load_module_dir, save_module_dir
    from pocketsize.tasks import task_of_model
    from pocketsize.zoo.digits import DigitsMLP

    bilstm = BiLSTMClassifier(BiLSTMConfig(vocab_size=20, embed_dim=4, hidden_size=3)).eval()
    old = tmp_path / "bilstm-0.1"  # the config flat beside the class path
    old.mkdir()
    flat = {
        **bilstm.config.to_dict(),
        "pocketsize_class": "pocketsize.distill.bilstm:BiLSTMClassifier",
    }
    (old / "config.json").write_text(json.dumps(flat))
    save_model(bilstm, str(old / "model.safetensors"))
    ids = torch.tensor([[1, 2, 3, 0]])
    with torch.no_grad():
        want = bilstm(ids).logits
        assert torch.equal(load_module_dir(old)(ids).logits, want)
    assert task_of_model(old).name == "text-classification"

    mlp = DigitsMLP(hidden=4).eval()
    registry = tmp_path / "mlp-0.1"  # a registry name instead of a class path
    registry.mkdir()
    legacy = {"pocketsize_module": "digits-mlp", "module_config": mlp.config, "num_labels": 10}
    (registry / "config.json").write_text(json.dumps(legacy))
    save_model(mlp, str(registry / "model.safetensors"))
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_module_dir(registry)(x), mlp(x))
    assert task_of_model(registry).name == "array-classification"

    # what pocketsize writes now: one format for both, with the task it was trained for
    for model, task in ((bilstm, "text-classification"), (mlp, "array-classification")):
        out = save_module_dir(model, tmp_path / f"new-{task}", task=task)
        config = json.loads((out / "config.json").read_text())
        assert config["pocketsize_class"].startswith("pocketsize.") and "module_config" in config
        assert task_of_model(out).name == task
        assert type(load_module_dir(out)) is type(model)


def test_stage_directories_of_pocketsize_0_1_are_read_as_one_record(cls_onnx, tmp_path):
    """Before the one stage.json, an export held pocketsize.json + parity.json, a pruned model
    pruning.json, and a recipe's stage.json held the verb's own record under "metrics"."""
    from pocketsize.formats.onnx_dir import model_file
    from pocketsize.formats.records import read_record, update_record
    from pocketsize.tasks import task_of_model

    old_export = tmp_path / "onnx"
    shutil.copytree(cls_onnx, old_export)
    new_record = json.loads((old_export / "stage.json").read_text())
    (old_export / "stage.json").unlink()
    manifest = {k: v for k, v in new_record.items() if k not in ("schema", "stage", "parity")}
    shutil.copy2(old_export / "model.onnx", old_export / "model_quantized.onnx")
    manifest["file"] = "model.onnx"  # the manifest's choice beats the quantized file's name
    (old_export / "pocketsize.json").write_text(json.dumps(manifest))
    (old_export / "parity.json").write_text(json.dumps(new_record["parity"]))
    record = read_record(old_export)
    assert record["parity"] == new_record["parity"] and record["task"] == new_record["task"]
    assert model_file(old_export) == old_export / "model.onnx"
    assert task_of_model(old_export).name == new_record["task"]

    old_run_stage = tmp_path / "pruned"
    old_run_stage.mkdir()
    pruning = {"stage": "prune", "task": "text-classification", "heads": {"removed": 2}}
    recipe_record = {"stage": "pruned", "fingerprint": "f00d", "seed": 3, "config": {}}
    recipe_record["metrics"] = {"pruning": pruning}
    (old_run_stage / "pruning.json").write_text(json.dumps(pruning))
    (old_run_stage / "stage.json").write_text(json.dumps(recipe_record))
    record = read_record(old_run_stage)
    assert (record["stage"], record["heads"], record["recipe"]["fingerprint"]) == (
        "prune", {"removed": 2}, "f00d",
    )  # fmt: skip
    # a record written from now on has the schema and keeps the older parts it was read with
    assert update_record(old_run_stage, note="x") == {**record, "schema": 1, "note": "x"}
    assert json.loads((old_run_stage / "stage.json").read_text())["schema"] == 1


def test_which_task_a_model_is_for(tiny_cls_dir, tiny_qa_dir, cls_onnx, tmp_path):
    from pocketsize.tasks import task_of_model

    assert task_of_model(tiny_cls_dir).name == "text-classification"
    assert task_of_model(tiny_qa_dir).name == "extractive-qa"
    assert task_of_model(cls_onnx).name == "text-classification"  # the manifest says so
    assert task_of_model(cls_onnx / "model.onnx").name == "text-classification"
    assert task_of_model({"architectures": ["GPT2LMHeadModel"]}).name == "causal-lm"
    assert task_of_model({"architectures": ["T5ForConditionalGeneration"]}).name == "seq2seq"
    assert task_of_model({"architectures": ["SomethingElse"]}) is None
    assert task_of_model(tmp_path) is None
