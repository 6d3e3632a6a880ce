"""Width pruning: hidden channels removed everywhere, a plain transformers model that reloads,
exports with ONNX Runtime's fusions and matches PyTorch; the channels kept are the active ones;
heads and width planned together; the heads of each task and architecture; clear refusals."""

from __future__ import annotations

import json

import pytest
import torch
from zoo import make_cls_dataset, make_qa_dataset, make_tiny_bert, make_tokenizer

from pocketsize.errors import PocketsizeError
from pocketsize.prune import prune
from pocketsize.prune.ffn import remove_neurons
from pocketsize.prune.width import HeadLayer, remove_channels

HIDDEN, N_HEADS, FFN = 32, 4, 37


@pytest.fixture(scope="module")
def data():
    return make_cls_dataset()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("width-src"), seed=5)


def _auto(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path).eval()


def _logits(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


def _replay(model, record):
    """Apply a pruning.json's heads, FFN and width plans to an unpruned model in memory."""
    model.prune_heads({int(k): v for k, v in record["heads"]["removed"].items()})
    if "ffn" in record:
        remove_neurons(model, {int(k): v for k, v in record["ffn"]["removed"].items()})
    return model


def test_width_pruned_model_reloads_exports_and_matches_onnxruntime(tiny, data, tmp_path):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    from pocketsize.export import export

    out = prune(tiny, data, heads=0.5, ffn=0.5, width=0.5, out=tmp_path / "p", verbose=False)
    record = json.loads((out / "stage.json").read_text())
    w = record["width"]
    assert (w["hidden_size_before"], w["hidden_size_after"], w["num_attention_heads"]) == (
        32,
        16,
        2,
    )
    assert [h["reads"] for h in w["head_layers"]] == ["hidden", "bert.pooler.dense"]
    model = _auto(out)  # plain transformers, no pocketsize code
    assert model.config.hidden_size == 16 and not model.config.pruned_heads
    assert model.bert.embeddings.word_embeddings.weight.shape[1] == 16
    assert model.bert.encoder.layer[1].intermediate.dense.weight.shape == (19, 16)
    assert model.classifier.weight.shape == (2, 16)
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = list(data["test"]["text"])[:8]
    torch_logits = _logits(model, tokenizer, texts)
    assert not torch.allclose(torch_logits, _logits(_auto(tiny), tokenizer, texts))

    onnx_dir = export(out, tmp_path / "onnx")  # parity of PyTorch against ONNX Runtime inside
    assert json.loads((onnx_dir / "stage.json").read_text())["parity"]["ok"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(onnx_dir / "model.onnx")).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops  # ONNX Runtime's fusions still fire
    ort_model = ORTModelForSequenceClassification.from_pretrained(onnx_dir)
    got = ort_model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(got, torch_logits, atol=1e-4, rtol=1e-4)


def test_the_active_channels_are_kept(tiny, data, tmp_path):
    """Channels silenced at every LayerNorm carry nothing: they are the first to go."""
    model = _auto(tiny)
    dead = [1, 5, 6, 12, 20, 21, 30, 31]
    norms = [model.bert.embeddings.LayerNorm] + [
        n for layer in model.bert.encoder.layer
        for n in (layer.attention.output.LayerNorm, layer.output.LayerNorm)
    ]  # fmt: skip
    with torch.no_grad():
        for norm in norms:
            norm.weight[dead] = 0
            norm.bias[dead] = 0
    from transformers import AutoTokenizer

    out = prune(
        model, data, heads=0.5, width=0.25, tokenizer=AutoTokenizer.from_pretrained(tiny),
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    kept = json.loads((out / "stage.json").read_text())["width"]["kept_channels"]
    assert len(kept) == 24 and not set(kept) & set(dead)


def test_config_heads_above_the_kept_heads_are_recorded_as_pruned(tiny, data, tmp_path):
    out = prune(tiny, data, heads=0.5, width=0.25, out=tmp_path / "p", verbose=False)
    model = _auto(out)
    config = model.config
    assert (config.hidden_size, config.num_attention_heads) == (24, 3)
    assert {int(k): v for k, v in config.pruned_heads.items()} == {0: [2], 1: [2]}
    assert [layer.attention.self.all_head_size for layer in model.bert.encoder.layer] == [16, 16]
    # the saved model and the recorded plan replayed in memory agree
    record = json.loads((out / "stage.json").read_text())
    replay = _replay(_auto(tiny), record)
    heads = record["width"]["head_layers"]
    plan = [HeadLayer(h["name"], h["reads"], h["kept_outputs"] is not None) for h in heads]
    kept = {h["name"]: h["kept_outputs"] for h in heads if h["kept_outputs"] is not None}
    remove_channels(replay, record["width"]["kept_channels"], plan, kept)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = list(data["test"]["text"])[:6]
    torch.testing.assert_close(_logits(model, tokenizer, texts), _logits(replay, tokenizer, texts))


def test_roberta_head_keeps_its_own_dense_outputs(data, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    tokenizer = make_tokenizer(tmp_path / "tok")
    config = AutoConfig.for_model(
        "roberta", vocab_size=len(tokenizer) + 2, hidden_size=HIDDEN, num_hidden_layers=2,
        num_attention_heads=N_HEADS, intermediate_size=FFN, max_position_embeddings=80,
        num_labels=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    out = prune(
        model, data, heads=0.5, width=0.5, tokenizer=tokenizer, out=tmp_path / "p", verbose=False
    )
    heads = json.loads((out / "stage.json").read_text())["width"]["head_layers"]
    assert [(h["name"], h["reads"]) for h in heads] == [
        ("classifier.dense", "hidden"),
        ("classifier.out_proj", "classifier.dense"),
    ]
    reloaded = _auto(out)
    assert reloaded.classifier.dense.weight.shape == (16, 16)
    assert _logits(reloaded, tokenizer, ["a good film"]).shape == (1, 2)


def test_question_answering_head_reads_the_hidden_states(tiny_qa_dir, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    out = prune(tiny_qa_dir, make_qa_dataset(40, 8, 8), heads=0.5, width=0.5, out=tmp_path / "qa",
                verbose=False)  # fmt: skip
    heads = json.loads((out / "stage.json").read_text())["width"]["head_layers"]
    assert heads == [{"name": "qa_outputs", "reads": "hidden", "kept_outputs": None}]
    model = AutoModelForQuestionAnswering.from_pretrained(out).eval()
    enc = AutoTokenizer.from_pretrained(out)(["which word is good"], ["a good day"],
                                            return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        assert model(**enc).start_logits.shape == enc["input_ids"].shape


def test_width_refusals(tiny, data, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    cases = [
        (dict(width=0.5), "room for 2 heads of size 8, but a layer keeps 4; remove heads too"),
        (dict(width=1.0), "option width: must be a fraction"),
        (dict(width=0.9, heads=0.5), "leaves 0 channels"),
    ]
    for i, (kw, message) in enumerate(cases):
        with pytest.raises(PocketsizeError, match=message) as e:
            prune(tiny, data, out=tmp_path / f"o{i}", verbose=False, **kw)
        assert "\n" not in str(e.value) and not (tmp_path / f"o{i}").exists()
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = AutoConfig.for_model(
        "electra", vocab_size=len(tokenizer), hidden_size=HIDDEN, embedding_size=16,
        num_hidden_layers=2, num_attention_heads=N_HEADS, intermediate_size=FFN, num_labels=2,
    )  # fmt: skip
    electra = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(PocketsizeError, match="embedding_size is 16"):
        prune(electra, data, heads=0.5, width=0.5, tokenizer=tokenizer, out=tmp_path / "e",
              verbose=False)  # fmt: skip


def test_width_pruning_with_recovery_distils_across_widths(tiny, data, tmp_path):
    options = {"epochs": 1, "progress": False, "evaluate": False,
               "losses": {"kl": 0.5, "ce": 0.5, "hidden": 1}}  # fmt: skip
    out = prune(tiny, data, heads=0.5, width=0.5, recover=True, recover_options=options,
                out=tmp_path / "r", verbose=False)  # fmt: skip
    model = _auto(out)
    assert model.config.hidden_size == 16 and "recovery" in json.loads(
        (out / "stage.json").read_text()
    )
