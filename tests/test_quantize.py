"""Quantization: dynamic / static close to float, sensitivity finds a broken layer, the accuracy
budget search keeps the best model, PyTorch int8 / fp16, bad inputs, CLI."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
from _quantize_helpers import break_ffn_weight, break_unused_embedding, train_tiny_classifier
from zoo import make_cls_dataset, make_qa_dataset

from pocketsize.errors import PocketsizeError


@pytest.fixture(scope="module")
def cls_onnx(tiny_cls_dir, tmp_path_factory):
    from pocketsize.export import export

    return export(tiny_cls_dir, tmp_path_factory.mktemp("q") / "cls-onnx")


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    return train_tiny_classifier(tmp_path_factory.mktemp("trained") / "model")


@pytest.fixture(scope="module")
def broken_embedding_onnx(trained_dir, tmp_path_factory):
    """A model that is accurate in float but breaks when its embeddings are quantized."""
    from pocketsize.export import export

    base = tmp_path_factory.mktemp("broken-emb")
    shutil.copytree(trained_dir, base / "pt")
    return export(break_unused_embedding(base / "pt"), base / "onnx")


def _ops(path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _logits(onnx_file, tok, texts):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    enc = tok(texts, padding=True, return_tensors="np")
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]


TEXTS = [
    "a good film",
    "the plot was dull and the cast weak",
    "superb moving story with a lovely cast",
]


def test_dynamic_int8_stays_close_to_float_and_loads_in_pipeline(cls_onnx, tmp_path):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    from pocketsize.quantize import quantize

    out = quantize(cls_onnx, method="dynamic", out=tmp_path / "int8", mobile=True)
    manifest = json.loads((out / "stage.json").read_text())
    assert manifest["file"] == "model_quantized.onnx" and manifest["task"] == "text-classification"
    assert (
        manifest["quantization"]["per_channel"]
        and manifest["mobile"]["file"] == "model_quantized.ort"
    )
    ops = _ops(out / "model_quantized.onnx")
    assert (
        ops["MatMulInteger"] > 0 and ops["QAttention"] == 2 and ops["QEmbedLayerNormalization"] == 1
    )
    assert (out / "model_quantized.onnx").stat().st_size < 0.6 * (
        cls_onnx / "model.onnx"
    ).stat().st_size
    tok = AutoTokenizer.from_pretrained(out)
    ref, q = (
        _logits(cls_onnx / "model.onnx", tok, TEXTS),
        _logits(out / "model_quantized.onnx", tok, TEXTS),
    )
    assert np.abs(ref - q).max() < 0.05 * max(1.0, np.abs(ref).max())
    model = ORTModelForSequenceClassification.from_pretrained(out, file_name="model_quantized.onnx")
    assert len(pipeline("text-classification", model=model, tokenizer=tok)(TEXTS)) == 3


@pytest.mark.parametrize(
    "target, weight_type, reduce_range",
    [
        ("avx2", "QUInt8", False),
        ("avx512", "QInt8", True),
        ("avx512_vnni", "QInt8", False),
        ("arm64", "QInt8", False),
    ],
)
def test_target_cpu_sets_weight_type_and_reduce_range(
    cls_onnx, tmp_path, target, weight_type, reduce_range
):
    from pocketsize.quantize import quantize

    out = quantize(
        cls_onnx,
        out=tmp_path / target,
        target=target,
        quantize_embeddings=False,
        exclude_nodes=["Attention_0"],
    )
    q = json.loads((out / "stage.json").read_text())["quantization"]
    assert (q["target"], q["weight_type"], q["reduce_range"]) == (target, weight_type, reduce_range)
    ops = _ops(out / "model_quantized.onnx")
    # embeddings and the excluded node stay float
    assert ops["EmbedLayerNormalization"] == 1 and ops["QAttention"] == 1 and ops["Attention"] == 1


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_static_int8_calibrates_matmuls_and_stays_close(
    cls_onnx, tiny_cls_data, tmp_path, calibration
):
    from transformers import AutoTokenizer

    from pocketsize.quantize import quantize

    out = quantize(
        cls_onnx, tiny_cls_data, method="static", calibration=calibration, out=tmp_path / "s"
    )
    manifest = json.loads((out / "stage.json").read_text())
    assert manifest["quantization"]["calibration_examples"] == len(tiny_cls_data["train"])
    ops = _ops(out / "model_quantized.onnx")
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    tok = AutoTokenizer.from_pretrained(out)
    ref, q = (
        _logits(cls_onnx / "model.onnx", tok, TEXTS),
        _logits(out / "model_quantized.onnx", tok, TEXTS),
    )
    assert np.abs(ref - q).max() < 0.05 * max(1.0, np.abs(ref).max())


def test_calibration_streams_chunks(cls_onnx, tiny_cls_data, tmp_path):
    """Calibration consumes a generator chunk by chunk: memory does not grow with the set size."""
    from transformers import AutoTokenizer

    from pocketsize.quantize.scoring import TaskData
    from pocketsize.quantize.static import StaticSettings, calibrate

    tok = AutoTokenizer.from_pretrained(cls_onnx)
    data = TaskData(
        __import__("pocketsize.tasks", fromlist=["get_task"]).get_task("text-classification"),
        tok,
        tiny_cls_data["train"],
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    pulled = []

    def feeds():
        for feed in data.batches(names, batch_size=4):
            pulled.append(1)
            yield feed

    settings = StaticSettings(calibration="minmax", chunk_batches=3).resolved()
    cache, seen = calibrate(cls_onnx / "model.onnx", feeds(), settings, tmp_path)
    assert seen == len(pulled) == 16 and json.loads(cache.read_text())


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_sensitivity_ranks_the_broken_layer_first(trained_dir, tiny_cls_data, tmp_path, method):
    from pocketsize.export import export
    from pocketsize.quantize import layer_sensitivity

    shutil.copytree(trained_dir, tmp_path / "pt")
    onnx_dir = export(break_ffn_weight(tmp_path / "pt", layer=1, value=200.0), tmp_path / "onnx")
    ranking = layer_sensitivity(
        onnx_dir, tiny_cls_data, method=method, per_channel=False, out=tmp_path / "sens.json"
    )
    assert ranking[0]["node"] == "/bert/encoder/layer.1/intermediate/dense/MatMul"
    assert ranking[0]["divergence"] > 1.5 * ranking[1]["divergence"]
    assert [r["rank"] for r in ranking] == list(range(1, len(ranking) + 1))
    assert (
        json.loads((tmp_path / "sens.json").read_text())["ranking"][0]["node"] == ranking[0]["node"]
    )


def test_auto_excludes_the_sensitive_node_to_meet_the_budget(
    broken_embedding_onnx, tiny_cls_data, tmp_path
):
    from pocketsize.quantize import quantize

    out = quantize(
        broken_embedding_onnx, tiny_cls_data, method="auto", max_drop=0.02, out=tmp_path / "auto"
    )
    manifest = json.loads((out / "stage.json").read_text())
    budget = manifest["accuracy_budget"]
    assert budget["budget_met"] and budget["drop"] <= 0.02 and budget["float_metric"] > 0.9
    trials = json.loads((out / "quantize_trials.json").read_text())
    names = [t["name"] for t in trials["trials"]]
    assert names == ["dynamic-per-channel", "dynamic-per-channel-exclude-top1"]
    assert trials["trials"][0]["drop"] > 0.02  # the quantized embedding table breaks the model
    assert trials["sensitivity"][0]["node"] == "EmbedLayerNormalization_0"
    assert manifest["quantization"]["exclude_nodes"] == ["EmbedLayerNormalization_0"]
    for t in trials["trials"]:
        assert {"settings", "metric", "drop", "latency_ms", "size_bytes"} <= set(t)
    assert _ops(out / "model_quantized.onnx")["MatMulInteger"] > 0


def test_auto_size_limit_keeps_the_embedding_quantized(
    broken_embedding_onnx, tiny_cls_data, tmp_path
):
    from pocketsize.errors import PocketsizeError
    from pocketsize.quantize import quantize

    free = quantize(
        broken_embedding_onnx, tiny_cls_data, method="auto", max_drop=0.02, out=tmp_path / "free"
    )
    sizes = [
        t["size_bytes"] for t in json.loads((free / "quantize_trials.json").read_text())["trials"]
    ]
    limit_mb = (sizes[0] + sizes[1]) / 2 / 1e6  # the float embedding of the exclusion trial: over
    out = quantize(
        broken_embedding_onnx, tiny_cls_data, method="auto", max_drop=0.02,
        max_size_mb=limit_mb, out=tmp_path / "limited",
    )  # fmt: skip
    trials = json.loads((out / "quantize_trials.json").read_text())
    excluded = next(t for t in trials["trials"] if t["name"] == "dynamic-per-channel-exclude-top1")
    assert (
        excluded["drop"] <= 0.02 and not excluded["within_size"] and not excluded["within_budget"]
    )
    manifest = json.loads((out / "stage.json").read_text())
    assert "EmbedLayerNormalization_0" not in manifest["quantization"]["exclude_nodes"]
    assert (out / "model_quantized.onnx").stat().st_size <= limit_mb * 1e6
    assert manifest["accuracy_budget"]["max_size_mb"] == limit_mb
    with pytest.raises(PocketsizeError, match="max_size_mb applies to method auto, not dynamic"):
        quantize(broken_embedding_onnx, method="dynamic", max_size_mb=5, out=tmp_path / "d")


def test_auto_agreement_budget_refuses_a_model_that_changed_its_predictions(
    broken_embedding_onnx, tiny_cls_data, tmp_path
):
    from pocketsize.errors import PocketsizeError
    from pocketsize.quantize import quantize

    # any accuracy drop is allowed: only agreement with the float model decides
    out = quantize(
        broken_embedding_onnx, tiny_cls_data, method="auto", max_drop=1.0, min_agreement=0.99,
        out=tmp_path / "agree",
    )  # fmt: skip
    trials = json.loads((out / "quantize_trials.json").read_text())["trials"]
    first = trials[0]
    assert first["drop"] <= 1.0 and first["agreement"] < 0.99 and not first["within_budget"]
    budget = json.loads((out / "stage.json").read_text())["accuracy_budget"]
    assert budget["budget_met"] and budget["agreement"] >= 0.99 and budget["min_agreement"] == 0.99
    assert (
        "EmbedLayerNormalization_0"
        in json.loads((out / "stage.json").read_text())["quantization"]["exclude_nodes"]
    )
    with pytest.raises(
        PocketsizeError, match="min_agreement: must be a share above 0 and at most 1"
    ):
        quantize(broken_embedding_onnx, tiny_cls_data, method="auto", min_agreement=1.5,
                 out=tmp_path / "bad")  # fmt: skip


def test_auto_saves_the_best_quantized_model_when_the_budget_cannot_be_met(
    broken_embedding_onnx, tiny_cls_data, tmp_path
):
    from datasets import DatasetDict

    from pocketsize.quantize import quantize

    # Only the embedding is quantizable (so no node can be excluded) and there is no calibration
    # split (no static trial): every configuration breaks the embedding.
    data = DatasetDict({"validation": tiny_cls_data["validation"]})
    out = quantize(
        broken_embedding_onnx,
        data,
        method="auto",
        max_drop=0.0,
        op_types=["EmbedLayerNormalization"],
        out=tmp_path / "auto",
    )
    manifest = json.loads((out / "stage.json").read_text())
    budget = manifest["accuracy_budget"]
    assert (
        not budget["budget_met"]
        and budget["miss_by"] == pytest.approx(budget["drop"])
        and budget["miss_by"] > 0
    )
    trials = json.loads((out / "quantize_trials.json").read_text())["trials"]
    assert len(trials) >= 2 and budget["quantized_metric"] == max(t["metric"] for t in trials)
    # what was saved is a quantized model, never the float one
    assert _ops(out / "model_quantized.onnx")["QEmbedLayerNormalization"] == 1


def test_auto_names_the_budget_it_missed_and_keeps_the_trial_nearest_to_it(
    broken_embedding_onnx, tiny_cls_data, tmp_path, caplog
):
    """An agreement budget no configuration meets: the summary names agreement (not the metric
    drop, which every trial meets)."""
    from datasets import DatasetDict

    from pocketsize.quantize import quantize

    data = DatasetDict({"validation": tiny_cls_data["validation"]})
    out = quantize(
        broken_embedding_onnx, data, method="auto", max_drop=1.0, min_agreement=1.0,
        op_types=["EmbedLayerNormalization"], exhaustive=True, out=tmp_path / "auto",
    )  # fmt: skip
    budget = json.loads((out / "stage.json").read_text())["accuracy_budget"]
    trials = [t for t in json.loads((out / "quantize_trials.json").read_text())["trials"]]
    agreements = sorted({t["agreement"] for t in trials if "agreement" in t})
    assert agreements and agreements[-1] < 1.0  # none meets it
    assert not budget["budget_met"] and list(budget["missed"]) == ["min_agreement"]
    assert budget["miss_by"] == 0 and budget["agreement"] == agreements[-1]
    assert budget["missed"]["min_agreement"] == pytest.approx(1.0 - agreements[-1])
    assert "misses min_agreement by" in caplog.text


def test_out_of_budget_the_trial_nearest_to_the_missed_budget_is_kept():
    """Two trials that both miss the agreement budget (and meet the drop): the one that agrees
    more is kept, though the other scores higher (it used to be kept)."""
    from pocketsize.quantize.auto import Budget, _better

    budget = Budget(max_drop=0.05, min_agreement=0.99)

    def trial(metric, agreement):
        missed = budget.shortfalls(0.9 - metric, 1000, agreement)
        return {"metric": metric, "agreement": agreement, "missed": missed,
                "within_budget": not missed, "within_size": True}  # fmt: skip

    agrees_more, scores_more = trial(0.88, 0.97), trial(0.89, 0.90)
    assert list(agrees_more["missed"]) == ["min_agreement"] == list(scores_more["missed"])
    assert _better(agrees_more, scores_more) and not _better(scores_more, agrees_more)
    # missing one budget beats missing two, however near
    both = trial(0.80, 0.985)
    assert set(both["missed"]) == {"max_drop", "min_agreement"} and _better(scores_more, both)


def test_qa_model_dynamic_and_auto(tiny_qa_dir, tmp_path):
    from optimum.onnxruntime import ORTModelForQuestionAnswering

    from pocketsize.export import export
    from pocketsize.quantize import quantize

    onnx_dir = export(tiny_qa_dir, tmp_path / "qa-onnx")
    out = quantize(
        onnx_dir, make_qa_dataset(16, 16, 16), method="auto", max_drop=1.0, out=tmp_path / "qa-int8"
    )
    manifest = json.loads((out / "stage.json").read_text())
    assert manifest["task"] == "extractive-qa" and manifest["accuracy_budget"]["metric"] == "f1"
    assert ORTModelForQuestionAnswering.from_pretrained(out, file_name="model_quantized.onnx")


def test_pytorch_int8_and_half_precision(tiny_cls_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pocketsize.quantize import quantize, quantize_torch

    model = AutoModelForSequenceClassification.from_pretrained(tiny_cls_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_cls_dir)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    q = quantize_torch(model, "int8")
    assert any("quantized" in type(m).__module__ for m in q.modules())
    with torch.no_grad():
        assert torch.allclose(q(**enc).logits, model(**enc).logits, atol=0.05)
    out = quantize(tiny_cls_dir, method="fp16", out=tmp_path / "fp16")
    half = AutoModelForSequenceClassification.from_pretrained(out, torch_dtype="auto")
    assert half.dtype == torch.float16 and (out / "tokenizer.json").is_file()
    assert quantize_torch(model, "bf16").dtype == torch.bfloat16


def test_bad_inputs(cls_onnx, tiny_cls_dir, tiny_cls_data, tmp_path):
    from datasets import Dataset, DatasetDict

    from pocketsize.quantize import quantize

    cases = [
        (dict(model=cls_onnx, method="magic"), "unknown method"),
        (dict(model=cls_onnx, op_types=["MatMull"]), "unknown operator"),
        (dict(model=cls_onnx, exclude_nodes=["no_such_node"]), "not in the model graph"),
        (dict(model=cls_onnx, target="avx9"), "target: expected 'auto' or 'avx2'"),
        (dict(model=cls_onnx, method="static"), "needs task data"),
        (
            dict(model=cls_onnx, method="static", data=tiny_cls_data, calibration="kl"),
            "calibration: expected 'minmax'",
        ),
        (
            dict(model=cls_onnx, method="auto", data=make_qa_dataset(4, 4, 4)),
            "the data is for extractive-qa",
        ),
        (
            dict(
                model=cls_onnx,
                method="auto",
                data=DatasetDict(
                    {"validation": Dataset.from_dict({"sentence": ["a"], "label": [0]})}
                ),
            ),
            "cannot tell the task",
        ),
        (dict(model=cls_onnx, method="static", data=make_cls_dataset(n_train=3)), "at least 8"),
        (
            dict(
                model=cls_onnx,
                method="static",
                data=DatasetDict({"validation": tiny_cls_data["validation"]}),
            ),
            "no 'train' split",
        ),
    ]
    for i, (kw, message) in enumerate(cases):
        with pytest.raises(PocketsizeError, match=message) as e:
            quantize(kw.pop("model"), kw.pop("data", None), out=tmp_path / f"o{i}", **kw)
        assert "\n" not in str(e.value) and not (tmp_path / f"o{i}").exists()

    corrupt = tmp_path / "corrupt"
    shutil.copytree(cls_onnx, corrupt)
    (corrupt / "model.onnx").write_bytes((cls_onnx / "model.onnx").read_bytes()[:3000])
    with pytest.raises(PocketsizeError, match="truncated or corrupted"):
        quantize(corrupt, out=tmp_path / "c")
    not_onnx = tmp_path / "weights.bin"
    not_onnx.write_bytes(b"\x00" * 100)
    with pytest.raises(PocketsizeError, match="not an .onnx file"):
        quantize(not_onnx, out=tmp_path / "n")
    no_tok = tmp_path / "no-tok"
    no_tok.mkdir()
    shutil.copy2(cls_onnx / "model.onnx", no_tok)
    shutil.copy2(cls_onnx / "config.json", no_tok)
    with pytest.raises(PocketsizeError, match="no tokenizer files"):
        quantize(no_tok, tiny_cls_data, method="static", out=tmp_path / "t")

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(PocketsizeError, match="already exists"):
        quantize(cls_onnx, out=existing)
    assert (existing / "keep.txt").read_text() == "mine"
    quantize(cls_onnx, out=existing, overwrite=True)
    assert (existing / "model_quantized.onnx").is_file() and not (existing / "keep.txt").exists()


def test_cli_quantize(cls_onnx, tmp_path, capsys):
    from pocketsize.cli import main

    out = tmp_path / "cli-int8"
    assert main(["quantize", "--model", str(cls_onnx), "--out", str(out), "--no-per-channel"]) == 0
    assert "model_quantized.onnx" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # argparse: the methods are its choices
        main(["quantize", "--model", str(cls_onnx), "--out", str(tmp_path / "x"), "--method", "x"])
    assert e.value.code == 2 and "invalid choice: 'x'" in capsys.readouterr().err
    # a flag of another method is named with the methods that take it, before any work
    argv = ["quantize", "--model", str(cls_onnx), "--out", str(tmp_path / "y"), "--max-drop", "0.1"]
    assert main(argv) == 2
    assert "max_drop applies to method auto, not dynamic" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
