"""Distillation on tiny random models: losses, mapping, cache, resume, students, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from zoo import (
    QUICK,
    QUICK_VALIDATED,
    make_cls_dataset,
    make_qa_dataset,
    make_tiny_bert,
    make_tokenizer,
    tiny_bert_config,
)

from pocketsize.distill.features import forward_kwargs
from pocketsize.errors import PocketsizeError
from pocketsize.tasks import get_task

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")


@pytest.fixture(scope="module")
def teacher4(tmp_path_factory):
    """A 4-layer tiny classifier teacher (hidden 32)."""
    return make_tiny_bert(tmp_path_factory.mktemp("teacher4"), num_hidden_layers=4, seed=1)


@pytest.fixture(scope="module")
def qa_teacher(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("qa-teacher"), "extractive-qa", seed=2)


@pytest.fixture(scope="module")
def data():
    return make_cls_dataset()


def _load_cls(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path).eval()


def _batch(tokenizer, texts=("good film", "the plot was dull and long")):
    return dict(tokenizer(list(texts), padding=True, return_tensors="pt"))


# ---------------------------------------------------------------- losses on a fixed batch


def _views(model, batch, names, needs):
    from pocketsize.distill.trainer import collect

    flags = dict(output_hidden_states=True, output_attentions="attentions" in needs)
    return collect(model(**batch, **flags), names)


@pytest.mark.parametrize(
    "loss", ["kl", "ce", "mse", "hidden_mse", "hidden_cos", "attention_kl", "embedding_mse"]
)
def test_each_loss_decreases_on_a_fixed_batch(loss, teacher4):
    from transformers import AutoTokenizer

    from pocketsize.distill import LOSSES, LossContext, build_student
    from pocketsize.distill.losses import needs_of

    tok = AutoTokenizer.from_pretrained(teacher4)
    teacher = _load_cls(teacher4)
    with torch.no_grad():
        teacher.classifier.weight.mul_(30)  # a confident teacher: soft targets far from uniform
    torch.manual_seed(0)
    # narrower student: the hidden/embedding losses go through a learned projection
    student, _ = build_student(teacher, "config:layers=2,hidden=16,heads=4,ffn=24,init=random")
    student.eval()  # no dropout: the same batch gives the same loss until the weights move
    batch = _batch(tok, ["good film", "bad dull plot", "the music was lovely", "weak script"])
    batch["labels"] = torch.tensor([1, 0, 1, 0])
    needs = needs_of([loss])
    projections = nn.ModuleDict({"hidden": nn.Linear(16, 32), "embedding": nn.Linear(16, 32)})
    ctx = LossContext(("logits",), 2.0, [(0, 1), (1, 3)], projections)
    with torch.no_grad():
        t = _views(teacher, batch, ("logits",), needs)
    params = list(student.parameters()) + list(projections.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    values = []
    for _ in range(15):
        opt.zero_grad()
        value = LOSSES[loss](_views(student, batch, ("logits",), needs), t, batch, ctx)
        value.backward()
        opt.step()
        values.append(value.item())
    assert values[-1] < 0.7 * values[0], values


@pytest.mark.parametrize("loss", ["kl", "ce", "mse"])
def test_qa_losses_decrease_on_start_end_logits(loss, qa_teacher):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from pocketsize.distill import LOSSES, LossContext, build_student

    tok = AutoTokenizer.from_pretrained(qa_teacher)
    teacher = AutoModelForQuestionAnswering.from_pretrained(qa_teacher).eval()
    student, _ = build_student(teacher, "truncate:1")
    student.eval()
    with torch.no_grad():
        teacher.qa_outputs.weight.mul_(30)  # a confident teacher, unlike the student copy
    batch = dict(tok(["which is good"] * 2, ["a good film", "the long plot was fine"],
                     padding=True, return_tensors="pt"))  # fmt: skip
    batch["start_positions"] = torch.tensor([5, 8])
    batch["end_positions"] = torch.tensor([5, 8])
    names = ("start_logits", "end_logits")
    ctx = LossContext.of_task(get_task("extractive-qa"), names, temperature=2.0)
    with torch.no_grad():
        t = _views(teacher, batch, names, frozenset())
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    values = []
    for _ in range(15):
        opt.zero_grad()
        value = LOSSES[loss](_views(student, batch, names, frozenset()), t, batch, ctx)
        value.backward()
        opt.step()
        values.append(value.item())
    assert values[-1] < 0.7 * values[0], values


def test_kl_ignores_padding_of_span_logits():
    from pocketsize.distill import LOSSES, LossContext

    ctx = LossContext(("start_logits",), 1.0, over_positions=True)
    s = {"start_logits": torch.tensor([[1.0, 2.0, 0.0]])}
    t = {"start_logits": torch.tensor([[2.0, 1.0, 0.0]])}
    t_other_pad = {"start_logits": torch.tensor([[2.0, 1.0, 55.0]])}
    batch = {"attention_mask": torch.tensor([[1, 1, 0]])}
    a = LOSSES["kl"](s, t, batch, ctx)
    b = LOSSES["kl"](s, t_other_pad, batch, ctx)
    assert float(a) > 0 and torch.allclose(a, b)


def test_register_loss_and_parse_weights():
    from pocketsize.distill import LOSSES, register_loss
    from pocketsize.distill.losses import needs_of, parse_losses

    @register_loss("test_l1", needs={"hidden_states"})
    def l1(student, teacher, batch, ctx):
        return (student["logits"] - teacher["logits"]).abs().mean()

    try:
        assert parse_losses("logits=1,hidden=0.5,test_l1") == {
            "kl": 1.0,
            "hidden_mse": 0.5,
            "test_l1": 1.0,
        }
        assert needs_of(["test_l1", "kl"]) == {"hidden_states"}
        with pytest.raises(PocketsizeError, match="unknown distillation loss"):
            parse_losses({"nope": 1})
        with pytest.raises(PocketsizeError, match="non-zero"):
            parse_losses("kl=0")
    finally:
        LOSSES.pop("test_l1")


# ---------------------------------------------------------------- layer mapping


def test_layer_map_uniform_last_and_explicit():
    from pocketsize.distill import layer_map

    assert layer_map("uniform", 3, 6) == [(0, 1), (1, 3), (2, 5)]
    assert layer_map("uniform", 2, 2) == [(0, 0), (1, 1)]
    assert layer_map("last:2", 3, 6) == [(1, 4), (2, 5)]
    assert layer_map("0:0,1:5", 2, 6) == [(0, 0), (1, 5)]
    assert layer_map({0: 2}, 2, 6) == [(0, 2)]
    with pytest.raises(PocketsizeError, match="teacher layer 6.*6 layers"):
        layer_map([(0, 6)], 2, 6)
    with pytest.raises(PocketsizeError, match="student layer 3"):
        layer_map("3:1", 3, 6)
    with pytest.raises(PocketsizeError, match="K must be"):
        layer_map("last:4", 3, 6)
    with pytest.raises(PocketsizeError, match="cannot read layer map"):
        layer_map("zig", 3, 6)


# ---------------------------------------------------------------- students


def test_truncate_keeps_the_chosen_teacher_layers(teacher4):
    from pocketsize.distill import build_student

    teacher = _load_cls(teacher4)
    student, info = build_student(teacher, "truncate:0,3")
    assert info["layers"] == [0, 3] and student.config.num_hidden_layers == 2
    s, t = student.bert.encoder.layer, teacher.bert.encoder.layer
    assert torch.equal(s[1].output.dense.weight, t[3].output.dense.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert s[1].output.dense.weight.data_ptr() != t[3].output.dense.weight.data_ptr()
    student_default, info = build_student(teacher, "truncate")
    assert info["layers"] == [0, 2]
    with pytest.raises(PocketsizeError, match="layer.*\\[7\\].*4 layers"):
        build_student(teacher, "truncate:0,7")


def test_config_student_copies_teacher_tensors_where_shapes_fit(teacher4):
    from pocketsize.distill import build_student

    teacher = _load_cls(teacher4)
    student, info = build_student(teacher, "config:layers=2,ffn=20,init=teacher")
    assert 0 < info["copied_tensors"] < info["total_tensors"]
    # same width: attention weights come from the uniformly mapped teacher layers 1 and 3
    q_s = student.bert.encoder.layer[1].attention.self.query.weight
    assert torch.equal(q_s, teacher.bert.encoder.layer[3].attention.self.query.weight)
    assert student.bert.encoder.layer[0].intermediate.dense.weight.shape == (20, 32)
    with pytest.raises(PocketsizeError, match="divisible"):
        build_student(teacher, "config:hidden=30,heads=4")
    with pytest.raises(PocketsizeError, match="has no option depth"):
        build_student(teacher, "config:depth=2")


class TinyUserModule(nn.Module):
    """A user-defined student: bag of embeddings -> logits; takes its config dict."""

    def __init__(self, config=None):
        super().__init__()
        self.config = dict(config or {"vocab_size": 100, "num_labels": 2})
        self.embed = nn.EmbeddingBag(self.config["vocab_size"], 8)
        self.out = nn.Linear(8, self.config["num_labels"])

    def forward(self, input_ids, attention_mask=None):
        return {"logits": self.out(self.embed(input_ids, per_sample_weights=None))}


def _capture_final_logits(holder, tokenizer):
    from transformers import TrainerCallback

    class Capture(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kw):
            student = model.student.eval()
            with torch.no_grad():
                out = student(**forward_kwargs(student, _batch(tokenizer)))
            holder["logits"] = out["logits"] if isinstance(out, dict) else out.logits

    return Capture()


@pytest.mark.parametrize(
    "spec",
    [
        "truncate:1,3",
        "config:layers=1,hidden=16,heads=2,ffn=24",
        "bilstm:embed=16,hidden=12",
        "module",
    ],
)
def test_each_student_trains_saves_and_loads_back(spec, teacher4, data, tmp_path):
    from transformers import AutoTokenizer

    from pocketsize.distill import distill, load_bilstm, load_module

    tok = AutoTokenizer.from_pretrained(teacher4)
    student = (
        TinyUserModule({"vocab_size": len(tok), "num_labels": 2}) if spec == "module" else spec
    )
    holder = {}
    out = distill(
        teacher4, data, student, tmp_path / "student", max_steps=3,
        callbacks=[_capture_final_logits(holder, tok)], **QUICK,
    )  # fmt: skip
    stage = json.loads((out / "stage.json").read_text())
    assert stage["steps"] == 3 and stage["stage"] == "distill"
    # no learning rate given: each student type trains at its own
    expected_lr = {"truncate": 2e-4, "bilstm": 1e-3}.get(spec.split(":")[0], 5e-5)
    assert stage["config"]["learning_rate"] == expected_lr
    if spec.startswith("bilstm"):
        loaded = load_bilstm(out)
    elif spec == "module":
        with pytest.raises(PocketsizeError, match="trust_module_code=True"):
            load_module(out)  # the class lives outside pocketsize: importing it needs consent
        loaded = load_module(out, trust_module_code=True)
    else:
        loaded = _load_cls(out)
    with torch.no_grad():
        got = loaded(**forward_kwargs(loaded, _batch(AutoTokenizer.from_pretrained(out))))
    got = got["logits"] if isinstance(got, dict) else got.logits
    assert torch.allclose(got, holder["logits"], atol=1e-6)
    assert not list(tmp_path.glob(".student*")), "work directories must be cleaned up"


def test_user_module_student_exports_and_evaluates_with_trust_module_code(teacher4, data, tmp_path):
    from transformers import AutoTokenizer

    from pocketsize.distill import distill
    from pocketsize.eval import evaluate
    from pocketsize.export import export

    tok = AutoTokenizer.from_pretrained(teacher4)
    user = TinyUserModule({"vocab_size": len(tok), "num_labels": 2})
    student = distill(teacher4, data, user, tmp_path / "student", max_steps=1, **QUICK)
    with pytest.raises(PocketsizeError, match="--trust-module-code"):
        export(student, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists(), "a refused export must leave nothing behind"
    onnx_dir = export(student, tmp_path / "onnx", trust_module_code=True)
    with pytest.raises(PocketsizeError, match="trust_module_code=True"):
        evaluate({"student": student}, data["test"], latency=False, memory=False)
    report = evaluate(
        {"student": student, "onnx": onnx_dir}, data["test"], latency=False, memory=True,
        trust_module_code=True, progress=False,
    )  # fmt: skip
    assert report["onnx"]["agreement"] == 1.0
    assert report["onnx"]["fidelity"]["max_abs_logit_diff"] < 1e-4
    # the memory child imports the user's class too (it sees the parent's import path)
    assert report["student"]["memory"]["model_peak_bytes"] > 0


def test_bilstm_is_small_and_padding_free(teacher4):
    from transformers import AutoTokenizer

    from pocketsize.distill import build_student

    tok = AutoTokenizer.from_pretrained(teacher4)
    teacher = _load_cls(teacher4)
    student, _ = build_student(teacher, "bilstm:embed=8,hidden=6", tokenizer=tok)
    student.eval()
    # an SVD projection of the teacher embeddings, not a random table
    assert student.embeddings.weight.abs().sum() > 0
    one = student(**tok(["good film"], return_tensors="pt")).logits
    padded = student(**_batch(tok, ["good film", "the plot was dull and very long"])).logits[:1]
    assert torch.allclose(one, padded, atol=1e-5)


# ---------------------------------------------------------------- cache


def test_cached_teacher_outputs_give_the_live_teacher_loss(teacher4, data, tmp_path):
    from transformers import AutoTokenizer

    from pocketsize.distill import LOSSES, LossContext
    from pocketsize.distill.cache import load_or_compute
    from pocketsize.distill.features import FeatureCollator, training_features
    from pocketsize.distill.trainer import collect
    from pocketsize.tasks import get_task

    task = get_task("text-classification")
    tok = AutoTokenizer.from_pretrained(teacher4)
    teacher = _load_cls(teacher4)
    feats = training_features(task, data["train"], tok, 32)
    inputs = feats.select_columns(["input_ids", "token_type_ids", "attention_mask"])
    collator = FeatureCollator(task, tok)
    cached, info = load_or_compute(teacher, inputs, collator, ("logits",), False, tmp_path)
    assert info["hit"] is False
    again, info2 = load_or_compute(teacher, inputs, collator, ("logits",), False, tmp_path)
    assert info2["hit"] is True and info2["key"] == info["key"]
    rows = [feats[i] for i in (5, 0, 17, 3)]
    batch = collator(rows)
    with torch.no_grad():
        live = collect(teacher(**forward_kwargs(teacher, batch)), ("logits",))
    from_cache = again.batch(batch["ps_index"])
    student = {"logits": torch.randn(4, 2)}
    ctx = LossContext(("logits",), 2.0)
    for name in ("kl", "mse", "ce"):
        a = LOSSES[name](student, live, batch, ctx)
        b = LOSSES[name](student, from_cache, batch, ctx)
        assert torch.allclose(a, b, atol=1e-6), name
    # a different teacher gets a different key
    other = _load_cls(teacher4)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    _, info3 = load_or_compute(other, inputs, collator, ("logits",), False, tmp_path)
    assert info3["key"] != info["key"] and info3["hit"] is False
    # under bf16 autocast the cache holds what the live teacher gives under it, kept apart
    under, info4 = load_or_compute(teacher, inputs, collator, ("logits",), False, tmp_path,
                                   bf16=True)  # fmt: skip
    assert info4["key"] != info["key"] and info4["hit"] is False and info4["bf16"] is True
    meta = json.loads((Path(info4["dir"]) / "meta.json").read_text())
    assert meta["bf16"] is True
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        live_bf16 = collect(teacher(**forward_kwargs(teacher, batch)), ("logits",))
    got = under.batch(batch["ps_index"])["logits"]
    assert got.dtype == torch.float32
    # (other batches, other padding: bf16 kernels may round a little differently)
    assert torch.allclose(got, live_bf16["logits"].float(), atol=2e-2)
    assert not torch.allclose(got, from_cache["logits"], atol=1e-6)  # bf16 rounding shows
    assert torch.allclose(got, from_cache["logits"], atol=0.05)


def test_distill_with_cache_matches_live_teacher_run(teacher4, data, tmp_path):
    from pocketsize.distill import distill

    runs = {}
    for cache in (True, False):
        out = distill(teacher4, data, "truncate:0,2", tmp_path / f"s-{cache}", cache=cache,
                      max_steps=4, **QUICK)  # fmt: skip
        runs[cache] = json.loads((out / "stage.json").read_text())
    assert runs[True]["cache"]["used"] and not runs[False]["cache"]["used"]
    assert runs[True]["train_loss"] == pytest.approx(runs[False]["train_loss"], rel=1e-4)
    a, b = _load_cls(tmp_path / "s-True"), _load_cls(tmp_path / "s-False")
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name


def test_qa_distillation_with_cache_and_eval(qa_teacher, tmp_path):
    from transformers import AutoModelForQuestionAnswering

    from pocketsize.distill import distill

    qa = make_qa_dataset()
    out = distill(qa_teacher, qa, "truncate:1", tmp_path / "qa", max_steps=3,
                  **QUICK_VALIDATED)  # fmt: skip
    stage = json.loads((out / "stage.json").read_text())
    assert stage["cache"]["used"] and stage["task"] == "extractive-qa"
    assert "f1" in stage["validation"] and "f1" in stage["teacher_validation"]
    AutoModelForQuestionAnswering.from_pretrained(out)
    # intermediate losses run the live teacher on QA too
    out = distill(qa_teacher, qa, "truncate:1", tmp_path / "qa2", losses="kl=1,ce=1,hidden=1",
                  max_steps=2, **QUICK)  # fmt: skip
    assert json.loads((out / "stage.json").read_text())["cache"]["used"] is False


def test_answer_positions_point_at_the_answer(qa_teacher):
    from transformers import AutoTokenizer

    from pocketsize.distill.features import training_features
    from pocketsize.tasks import get_task
    from pocketsize.tasks.qa import qa_max_length

    tok = AutoTokenizer.from_pretrained(qa_teacher)
    qa = make_qa_dataset()["train"].select(range(6))
    task = get_task("extractive-qa")
    feats = training_features(task, qa, tok, qa_max_length(task, None, 64))
    for row, example in zip(feats, qa):
        span = tok.decode(row["input_ids"][row["start_positions"] : row["end_positions"] + 1])
        assert span == example["answers"]["text"][0]


# ---------------------------------------------------------------- transfer data


def test_augmentation_is_deterministic_per_seed():
    from pocketsize.distill.transfer import augment_texts

    texts = make_cls_dataset()["train"]["text"][:20]
    a = augment_texts(texts, 3, seed=1)
    assert a == augment_texts(texts, 3, seed=1)
    assert a != augment_texts(texts, 3, seed=2)
    assert 20 <= len(a) <= 60 and not set(a) & set(texts)
    assert any("[MASK]" in t for t in a)


def test_transfer_and_augment_are_labelled_by_the_cached_teacher(teacher4, data, tmp_path):
    from pocketsize.distill import distill

    extra = tmp_path / "extra.txt"
    extra.write_text("a lovely story\nthe cast was weak\n\nfunny and moving\n")
    kw = dict(transfer=extra, augment=2, max_steps=2, **QUICK)
    out = distill(teacher4, data, "bilstm:embed=8,hidden=8", tmp_path / "a", **kw)
    stage = json.loads((out / "stage.json").read_text())
    assert stage["config"]["transfer_examples"] > 3 + 64
    assert stage["train_examples"] == 64 + stage["config"]["transfer_examples"]
    assert stage["cache"]["hit"] is False
    # same seed: the same augmented set, so the teacher's outputs come from the cache
    out = distill(teacher4, data, "bilstm:embed=8,hidden=8", tmp_path / "b", **kw)
    assert json.loads((out / "stage.json").read_text())["cache"]["hit"] is True


# ---------------------------------------------------------------- resume and NaN


def test_resume_after_interruption_continues_from_the_checkpoint(teacher4, data, tmp_path):
    from transformers import TrainerCallback

    from pocketsize.distill import distill

    class Interrupt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 4:
                raise KeyboardInterrupt

    kw = dict(max_steps=6, save_steps=2, **QUICK)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        distill(teacher4, data, "truncate:0,2", out, callbacks=[Interrupt()], **kw)
    assert not out.exists()
    work = tmp_path / ".s.checkpoints"
    assert (work / "checkpoint-4").is_dir()

    class Seen(TrainerCallback):
        steps = []

        def on_step_begin(self, args, state, control, **kw):
            self.steps.append(state.global_step)

    distill(teacher4, data, "truncate:0,2", out, resume=True, callbacks=[Seen()], **kw)
    assert Seen.steps == [4, 5], "training continues at step 5, not from the start"
    assert json.loads((out / "stage.json").read_text())["steps"] == 6
    assert not work.exists()
    straight = distill(teacher4, data, "truncate:0,2", tmp_path / "straight", **kw)
    for pa, pb in zip(_load_cls(out).parameters(), _load_cls(straight).parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)
    with pytest.raises(PocketsizeError, match="no checkpoint"):
        distill(teacher4, data, "truncate:0,2", tmp_path / "fresh", resume=True, **kw)


def test_nan_loss_stops_keeps_last_checkpoint_and_names_the_step(teacher4, data, tmp_path):
    from pocketsize.distill import LOSSES, register_loss

    calls = {"n": 0}

    @register_loss("test_nan_at_3")
    def nan_at_3(student, teacher, batch, ctx):
        calls["n"] += 1
        value = (student["logits"] - teacher["logits"]).pow(2).mean()
        return value * float("nan") if calls["n"] == 3 else value

    from pocketsize.distill import distill

    try:
        with pytest.raises(PocketsizeError, match="NaN/inf at step 3.*checkpoint-2"):
            distill(teacher4, data, "truncate:0", tmp_path / "s", losses="test_nan_at_3",
                    max_steps=6, save_steps=2, **QUICK)  # fmt: skip
    finally:
        LOSSES.pop("test_nan_at_3")
    assert not (tmp_path / "s").exists()
    assert (tmp_path / ".s.checkpoints" / "checkpoint-2").is_dir()


# ---------------------------------------------------------------- bad input


def test_label_mismatch_is_refused(tmp_path, data):
    from transformers import AutoModelForSequenceClassification

    from pocketsize.distill import distill

    three = make_tiny_bert(tmp_path / "t3")
    config = tiny_bert_config(len(make_tokenizer(three)), num_labels=3)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(three)
    with pytest.raises(PocketsizeError, match="3 labels but the dataset has 2"):
        distill(three, data, "truncate:0", tmp_path / "s", **QUICK)
    renamed = data.cast_column(
        "label", data["train"].features["label"].__class__(names=["no", "yes"])
    )
    with pytest.raises(PocketsizeError, match="labels .* differ"):
        distill(make_tiny_bert(tmp_path / "t2"), renamed, "truncate:0", tmp_path / "s", **QUICK)


def test_bad_layer_mapping_is_refused_before_training(teacher4, data, tmp_path):
    from pocketsize.distill import distill

    with pytest.raises(PocketsizeError, match="teacher layer 9"):
        distill(teacher4, data, "truncate:0,2", tmp_path / "s", losses="kl=1,hidden=1",
                layer_map=[(0, 1), (1, 9)], **QUICK)  # fmt: skip
    assert not (tmp_path / ".s.checkpoints").exists()


def test_width_mismatch_without_projection_is_refused(teacher4, data, tmp_path):
    from pocketsize.distill import distill

    with pytest.raises(PocketsizeError, match="width 16.*32.*projection=False"):
        distill(teacher4, data, "config:layers=2,hidden=16,heads=2", tmp_path / "s",
                losses="kl=1,hidden=1", projection=False, **QUICK)  # fmt: skip


def test_tokenizer_mismatch_is_refused(teacher4, data, tmp_path):
    from transformers import BertTokenizerFast

    from pocketsize.distill import distill

    # a student with its own, different vocabulary
    other = make_tiny_bert(tmp_path / "other", seed=3)
    vocab = (other / "vocab.txt").read_text().splitlines()
    (other / "vocab.txt").write_text("\n".join(vocab[:5] + vocab[5:][::-1]) + "\n")
    BertTokenizerFast(vocab_file=str(other / "vocab.txt")).save_pretrained(other)
    with pytest.raises(PocketsizeError, match="tokenizer mismatch.*hidden"):
        distill(teacher4, data, str(other), tmp_path / "s", losses="kl=1,hidden=1", **QUICK)
    with pytest.raises(PocketsizeError, match="tokenizer mismatch.*cache"):
        distill(teacher4, data, str(other), tmp_path / "s", cache=False, **QUICK)
    # allowed with output losses: the teacher's cached outputs are matched per example
    out = distill(teacher4, data, str(other), tmp_path / "s", max_steps=2, **QUICK)
    assert json.loads((out / "stage.json").read_text())["cache"]["used"]
    # a student without its own tokenizer whose vocabulary is too small
    small = TinyUserModule({"vocab_size": 10, "num_labels": 2})
    small.get_input_embeddings = lambda: small.embed
    with pytest.raises(PocketsizeError, match="tokenizer mismatch.*10 tokens"):
        distill(teacher4, data, small, tmp_path / "s2", **QUICK)


def test_existing_output_dir_is_refused_unless_overwrite(teacher4, data, tmp_path):
    from pocketsize.distill import distill

    out = tmp_path / "s"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(PocketsizeError, match="already exists.*overwrite"):
        distill(teacher4, data, "truncate:0", out, **QUICK)
    distill(teacher4, data, "truncate:0", out, max_steps=1, overwrite=True, **QUICK)
    assert (out / "model.safetensors").is_file()


def test_intermediate_loss_with_forced_cache_is_refused(teacher4, data, tmp_path):
    from pocketsize.distill import distill

    with pytest.raises(PocketsizeError, match="live teacher"):
        distill(
            teacher4, data, "truncate:0", tmp_path / "s", losses="hidden=1", cache=True, **QUICK
        )


def test_intermediate_losses_train_end_to_end(teacher4, data, tmp_path):
    from pocketsize.distill import distill

    out = distill(teacher4, data, "truncate:0,2", tmp_path / "s",
                  losses="kl=1,ce=1,hidden=1,cos=1,attention=1,embedding=1",
                  max_steps=2, **QUICK)  # fmt: skip
    stage = json.loads((out / "stage.json").read_text())
    assert stage["config"]["layer_pairs"] == [[0, 0], [1, 2]]
    assert not stage["cache"]["used"]


def test_public_verb_is_callable_even_after_the_package_is_imported(teacher4, data, tmp_path):
    import pocketsize as ps
    import pocketsize.distill  # noqa: F401  binds ps.distill to the package

    out = ps.distill(teacher4, data, "truncate:0", tmp_path / "s", max_steps=1, **QUICK)
    assert (out / "model.safetensors").is_file()


def test_a_bf16_run_does_not_leave_later_runs_in_bf16(tmp_path):
    """TrainingArguments(bf16=True) writes ACCELERATE_MIXED_PRECISION=bf16 into os.environ,
    which a later bf16=False run in the same process (or a process it starts) would obey."""
    from torch import nn
    from transformers import Trainer

    from pocketsize.distill.config import TrainingConfig
    from pocketsize.distill.training import training_arguments

    cfg = TrainingConfig(
        epochs=1, batch_size=2, max_steps=1, logging_steps=1, warmup_ratio=0.0, shuffle=False
    )
    common = dict(cfg=cfg, learning_rate=1e-3, features=[], progress=False)
    training_arguments(tmp_path / "a", bf16=True, **common)
    args = training_arguments(tmp_path / "b", bf16=False, **common)
    assert Trainer(model=nn.Linear(2, 2), args=args).accelerator.mixed_precision == "no"
    args = training_arguments(tmp_path / "c", bf16=True, **common)
    assert Trainer(model=nn.Linear(2, 2), args=args).accelerator.mixed_precision == "bf16"
