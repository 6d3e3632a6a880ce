"""evaluate() end to end on tiny random models: runners agree, report files, bad inputs, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _eval_helpers import convert_to_ort, export_onnx, make_trained_looking_bert, quantize_onnx
from zoo import make_cls_dataset, make_qa_dataset, make_tiny_bert

from pocketsize.errors import PocketsizeError
from pocketsize.eval import evaluate, load_pipeline
from pocketsize.eval.report import Report
from pocketsize.tasks.qa import ExtractiveQA

FAST = dict(latency=False, memory=False, progress=False, threads=1)


@pytest.fixture(scope="module")
def cls_variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-cls")
    teacher = make_trained_looking_bert(root / "teacher")
    onnx_dir = export_onnx(teacher, root / "onnx")
    return {
        "teacher": teacher,
        "onnx": onnx_dir,
        "int8": quantize_onnx(onnx_dir, root / "int8"),
        "mobile": convert_to_ort(onnx_dir / "model.onnx", root / "mobile"),
    }


@pytest.fixture(scope="module")
def full_report(cls_variants, tiny_cls_data):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    in_memory = AutoModelForSequenceClassification.from_pretrained(cls_variants["teacher"])
    tokenizer = AutoTokenizer.from_pretrained(cls_variants["teacher"])
    variants = dict(cls_variants, memory_model=(in_memory, tokenizer))
    return evaluate(
        variants,
        tiny_cls_data,
        reference="teacher",
        final="int8",
        batch_sizes=(1, 8),
        threads=1,
        latency_examples=16,
        repeats=2,
        warmup=1,
        progress=False,
    )


def test_pytorch_and_onnx_runners_give_the_same_predictions(full_report):
    teacher = full_report["teacher"]
    for name in ("onnx", "mobile", "memory_model"):
        v = full_report[name]
        assert v["agreement"] == 1.0, name
        assert v["disagreements_total"] == 0 and v["disagreements"] == []
        assert v["metric"]["value"] == teacher["metric"]["value"]
        assert v["fidelity"]["max_abs_logit_diff"] < 1e-4, name
        assert v["fidelity"]["kl"] < 1e-8
    assert full_report["onnx"]["kind"] == "onnx" and full_report["mobile"]["kind"] == "ort"
    # int8 moves logits a little, yet not by much on a model this small
    assert 0 < full_report["int8"]["fidelity"]["max_abs_logit_diff"] < 0.1
    assert full_report["int8"]["files"][0] == "model_quantized.onnx"
    # what ships with a fast tokenizer: tokenizer.json, not the slow tokenizer's vocab.txt twin
    assert "tokenizer.json" in full_report["int8"]["files"]
    assert "vocab.txt" not in full_report["int8"]["files"] + full_report["teacher"]["files"]
    # all of the parameters, embeddings included, counted alike in PyTorch and in ONNX
    assert full_report["onnx"]["params"] == pytest.approx(teacher["params"], rel=0.01)
    assert full_report["int8"]["params"] == pytest.approx(teacher["params"], rel=0.01)


def test_report_figures_are_consistent(full_report):
    m = full_report.metrics
    assert m["schema_version"] and m["task"] == "text-classification"
    assert m["reference"] == "teacher" and m["final"] == "int8"
    # the exact graph agrees with the teacher as the int8 one does, give or take its rounding
    onnx_vs_final = full_report["onnx"]["agreement_vs_final"]
    assert onnx_vs_final["value"] == pytest.approx(1.0 - full_report["int8"]["agreement"])
    assert m["settings"]["latency"]["inputs_timed"] == 16
    ref = m["variants"]["teacher"]
    for v in m["variants"].values():
        assert v["retention"] == pytest.approx(v["metric"]["value"] / ref["metric"]["value"])
        assert v["size_ratio"] == pytest.approx(ref["size_bytes"] / v["size_bytes"])
        assert set(v["latency_ms"]) == {"1", "8"}
        for stats in v["latency_ms"].values():
            assert 0 < stats["p50"] <= stats["p95"]
            assert stats["p50_spread"][0] <= stats["p50"] * 1.5
        assert v["latency_ms"]["1"]["calls"] == 16 * 2 and v["latency_ms"]["8"]["calls"] == 2 * 2
        assert v["speedup"] == pytest.approx(
            ref["latency_ms"]["1"]["p50"] / v["latency_ms"]["1"]["p50"]
        )
        assert v["metric"]["ci_low"] <= v["metric"]["value"] <= v["metric"]["ci_high"]
        cm = np.asarray(v["confusion_matrix"]["matrix"])
        assert cm.sum() == m["settings"]["examples"]
        assert np.trace(cm) / cm.sum() == pytest.approx(v["metric"]["value"])
        assert v["memory"]["peak_rss_bytes"] >= v["memory"]["baseline_rss_bytes"] > 0
    # ONNX Runtime alone needs far less memory than torch + transformers
    assert m["variants"]["onnx"]["memory"]["peak_rss_bytes"] < ref["memory"]["peak_rss_bytes"]
    assert m["variants"]["memory_model"]["size_source"] == "in-memory tensors"


def test_report_files_written_and_parseable(full_report, tmp_path):
    out = full_report.save(tmp_path / "report")
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "report.md", "report.html", "pareto.png", "stages.png"} <= names
    assert "confusion_matrix.png" in names
    for png in ("pareto.png", "stages.png", "confusion_matrix.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variants"].keys() == full_report.variants.keys()
    for v in metrics["variants"].values():
        assert {"size_bytes", "params", "metric", "retention", "agreement", "latency_ms"} <= set(v)
        assert {"p50", "p95"} <= set(v["latency_ms"]["1"])
    md = (out / "report.md").read_text()
    assert "| teacher (ref) |" in md and "int8 (final)" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<img" in html
    assert Report.load(out).table() == full_report.table()
    with pytest.raises(PocketsizeError, match="already exists"):
        full_report.save(out)


def test_qa_pytorch_and_onnx_agree_with_long_contexts(tmp_path):
    qa_dir = make_tiny_bert(tmp_path / "qa", "extractive-qa")
    onnx_dir = export_onnx(qa_dir, tmp_path / "qa-onnx", task="extractive-qa")
    data = make_qa_dataset(6, 6, 6, long=True, unanswerable_every=3)
    task = ExtractiveQA(max_length=32, doc_stride=8, max_answer_length=6)
    report = evaluate({"pt": qa_dir, "onnx": onnx_dir}, data, task=task, **FAST)
    pt, onnx = report["pt"], report["onnx"]
    assert report.metrics["task"] == "extractive-qa" and pt["metric"]["name"] == "f1"
    assert onnx["agreement"] == 1.0 and onnx["fidelity"]["f1_vs_reference"] == 1.0
    assert onnx["fidelity"]["max_abs_logit_diff"] < 1e-4
    assert onnx["metric"]["value"] == pt["metric"]["value"]
    assert {"exact_match", "f1", "no_answer_total"} <= set(pt["metrics"])
    question, context = data["test"][1]["question"], data["test"][1]["context"]
    answer = load_pipeline(onnx_dir)(question=question, context=context)
    assert answer["answer"] and answer["answer"] in context


# ---- bad input: one clear error, before long work ----


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_reference_not_among_variants(tiny_cls_dir, tiny_cls_data):
    with pytest.raises(PocketsizeError, match="reference 'nope' is not among the variants"):
        evaluate({"teacher": tiny_cls_dir}, tiny_cls_data, reference="nope", **FAST)


def test_missing_split_and_empty_dataset(tiny_cls_dir, tiny_cls_data):
    with pytest.raises(PocketsizeError, match="no 'dev' split .*train, validation, test"):
        evaluate({"t": tiny_cls_dir}, tiny_cls_data, split="dev", **FAST)
    with pytest.raises(PocketsizeError, match="no question, context, answers column"):
        evaluate({"t": tiny_cls_dir}, tiny_cls_data, task="extractive-qa", **FAST)
    empty = tiny_cls_data["test"].select([])
    with pytest.raises(PocketsizeError, match="empty"):
        evaluate({"t": tiny_cls_dir}, empty, **FAST)


def test_label_count_and_label_names_mismatch(tiny_cls_dir, tiny_cls_data, tmp_path):
    three = _copy(tiny_cls_dir, tmp_path / "three")
    _edit_config(three, id2label={"0": "a", "1": "b", "2": "c"}, label2id={"a": 0, "b": 1, "c": 2})
    with pytest.raises(PocketsizeError, match="variant 'three' predicts 3 labels .*'t' predicts 2"):
        evaluate({"t": tiny_cls_dir, "three": three}, tiny_cls_data, **FAST)
    with pytest.raises(PocketsizeError, match="'negative', 'positive' are not among the labels va"):
        evaluate({"three": three}, tiny_cls_data, **FAST)
    # the same labels in another order are matched by name (tests/test_label_mapping.py)


def test_tokenizer_larger_than_model_vocabulary(tiny_cls_dir, tiny_cls_data, tmp_path):
    from transformers import AutoTokenizer

    bigger = _copy(tiny_cls_dir, tmp_path / "bigger")
    tok = AutoTokenizer.from_pretrained(bigger)
    tok.add_tokens(["zebra", "yak", "xylophone"])
    tok.save_pretrained(bigger)
    with pytest.raises(PocketsizeError, match="tokenizer has \\d+ tokens but the model's vocab"):
        evaluate({"t": tiny_cls_dir, "bigger": bigger}, tiny_cls_data, **FAST)


def test_onnx_inputs_the_runner_cannot_feed(tiny_cls_dir, tiny_cls_data, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    odd = tmp_path / "odd"
    odd.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (tiny_cls_dir / f).exists():
            shutil.copy(tiny_cls_dir / f, odd / f)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixel_values"], ["logits"])],
        "odd",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["b", 2]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 2])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), odd / "model.onnx"
    )
    with pytest.raises(PocketsizeError, match="has inputs input_ids, pixel_values but the runner"):
        evaluate({"t": tiny_cls_dir, "odd": odd}, tiny_cls_data, **FAST)


def test_ambiguous_onnx_directory_names_its_files(tiny_cls_data, cls_variants, tmp_path):
    two = _copy(cls_variants["onnx"], tmp_path / "two")
    shutil.copy(two / "model.onnx", two / "other.onnx")
    (two / "model.onnx").rename(two / "first.onnx")
    with pytest.raises(PocketsizeError, match="several ONNX files .*first.onnx, other.onnx"):
        evaluate({"two": two}, tiny_cls_data, **FAST)
    report = evaluate({"two": two / "other.onnx"}, tiny_cls_data, **FAST)  # choosing the file
    assert report["two"]["files"][0] == "other.onnx"


# ---- using the result ----


def test_load_pipeline_over_pytorch_onnx_and_ort(cls_variants):
    text = "a brilliant and moving film"
    results = [load_pipeline(cls_variants[n])(text)[0] for n in ("teacher", "int8", "mobile")]
    labels = {r["label"] for r in results}
    assert labels <= {"negative", "positive"} and len(labels) == 1
    assert results[0]["score"] == pytest.approx(results[2]["score"], abs=1e-4)


def test_cli_eval_and_predict(cls_variants, tmp_path, capsys):
    from pocketsize.cli import main

    data_dir = tmp_path / "data"
    make_cls_dataset(n_test=12).save_to_disk(str(data_dir))
    out = tmp_path / "cli-report"
    args = ["eval", "--model", f"teacher={cls_variants['teacher']}"]
    args += ["--model", f"int8={cls_variants['int8']}", "--data", str(data_dir)]
    args += ["--reference", "teacher", "--out", str(out), "--threads", "1", "--no-memory"]
    args += ["--batch-sizes", "1,4", "--latency-examples", "8", "--repeats", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| int8 |" in printed and (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["settings"]["examples"] == 12
    assert main(args) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    assert (
        main(["eval", "--model", "nodir", "--data", str(data_dir), "--out", str(tmp_path / "x")])
        == 2
    )
    assert "expected NAME=PATH" in capsys.readouterr().err
    assert main(["predict", "--model", str(cls_variants["int8"]), "good film", "bad film"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])[0]["label"] in ("negative", "positive")
