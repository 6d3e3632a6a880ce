"""Where eval runs: the CPU by default, the GPU when asked and there is one, a clear fallback or
refusal when there is none. CI has no GPU, so the GPU branches of these tests run only where
PyTorch sees one (benchmarks/gpu_check.sh exercises them end to end there)."""

from __future__ import annotations

import json

import pytest
import torch
from _eval_helpers import export_onnx, make_trained_looking_bert

from pocketsize.errors import PocketsizeError
from pocketsize.eval import evaluate
from pocketsize.runtime.devices import CPU, gpu_info, provider_note, resolve_device
from pocketsize.runtime.runners import TorchRunner

pytestmark = pytest.mark.usefixtures("single_thread")
HAS_CUDA = torch.cuda.is_available()
FAST = dict(latency=False, memory=False, progress=False, threads=1)


def test_cpu_is_the_default_and_unknown_devices_are_refused():
    assert resolve_device() is CPU and resolve_device("cpu") is CPU
    assert CPU.ort_providers == ("CPUExecutionProvider",) and not CPU.on_gpu
    with pytest.raises(PocketsizeError, match=r"device must be one of cpu, cuda, auto, not 'gpu'"):
        resolve_device("gpu")


def test_cuda_and_auto_follow_what_pytorch_sees():
    auto = resolve_device("auto")
    if HAS_CUDA:
        assert auto.torch_device == "cuda" and resolve_device("cuda").on_gpu
        assert gpu_info()["name"]
        return
    assert auto.torch_device == "cpu" and auto.ort_providers == ("CPUExecutionProvider",)
    assert auto.notes == ("no CUDA GPU is visible: every variant ran on the CPU",)
    assert gpu_info() is None
    with pytest.raises(
        PocketsizeError, match=r"device='cuda' but PyTorch sees no CUDA GPU.*'auto'"
    ):
        resolve_device("cuda")


def test_a_silent_provider_fallback_is_named():
    asked = ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert provider_note(asked, list(asked), "int8") == ""
    note = provider_note(asked, ["CPUExecutionProvider"], "int8")
    assert "variant 'int8'" in note and "ran it on CPUExecutionProvider" in note


def test_the_torch_runner_feeds_the_device_its_model_is_on(tiny_cls_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_cls_dir)
    where = "cuda" if HAS_CUDA else "cpu"
    runner = TorchRunner(model.to(where), ("logits",))
    assert runner.device.type == where and runner.runs_on.startswith(where)
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]).numpy()}
    prepared = runner.prepare(batch)
    assert prepared["input_ids"].device.type == where
    logits = runner.forward(prepared)["logits"]
    assert logits.shape == (1, 2) and logits.dtype.name == "float32"  # numpy, on the host


@pytest.fixture(scope="module")
def torch_and_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("devices")
    teacher = make_trained_looking_bert(root / "teacher")
    return {"teacher": teacher, "onnx": export_onnx(teacher, root / "onnx")}


def test_eval_records_where_each_variant_ran(torch_and_onnx, tiny_cls_data, tmp_path):
    report = evaluate(torch_and_onnx, tiny_cls_data, device="auto", **FAST)
    placed = report.metrics["settings"]["device"]
    assert placed["requested"] == "auto"
    if HAS_CUDA:
        assert report["teacher"]["runs_on"].startswith("cuda")
        assert report.metrics["machine"]["gpu"]["name"]
    else:
        assert report["teacher"]["runs_on"] == "cpu"
        assert report["onnx"]["runs_on"] == "CPUExecutionProvider"
        assert placed["notes"] == ["no CUDA GPU is visible: every variant ran on the CPU"]
        assert report.metrics["machine"]["gpu"] is None
        assert "no CUDA GPU is visible" in report.to_markdown(images=False)
    assert report["onnx"]["agreement"] == 1.0  # the same predictions wherever it ran
    out = report.save(tmp_path / "r")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["variants"]["onnx"]["runs_on"] == report["onnx"]["runs_on"]


def test_a_plain_cpu_eval_says_nothing_about_devices(torch_and_onnx, tiny_cls_data):
    report = evaluate(torch_and_onnx, tiny_cls_data, **FAST)
    assert report.metrics["settings"]["device"]["notes"] == []
    assert "Ran on:" not in report.to_markdown(images=False)
    assert {report[n]["runs_on"] for n in torch_and_onnx} == {"cpu", "CPUExecutionProvider"}


@pytest.mark.skipif(HAS_CUDA, reason="the refusal is for machines without a GPU")
def test_eval_on_cuda_without_a_gpu_fails_before_any_work(
    torch_and_onnx, tiny_cls_data, tmp_path, capsys
):
    with pytest.raises(PocketsizeError, match="PyTorch sees no CUDA GPU"):
        evaluate(torch_and_onnx, tiny_cls_data, device="cuda", **FAST)
    from pocketsize.cli import main

    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood film,1\nbad film,0\n")
    code = main(
        ["eval", "--model", f"t={torch_and_onnx['teacher']}", "--data", str(data), "--split",
         "all", "--out", str(tmp_path / "out"), "--device", "cuda"]
    )  # fmt: skip
    assert code != 0 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pocketsize: error: device='cuda' but"), err
