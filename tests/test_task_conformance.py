"""Every registered task through the stages on its tiny model from tests/zoo.py: distil (two
steps) -> export -> dynamic int8 -> evaluate. Each stage writes its output, and the report
scores every variant with the task's primary metric. A task registered without a tiny model in
the zoo fails here, by name."""

from __future__ import annotations

import json
import math

import pytest
from zoo import EVAL_QUICK, QUICK, ZOO

from pocketsize.tasks import get_task, task_names

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")


def test_the_zoo_has_a_tiny_model_for_every_registered_task_and_no_other():
    missing = sorted(set(task_names()) - set(ZOO))
    assert not missing, f"tests/zoo.py's ZOO has no tiny model for {missing}: add one"
    assert sorted(ZOO) == sorted(task_names()), "ZOO names a task that is not registered"


@pytest.mark.parametrize("task", task_names())
def test_every_task_distils_exports_quantizes_and_evaluates(task, tmp_path):
    from pocketsize.distill import distill
    from pocketsize.eval import evaluate
    from pocketsize.export import export, read_record
    from pocketsize.quantize import quantize

    assert task in ZOO, f"tests/zoo.py's ZOO has no tiny model for {task}: add one"
    tiny = ZOO[task](tmp_path / "zoo")
    assert tiny.task == task

    student = distill(
        tiny.teacher, tiny.data, tiny.student, tmp_path / "student", task=task, max_steps=2,
        **tiny.train_options, **QUICK,
    )  # fmt: skip
    stage = json.loads((student / "stage.json").read_text())
    assert (stage["stage"], stage["task"], stage["steps"]) == ("distill", task, 2)
    assert (student / "config.json").is_file() and (student / "model.safetensors").is_file()

    onnx_dir = export(student, tmp_path / "onnx", **tiny.export_options)
    assert read_record(onnx_dir)["task"] == task
    assert list(onnx_dir.glob("*.onnx")) and read_record(onnx_dir)["parity"]["ok"]

    int8_dir = quantize(onnx_dir, method="dynamic", out=tmp_path / "int8", task=task)
    assert read_record(int8_dir)["task"] == task
    assert list(int8_dir.glob("*_quantized.onnx"))

    variants = {"teacher": tiny.teacher, "student": student, "onnx": onnx_dir, "int8": int8_dir}
    report = evaluate(variants, tiny.data, task=task, reference="student", **EVAL_QUICK)
    report.save(tmp_path / "report")
    assert (tmp_path / "report" / "report.md").is_file()
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["task"] == task and list(metrics["variants"]) == list(variants)
    primary = get_task(task).primary_metric
    for name, record in metrics["variants"].items():
        assert record["metric"]["name"] == primary, name
        value = record["metric"]["value"]
        assert math.isfinite(value) and record["metrics"][primary] == value, (name, record)
