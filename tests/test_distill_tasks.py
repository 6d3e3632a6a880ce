"""One trainer for every task: GPT-2 (causal LM), T5 (seq2seq) and a plain PyTorch classifier
(digits) resume after an interruption to the same weights as an uninterrupted run, validate at
the end of every epoch and log each loss, exactly as the encoder chain does; a recipe runs a
causal-LM chain end to end."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback
from zoo import (
    LM_MAX_LENGTH,
    T5_MAX_LENGTH,
    digits_dataset,
    lm_data,
    make_qa_dataset,
    make_tiny_gpt2,
    make_tiny_t5,
)

from pocketsize.errors import PocketsizeError

pytestmark = pytest.mark.usefixtures("single_thread")


def _gpt2(tmp_path):
    teacher = make_tiny_gpt2(tmp_path / "gpt2")
    return (
        teacher,
        lm_data(32, 8, 8),
        "truncate:0",
        dict(task="causal-lm", max_length=LM_MAX_LENGTH),
    )


def _t5(tmp_path):
    teacher = make_tiny_t5(tmp_path / "t5")
    data = make_qa_dataset(n_train=32, n_val=4, n_test=4)
    return teacher, data, "truncate:0", dict(task="seq2seq", max_length=T5_MAX_LENGTH)


def _digits(tmp_path):
    from pocketsize.zoo.digits import DigitsCNN, DigitsMLP

    data = digits_dataset(n_train=32, n_val=16)
    torch.manual_seed(0)
    teacher = DigitsCNN(channels=4, hidden=8)

    def student():
        torch.manual_seed(1)  # the same initial student in every run
        return DigitsMLP(hidden=8)

    return teacher, data, student, {}


CASES = {"gpt2": _gpt2, "t5": _t5, "digits": _digits}


class Interrupt(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == 4:
            raise KeyboardInterrupt


class Seen(TrainerCallback):
    def __init__(self):
        self.steps, self.logged = [], set()

    def on_step_begin(self, args, state, control, **kw):
        self.steps.append(state.global_step)

    def on_log(self, args, state, control, logs=None, **kw):
        self.logged |= set(logs or {})


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("case", list(CASES))
def test_every_task_resumes_validates_each_epoch_and_logs_each_loss(case, tmp_path):
    from pocketsize.distill import distill

    teacher, data, student, extra = CASES[case](tmp_path)

    def fresh():  # an in-memory student is built anew for each run, like a spec string is
        return student() if callable(student) else student

    # 32 examples in batches of 8: epochs end at steps 4 and 6 (max_steps)
    kw = dict(max_steps=6, save_steps=2, batch_size=8, logging_steps=1, progress=False, **extra)
    out = tmp_path / "student"
    with pytest.raises(KeyboardInterrupt):
        distill(teacher, data, fresh(), out, callbacks=[Interrupt()], **kw)
    assert not out.exists() and (tmp_path / ".student.checkpoints" / "checkpoint-4").is_dir()

    seen = Seen()
    distill(teacher, data, fresh(), out, resume=True, callbacks=[seen], **kw)
    assert seen.steps == [4, 5], "training continues at step 5, not from the start"
    stage = json.loads((out / "stage.json").read_text())
    assert stage["steps"] == 6 and stage["resumed_from"].endswith("checkpoint-4")
    task = stage["task"]
    from pocketsize.tasks import get_task

    metric = get_task(task).primary_metric
    assert [r["step"] for r in stage["validation_per_epoch"]] == [6]
    assert metric in stage["validation_per_epoch"][0] and metric in stage["validation"]
    assert f"eval_{metric}" in seen.logged
    losses = {f"loss_{n}" for n in stage["config"]["losses"]}
    assert losses <= seen.logged, f"each loss is logged: {losses - seen.logged} missing"

    straight = distill(teacher, data, fresh(), tmp_path / "straight", **kw)
    record = json.loads((straight / "stage.json").read_text())
    assert [r["step"] for r in record["validation_per_epoch"]] == [4, 6]
    resumed, uninterrupted = _weights(out), _weights(straight)
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in resumed.items():
        assert torch.allclose(tensor, uninterrupted[name], atol=1e-5), name


def test_token_losses_need_one_vocabulary_and_no_cache(tmp_path):
    from pocketsize.distill import distill

    # a seq2seq teacher reads the targets too, which the cache key does not cover (a causal
    # LM's teacher is cached as its top k: test_top_k_cache.py)
    t5, data, student, kw = _t5(tmp_path)
    with pytest.raises(PocketsizeError, match="cache does not hold seq2seq outputs"):
        distill(t5, data, student, tmp_path / "o", cache=True, max_steps=1, progress=False, **kw)
    teacher = make_tiny_gpt2(tmp_path / "gpt2")
    with pytest.raises(PocketsizeError, match="the bilstm student does not fit causal-lm"):
        distill(teacher, lm_data(8, 2, 2), "bilstm", tmp_path / "o", task="causal-lm")
    assert not (tmp_path / "o").exists()


def test_a_recipe_runs_a_causal_lm_chain(tmp_path):
    from pocketsize.recipe import run_recipe

    teacher = make_tiny_gpt2(tmp_path / "gpt2")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in lm_data(96, 0, 0)["train"]["text"])
    )
    recipe = {
        "name": "tiny-lm",
        "task": "causal-lm",
        "data": str(corpus),
        "teacher": {
            "model": str(teacher),
            "finetune": {"max_steps": 4, "batch_size": 16, "max_length": 32},
        },
        "student": {"init": "truncate", "layers": [0]},
        "distill": {"max_steps": 4, "batch_size": 16, "max_length": 32},
        "export": {},
        "quantize": {"method": "dynamic"},
        "eval": {"reference": "student", "latency": False, "memory": False},
    }
    report = run_recipe(recipe, run_dir=tmp_path / "run", log=lambda line: None)
    metrics = report.metrics
    assert metrics["task"] == "causal-lm" and metrics["final"] == "int8"
    assert list(metrics["variants"]) == ["teacher", "student", "onnx", "int8"]
    assert metrics["variants"]["onnx"]["agreement"] == 1.0
    stage = json.loads((tmp_path / "run" / "student" / "stage.json").read_text())
    assert stage["config"]["losses"] == {"token_kl": 0.5, "token_ce": 0.5}
