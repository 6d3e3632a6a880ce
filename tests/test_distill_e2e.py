"""End to end on the real packaged model and data: fine-tune MiniLM-L6, distil a 3-layer student."""

from __future__ import annotations

import json

import pytest


@pytest.mark.e2e
def test_distil_the_packaged_minilm_for_a_few_steps(tmp_path):
    from datasets import DatasetDict
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pocketsize.assets import fetch
    from pocketsize.data import load_dataset
    from pocketsize.distill import distill, finetune
    from pocketsize.runtime.scoring import encode_split, evaluate_forward, torch_forward
    from pocketsize.tasks import get_task

    fetch("minilm-l6")  # the packaged model and data must be there: no skip hides a failure
    data = load_dataset("rt-polarity")
    small = DatasetDict(
        train=data["train"].shuffle(seed=0).select(range(192)),
        validation=data["validation"].select(range(48)),
    )
    quick = dict(batch_size=16, progress=False, logging_steps=1000)
    teacher = finetune("minilm-l6", small, tmp_path / "teacher", max_steps=4, evaluate=False,
                       **quick)  # fmt: skip
    student = distill(teacher, small, "truncate:0,2,4", tmp_path / "student",
                      losses="kl=1,ce=1,hidden=1", max_steps=3, cache_dir=tmp_path,
                      **quick)  # fmt: skip
    stage = json.loads((student / "stage.json").read_text())
    assert stage["steps"] == 3 and stage["config"]["layer_pairs"] == [[0, 0], [1, 2], [2, 4]]
    assert stage["parameters"] < stage["teacher_parameters"]
    model = AutoModelForSequenceClassification.from_pretrained(student)
    # the recorded validation accuracy is the saved student's
    task = get_task("text-classification")
    encoded = encode_split(task, small["validation"], AutoTokenizer.from_pretrained(student))
    measured = evaluate_forward(encoded, torch_forward(model, task))
    assert stage["validation"]["accuracy"] == pytest.approx(measured["accuracy"])
    assert model.config.num_hidden_layers == 3
    assert model.config.id2label == {0: "negative", 1: "positive"}
