"""Export: optimum and torch.onnx paths, parity, graph optimisation, .ort, bad inputs, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from zoo import make_tokenizer, tiny_bert_config

from pocketsize.errors import PocketsizeError


@pytest.fixture(scope="module")
def cls_onnx(tiny_cls_dir, tmp_path_factory):
    from pocketsize.export import export

    return export(tiny_cls_dir, tmp_path_factory.mktemp("exp") / "cls-onnx", mobile=True)


def test_classification_export_matches_pytorch_and_loads_in_pipeline(tiny_cls_dir, cls_onnx):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    manifest = json.loads((cls_onnx / "stage.json").read_text())
    assert manifest["file"] == "model.onnx" and manifest["exporter"] == "optimum"
    assert manifest["task"] == "text-classification"
    # the CPU fusions fired (attention + layer norms), and parity ran on the fused graph
    assert (
        manifest["optimization"]["applied"] and manifest["optimization"]["fused"]["Attention"] == 2
    )
    parity = json.loads((cls_onnx / "stage.json").read_text())["parity"]
    assert parity["ok"] and len(parity["cases"]) == 3
    assert len({tuple(c["input_shapes"]["input_ids"]) for c in parity["cases"]}) == 3
    assert parity["max_abs_diff"] < 1e-4

    tok = AutoTokenizer.from_pretrained(cls_onnx)
    ort_model = ORTModelForSequenceClassification.from_pretrained(cls_onnx)
    pt_model = AutoModelForSequenceClassification.from_pretrained(tiny_cls_dir)
    texts = ["a good film", "the plot was dull but the music was lovely and the cast superb"]
    ort_out = pipeline("text-classification", model=ort_model, tokenizer=tok)(texts)
    pt_out = pipeline("text-classification", model=pt_model, tokenizer=tok)(texts)
    assert [o["label"] for o in ort_out] == [o["label"] for o in pt_out]
    assert np.allclose([o["score"] for o in ort_out], [o["score"] for o in pt_out], atol=1e-4)


def test_ort_mobile_file_loads_and_matches(cls_onnx):
    import onnxruntime as ort

    manifest = json.loads((cls_onnx / "stage.json").read_text())
    assert manifest["mobile"]["file"] == "model.ort" and manifest["mobile"]["max_abs_diff"] < 1e-4
    assert (cls_onnx / "model.required_operators.config").is_file()
    sess = ort.InferenceSession(str(cls_onnx / "model.ort"), providers=["CPUExecutionProvider"])
    ids = np.array([[2, 7, 8, 3]], dtype=np.int64)
    feed = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
    ref = ort.InferenceSession(str(cls_onnx / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.allclose(sess.run(None, feed)[0], ref.run(None, feed)[0], atol=1e-5)


def test_to_mobile_on_a_quantized_like_dir(cls_onnx, tmp_path):
    from pocketsize.export import to_mobile

    d = tmp_path / "copy"
    shutil.copytree(cls_onnx, d, ignore=shutil.ignore_patterns("*.ort", "*.config"))
    path = to_mobile(d)
    assert path == d / "model.ort" and path.stat().st_size > 0


def test_qa_export_with_torch_exporter_matches_pipeline(tiny_qa_dir, tmp_path):
    from optimum.onnxruntime import ORTModelForQuestionAnswering
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    from pocketsize.export import export

    out = export(tiny_qa_dir, tmp_path / "qa-onnx", exporter="torch")
    manifest = json.loads((out / "stage.json").read_text())
    assert manifest["exporter"] == "torch" and manifest["task"] == "extractive-qa"
    tok = AutoTokenizer.from_pretrained(out)
    q = {"question": "what was weak?", "context": "the plot was weak but the music was lovely"}
    ort_ans = pipeline(
        "question-answering", model=ORTModelForQuestionAnswering.from_pretrained(out), tokenizer=tok
    )(q)
    pt_ans = pipeline(
        "question-answering",
        model=AutoModelForQuestionAnswering.from_pretrained(tiny_qa_dir),
        tokenizer=tok,
    )(q)
    assert ort_ans["answer"] == pt_ans["answer"] and abs(ort_ans["score"] - pt_ans["score"]) < 1e-4


def test_unknown_architecture_falls_back_to_torch_export(tmp_path):
    """ERNIE is "not supported yet" by optimum-onnx 0.1.0: the torch.onnx fallback exports it."""
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import ErnieConfig, ErnieForSequenceClassification

    from pocketsize.export import export

    src = tmp_path / "ernie"
    tok = make_tokenizer(src)
    base = tiny_bert_config(len(tok)).to_dict()
    config = ErnieConfig(
        **{
            k: base[k]
            for k in (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
            )
        },
        num_labels=2,
    )
    torch.manual_seed(0)
    model = ErnieForSequenceClassification(config).eval()
    model.save_pretrained(src)
    out = export(src, tmp_path / "ernie-onnx")
    manifest = json.loads((out / "stage.json").read_text())
    assert manifest["exporter"] == "torch"
    assert not manifest["optimization"]["applied"] and "ernie" in manifest["optimization"]["reason"]
    assert manifest["parity_max_abs_diff"] < 1e-4
    ort_model = ORTModelForSequenceClassification.from_pretrained(out)
    enc = tok(
        ["a good film", "a very long and boring film with a weak cast"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        expected = model(**enc).logits
    assert torch.allclose(ort_model(**enc).logits, expected, atol=1e-4)


class TinyBagModel:
    """A non-transformers module: embedding -> mean over tokens -> linear (the BiLSTM student's shape)."""

    def __new__(cls):
        import torch

        class Bag(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(50, 8)
                self.out = torch.nn.Linear(8, 3)

            def forward(self, input_ids, attention_mask):
                mask = attention_mask.unsqueeze(-1).float()
                pooled = (self.emb(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
                return self.out(pooled)

        torch.manual_seed(0)
        return Bag().eval()


def test_plain_module_export_has_dynamic_batch_and_sequence(tmp_path):
    import onnxruntime as ort
    import torch

    from pocketsize.export import export

    ids = torch.randint(0, 50, (2, 10))
    out = export(
        TinyBagModel(),
        tmp_path / "bag",
        example_inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
        output_names=["logits"],
    )
    parity = json.loads((out / "stage.json").read_text())["parity"]
    shapes = [tuple(c["input_shapes"]["input_ids"]) for c in parity["cases"]]
    assert shapes == [(2, 10), (6, 10), (2, 5)]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 50, (5, 23))
    assert sess.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})[0].shape == (5, 3)


def test_parity_failure_is_loud_and_names_the_difference(cls_onnx, tiny_cls_dir):
    import torch
    from transformers import AutoTokenizer

    from pocketsize.export import check_parity
    from pocketsize.export.parity import sample_inputs

    tok = AutoTokenizer.from_pretrained(tiny_cls_dir)

    def wrong_model(input_ids, attention_mask, token_type_ids):
        return (torch.ones(input_ids.shape[0], 2),)

    with pytest.raises(PocketsizeError, match=r"differs from PyTorch by [0-9.e+-]+ .*tolerance"):
        check_parity(
            wrong_model,
            cls_onnx / "model.onnx",
            sample_inputs(tok, "text-classification"),
            ["logits"],
        )


def test_bad_inputs_give_one_line_errors(tiny_cls_dir, cls_onnx, tmp_path):
    from pocketsize.export import export, find_onnx_file

    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy2(tiny_cls_dir / f, no_tok / f)
    with pytest.raises(PocketsizeError, match="no tokenizer files") as e:
        export(no_tok, tmp_path / "o1")
    assert "\n" not in str(e.value) and not (tmp_path / "o1").exists()
    with pytest.raises(PocketsizeError, match="already an ONNX"):
        export(cls_onnx, tmp_path / "o2")
    with pytest.raises(PocketsizeError, match="exporter: must be auto or a registered exporter"):
        export(tiny_cls_dir, tmp_path / "o3", exporter="tflite")
    with pytest.raises(PocketsizeError, match="not found"):
        export(tmp_path / "missing", tmp_path / "o4")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes((cls_onnx / "model.onnx").read_bytes()[:5000])
    with pytest.raises(PocketsizeError, match="truncated or corrupted"):
        find_onnx_file(broken)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(PocketsizeError, match="not an .onnx file"):
        find_onnx_file(text)


def test_existing_output_is_kept_unless_overwrite(tiny_cls_dir, tmp_path):
    from pocketsize.export import export

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PocketsizeError, match="already exists"):
        export(tiny_cls_dir, out, optimize=False)
    assert (out / "keep.txt").read_text() == "mine"
    export(tiny_cls_dir, out, optimize=False, overwrite=True)
    assert (out / "model.onnx").is_file() and not (out / "keep.txt").exists()
    manifest = json.loads((out / "stage.json").read_text())
    assert manifest["optimization"] == {"applied": False, "reason": "disabled (optimize=False)"}


def test_cli_export(tiny_cls_dir, tmp_path, capsys):
    from pocketsize.cli import main

    out = tmp_path / "cli-onnx"
    assert main(["export", "--model", str(tiny_cls_dir), "--out", str(out), "--no-optimize"]) == 0
    assert "parity max diff" in capsys.readouterr().out
    assert main(["export", "--model", str(tiny_cls_dir), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
