"""The teacher memo (distill/memo.py): the live teacher's outputs kept from the first epoch are
the teacher's outputs, whatever batch an example lands in later, and training with them is
training with the live teacher, at fewer teacher passes."""

from __future__ import annotations

import json

import pytest
import torch
from zoo import QUICK, make_cls_dataset, make_tiny_bert, make_tokenizer

from pocketsize.distill.memo import TeacherMemo
from pocketsize.distill.trainer import collect

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")

TEXTS = [
    "good film",
    "the plot was dull and long",
    "a lovely story with a weak cast",
    "funny",
    "the film was long but the story was good and the cast was funny",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("memo-teacher"), num_hidden_layers=4, seed=3)


def _live(model, tok, rows, side="right", task="text-classification"):
    tok.padding_side = side
    batch = dict(tok([TEXTS[i] for i in rows], padding=True, return_tensors="pt"))
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    names = ("start_logits", "end_logits") if task == "extractive-qa" else ("logits",)
    return batch, collect(out, names)


def _valid_close(a, b, mask):
    valid = mask.bool()
    assert a.shape == b.shape
    torch.testing.assert_close(a[valid], b[valid], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_kept_example_reads_back_as_the_teacher_gave_it_in_another_batch(teacher, side):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    tok = make_tokenizer(teacher.parent / f"tok-{side}")
    memo = TeacherMemo(per_token=False, hidden_layers={1, 3})
    first = {}
    for rows in ([0, 1, 2], [3, 4]):  # the first epoch's batches
        batch, view = _live(model, tok, rows, side)
        memo.put(torch.tensor(rows), batch["attention_mask"], view)
        for k, row in enumerate(rows):
            valid = batch["attention_mask"][k].bool()
            first[row] = (view["logits"][k], [view["hidden_states"][i][k][valid] for i in (1, 3)])
    rows = [4, 0, 3]  # a later epoch: other neighbours, another padded width
    batch, live = _live(model, tok, rows, side)
    kept = memo.get(torch.tensor(rows), batch["attention_mask"])
    assert len(kept["hidden_states"]) == len(live["hidden_states"]) == 5
    assert kept["hidden_states"][0] is None and kept["hidden_states"][2] is None  # not read
    for k, row in enumerate(rows):  # each example's own values, at its positions in this batch
        valid = batch["attention_mask"][k].bool()
        assert torch.equal(kept["logits"][k], first[row][0])
        for i, was in zip((1, 3), first[row][1]):
            assert torch.equal(kept["hidden_states"][i][k][valid], was)
            assert (kept["hidden_states"][i][k][~valid] == 0).all()
    if side == "right":  # BERT's positions count from the first token: the live teacher agrees
        torch.testing.assert_close(kept["logits"], live["logits"], atol=2e-5, rtol=1e-4)
        for i in (1, 3):
            _valid_close(
                kept["hidden_states"][i], live["hidden_states"][i], batch["attention_mask"]
            )
    assert memo.summary()["batches_from_memo"] == 1 and memo.summary()["examples"] == 5


def test_per_token_outputs_are_put_back_at_their_positions(tmp_path):
    from transformers import AutoModelForQuestionAnswering

    path = make_tiny_bert(tmp_path / "qa", "extractive-qa", seed=4)
    model = AutoModelForQuestionAnswering.from_pretrained(path).eval()
    tok = make_tokenizer(tmp_path / "tok")
    memo = TeacherMemo(per_token=True, hidden_layers=None)
    batch, view = _live(model, tok, [0, 1, 2, 3, 4], task="extractive-qa")
    memo.put(torch.arange(5), batch["attention_mask"], view)
    batch, live = _live(model, tok, [3, 1], task="extractive-qa")
    kept = memo.get(torch.tensor([3, 1]), batch["attention_mask"])
    for name in ("start_logits", "end_logits"):
        _valid_close(kept[name], live[name], batch["attention_mask"])
        assert (kept[name][batch["attention_mask"] == 0] == -1e4).all()
    assert all(h is not None for h in kept["hidden_states"])  # every layer, as none was named


def test_a_batch_with_an_example_not_kept_runs_the_live_teacher(teacher):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    tok = make_tokenizer(teacher.parent / "tok-limit")
    batch, view = _live(model, tok, [0, 1, 2, 3, 4])
    shortest = 4 * (2 + 32 * 3)  # two logits and one hidden state of 32 over 3 tokens or more
    memo = TeacherMemo(per_token=False, hidden_layers={1}, limit_bytes=4 * shortest)
    memo.put(torch.arange(5), batch["attention_mask"], view)
    assert memo.full and 0 < memo.summary()["examples"] < 5
    batch, _ = _live(model, tok, [0, 4])
    assert memo.get(torch.tensor([0, 4]), batch["attention_mask"]) is None
    assert memo.summary()["batches_live"] == 1


def _train(teacher, tmp_path, name, **options):
    from pocketsize.distill import distill

    data = make_cls_dataset(n_train=48)
    out = distill(
        teacher, data, "truncate:0,2", tmp_path / name, losses="kl=1,ce=0.5,hidden=1,embedding=1",
        epochs=3, shuffle=True, seed=5, **{**QUICK, "bf16": "off", **options},
    )  # fmt: skip
    from safetensors.torch import load_file

    stage = json.loads((out / "stage.json").read_text())
    return stage, load_file(out / "model.safetensors")


def test_training_from_the_memo_is_training_from_the_live_teacher(teacher, tmp_path):
    stage, weights = _train(teacher, tmp_path, "memo")
    memo = stage["cache"]["memo"]
    # 48 examples in batches of 16: 3 live batches in the first epoch, 6 from the memo after
    assert memo["batches_live"] == 3 and memo["batches_from_memo"] == 6
    assert memo["examples"] == 48 and memo["full"] is False
    live_stage, live_weights = _train(teacher, tmp_path, "live", cache="off")
    assert "memo" not in live_stage["cache"]
    assert abs(stage["train_loss"] - live_stage["train_loss"]) < 1e-4
    for name, tensor in live_weights.items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-4, rtol=1e-3)


def test_no_memo_under_bf16_autocast(teacher, tmp_path, monkeypatch):
    """Under bf16 the live teacher runs every epoch (the memo cost the main job accuracy there).
    The CPU is declared bf16-native, so bf16="auto" turns autocast on on any CPU."""
    from pocketsize.distill import training

    monkeypatch.setattr(training, "bf16_supported", lambda: True)
    stage, _ = _train(teacher, tmp_path, "bf16", bf16="auto")
    assert stage["config"]["bf16"] is True
    assert "memo" not in stage["cache"]
    stage, _ = _train(teacher, tmp_path, "fp32", bf16="off")
    assert stage["config"]["bf16"] is False and stage["cache"]["memo"]["batches_from_memo"] == 6
