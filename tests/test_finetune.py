"""Teacher fine-tuning and the finetune/distill CLI verbs, on tiny random models."""

from __future__ import annotations

import json

import pytest
import torch
from zoo import (
    QUICK,
    QUICK_VALIDATED,
    make_cls_dataset,
    make_qa_dataset,
    make_tokenizer,
    tiny_bert_config,
)

from pocketsize.errors import PocketsizeError

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def base_encoder(tmp_path_factory):
    """A tiny base encoder (no task head), like the packaged MiniLM."""
    from transformers import BertModel

    path = tmp_path_factory.mktemp("base")
    tok = make_tokenizer(path)
    torch.manual_seed(0)
    BertModel(tiny_bert_config(len(tok))).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data():
    return make_cls_dataset(n_train=96)


def test_finetune_trains_a_head_and_saves_labels_and_tokenizer(base_encoder, data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pocketsize.distill import finetune

    out = finetune(base_encoder, data, tmp_path / "teacher", epochs=6, learning_rate=1e-2,
                   bf16=False, **QUICK_VALIDATED)  # fmt: skip
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.label2id == {"negative": 0, "positive": 1}
    tok = AutoTokenizer.from_pretrained(out)
    stage = json.loads((out / "stage.json").read_text())
    assert stage["stage"] == "finetune" and stage["steps"] == 36
    assert stage["config"]["max_length"] <= 64  # fitted to the data, within the positions
    # the sentiment words carry the label: a trained head beats chance clearly
    assert stage["validation"]["accuracy"] >= 0.75, stage["validation"]
    with torch.no_grad():
        enc = tok(["good great film", "bad awful film"], padding=True, return_tensors="pt")
        assert model(**enc).logits.argmax(-1).tolist() == [1, 0]
    assert (out / "README.md").is_file()
    assert not (tmp_path / ".teacher.checkpoints").exists()


def test_finetune_bf16_autocast_runs(base_encoder, data, tmp_path):
    from pocketsize.distill import finetune
    from pocketsize.distill.training import bf16_supported

    if not bf16_supported():
        with pytest.raises(PocketsizeError, match="bfloat16"):
            finetune(base_encoder, data, tmp_path / "t", bf16=True, max_steps=1, **QUICK_VALIDATED)
        return
    out = finetune(base_encoder, data, tmp_path / "t", bf16=True, max_steps=2, **QUICK)
    stage = json.loads((out / "stage.json").read_text())
    assert stage["config"]["bf16"] is True and stage["steps"] == 2
    assert stage["train_loss"] == stage["train_loss"]  # not NaN


def test_fp16_autocast_is_for_a_gpu_and_excludes_bf16(base_encoder, data, tmp_path):
    from pocketsize.distill import finetune

    if not torch.cuda.is_available():
        with pytest.raises(PocketsizeError, match=r"^fp16=True needs a CUDA GPU .* bf16='auto'$"):
            finetune(base_encoder, data, tmp_path / "t", bf16=False, fp16=True, **QUICK_VALIDATED)
        assert not (tmp_path / "t").exists()
        return
    with pytest.raises(PocketsizeError, match="cannot both be on; pass bf16=False"):
        finetune(base_encoder, data, tmp_path / "t", bf16=True, fp16=True, **QUICK_VALIDATED)
    out = finetune(base_encoder, data, tmp_path / "t", bf16=False, fp16=True, max_steps=2,
                   **QUICK)  # fmt: skip
    assert json.loads((out / "stage.json").read_text())["steps"] == 2


def test_fit_max_length_uses_the_99th_percentile_and_positions(base_encoder):
    from transformers import AutoTokenizer

    from pocketsize.tasks.classification import fit_max_length

    tok = AutoTokenizer.from_pretrained(base_encoder)
    texts = ["good film"] * 200 + [" ".join(["the"] * 300)]
    assert fit_max_length(texts, tok) == 8  # 4 tokens -> rounded up to 8; the outlier is cut
    long = [" ".join(["the"] * 100)] * 10

    class Cfg:
        max_position_embeddings = 64

    class M:
        config = Cfg()

    assert fit_max_length(long, tok, M()) == 64


def test_finetune_refuses_existing_output_and_resumes(base_encoder, data, tmp_path):
    from transformers import TrainerCallback

    from pocketsize.distill import finetune

    out = tmp_path / "t"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(PocketsizeError, match="already exists"):
        finetune(base_encoder, data, out, **QUICK_VALIDATED)

    class Interrupt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt

    out = tmp_path / "r"
    kw = dict(max_steps=3, save_steps=2, bf16=False, **QUICK)
    with pytest.raises(KeyboardInterrupt):
        finetune(base_encoder, data, out, callbacks=[Interrupt()], **kw)
    assert not out.exists() and (tmp_path / ".r.checkpoints" / "checkpoint-2").is_dir()
    finetune(base_encoder, data, out, resume=True, **kw)
    assert json.loads((out / "stage.json").read_text())["steps"] == 3


def test_cli_finetune_then_distill(base_encoder, data, tmp_path, capsys):
    from pocketsize.cli import main

    data.save_to_disk(tmp_path / "data")
    teacher = tmp_path / "teacher"
    argv = ["finetune", "--model", str(base_encoder), "--data", str(tmp_path / "data"),
            "--out", str(teacher), "--max-steps", "2", "--batch-size", "16"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(argv) == 2  # the output exists now
    assert "already exists" in capsys.readouterr().err
    student = tmp_path / "student"
    argv = ["distill", "--teacher", str(teacher), "--student", "truncate:1",
            "--data", str(tmp_path / "data"), "--out", str(student), "--max-steps", "2",
            "--loss", "kl=1,hidden=1", "--temperature", "3"]  # fmt: skip
    assert main(argv) == 0
    stage = json.loads((student / "stage.json").read_text())
    assert stage["config"]["temperature"] == 3.0
    assert stage["config"]["losses"] == {"kl": 1.0, "hidden_mse": 1.0}
    assert stage["config"]["layer_pairs"] == [[0, 1]]


def test_finetune_extractive_qa_head(base_encoder, tmp_path):
    from transformers import AutoModelForQuestionAnswering

    from pocketsize.distill import finetune

    out = finetune(base_encoder, make_qa_dataset(), tmp_path / "qa", max_steps=2, bf16=False,
                   **QUICK_VALIDATED)  # fmt: skip
    stage = json.loads((out / "stage.json").read_text())
    assert stage["task"] == "extractive-qa" and "f1" in stage["validation"]
    assert stage["config"]["max_length"] == 64  # the tiny model's positions bound the window
    AutoModelForQuestionAnswering.from_pretrained(out)
