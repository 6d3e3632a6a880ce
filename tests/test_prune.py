"""pocketsize.prune on tiny random BERTs: structure removed, outputs kept, files standard."""

from __future__ import annotations

import json

import pytest
import torch
from zoo import make_cls_dataset, make_qa_dataset, make_tiny_bert, make_tokenizer

from pocketsize.errors import PocketsizeError
from pocketsize.prune import load_pruned, prune
from pocketsize.prune.ffn import remove_neurons

HIDDEN, N_HEADS, HEAD_SIZE, FFN = 32, 4, 8, 37


def auto_cls(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path).eval()


def tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def logits(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


@pytest.fixture(scope="module")
def data():
    return make_cls_dataset()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("prune-src"), seed=3)


@pytest.fixture(scope="module")
def pruned_all(tiny, data, tmp_path_factory):
    """heads 0.5 + FFN 0.5 + vocabulary, one run shared by several tests."""
    out = tmp_path_factory.mktemp("pruned") / "all"
    prune(tiny, data, heads=0.5, ffn=0.5, vocab=True, out=out, verbose=False)
    return out


def test_structured_pruning_reloads_with_from_pretrained_and_same_outputs(tiny, data, tmp_path):
    out = prune(tiny, data, heads=0.5, ffn=0.5, out=tmp_path / "p", verbose=False)
    record = json.loads((out / "stage.json").read_text())
    # the recorded plan applied in memory to the original = the saved and reloaded model
    in_memory = auto_cls(tiny)
    in_memory.prune_heads({int(k): v for k, v in record["heads"]["removed"].items()})
    remove_neurons(in_memory, {int(k): v for k, v in record["ffn"]["removed"].items()})
    reloaded = auto_cls(out)  # plain transformers class, no pocketsize code
    assert reloaded.config.intermediate_size == FFN - round(0.5 * FFN)
    assert [layer.attention.self.num_attention_heads for layer in reloaded.bert.encoder.layer] == [
        2,
        2,
    ]
    texts = list(data["test"]["text"])
    torch.testing.assert_close(
        logits(reloaded, tok(out), texts), logits(in_memory, tok(tiny), texts)
    )
    # and it really changed the function (the test can fail)
    assert not torch.allclose(
        logits(reloaded, tok(out), texts), logits(auto_cls(tiny), tok(tiny), texts)
    )


def _zero_contribution_model(path, dead_heads, dead_neurons):
    """Tiny BERT whose chosen heads and FFN neurons feed nothing into the residual stream."""
    make_tiny_bert(path, seed=5)
    model = auto_cls(path)
    with torch.no_grad():
        for i, layer in enumerate(model.bert.encoder.layer):
            for h in dead_heads[i]:
                layer.attention.output.dense.weight[:, h * HEAD_SIZE : (h + 1) * HEAD_SIZE] = 0
            layer.output.dense.weight[:, dead_neurons[i]] = 0
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("ffn_score", ["activation", "magnitude"])
def test_removing_zero_contribution_heads_and_neurons_keeps_outputs(tmp_path, data, ffn_score):
    dead_heads = {0: [1, 3], 1: [0, 2]}
    n_dead = round(0.5 * FFN)
    dead_neurons = {0: list(range(0, 2 * n_dead, 2)), 1: list(range(FFN - n_dead, FFN))}
    original = _zero_contribution_model(tmp_path / "src", dead_heads, dead_neurons)
    out = prune(
        tmp_path / "src", data, heads=0.5, ffn=0.5, ffn_score=ffn_score,
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["heads"]["removed"] == {str(k): v for k, v in dead_heads.items()}
    assert record["ffn"]["removed"] == {str(k): v for k, v in dead_neurons.items()}
    texts = list(data["test"]["text"])
    torch.testing.assert_close(
        logits(auto_cls(out), tok(out), texts), logits(original, tok(tmp_path / "src"), texts),
        atol=1e-6, rtol=1e-5,
    )  # fmt: skip


def test_parameter_count_drops_by_expected_amount(tiny, pruned_all):
    record = json.loads((pruned_all / "stage.json").read_text())
    n_layers = 2
    per_head = 3 * (HIDDEN * HEAD_SIZE + HEAD_SIZE) + HIDDEN * HEAD_SIZE  # q,k,v rows + out cols
    per_neuron = HIDDEN + 1 + HIDDEN  # intermediate row + bias, output column
    removed_neurons = round(0.5 * FFN)
    removed_rows = record["vocab"]["original_vocab_size"] - record["vocab"]["kept_vocab_size"]
    expected = (
        n_layers * 2 * per_head + n_layers * removed_neurons * per_neuron + removed_rows * HIDDEN
    )
    before = sum(p.numel() for p in auto_cls(tiny).parameters())
    after = sum(p.numel() for p in load_pruned(pruned_all).parameters())
    assert record["params_before"] == before
    assert before - after == expected == record["params_before"] - record["params_after"]
    assert record["file_bytes_after"] < record["file_bytes_before"]


def test_vocab_trim_keeps_predictions_on_fitting_text_and_maps_dropped_pieces_to_unk(
    tiny, data, tmp_path
):
    out = prune(tiny, data, vocab=True, out=tmp_path / "v", verbose=False)
    record = json.loads((out / "stage.json").read_text())["vocab"]
    old_tok, new_tok = tok(tiny), tok(out)
    original, trimmed = auto_cls(tiny), load_pruned(out)
    assert trimmed.config.vocab_size == record["kept_vocab_size"] < record["original_vocab_size"]

    fit_texts = list(data["train"]["text"]) + list(data["validation"]["text"])
    a, b = logits(original, old_tok, fit_texts), logits(trimmed, new_tok, fit_texts)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    torch.testing.assert_close(a, b)

    # unseen text: same pieces; each dropped piece (here "##ly", "##s", "q") becomes [UNK] alone
    unseen = ["the plot was boringly long", "films q and scenes", "x"]
    for text in unseen:
        old_ids, new_ids = old_tok(text)["input_ids"], new_tok(text)["input_ids"]
        assert old_tok.convert_ids_to_tokens(old_ids) == new_tok.convert_ids_to_tokens(new_ids)
    pieces = old_tok.tokenize(" ".join(unseen))
    dropped = [t for t in pieces if new_tok.convert_tokens_to_ids(t) >= trimmed.config.vocab_size]
    assert {"##ly", "##s"} <= set(dropped) and "boring" not in dropped
    # reference: the original model with exactly those pieces replaced by [UNK], one by one
    enc = old_tok(unseen, padding=True, return_tensors="pt")
    kept_old = {old_tok.convert_tokens_to_ids(t) for t in old_tok.get_vocab()
                if new_tok.convert_tokens_to_ids(t) < trimmed.config.vocab_size}  # fmt: skip
    ids = enc["input_ids"].clone()
    ids[~torch.isin(ids, torch.tensor(sorted(kept_old)))] = old_tok.unk_token_id
    assert (ids == old_tok.unk_token_id).sum() > (enc["input_ids"] == old_tok.unk_token_id).sum()
    with torch.no_grad():
        expected = original(**{**enc, "input_ids": ids}).logits
    torch.testing.assert_close(logits(trimmed, new_tok, unseen), expected)


def test_pruned_model_exports_to_onnx_and_matches_in_onnxruntime(pruned_all, data, tmp_path):
    import onnxruntime as ort
    from optimum.exporters.onnx import main_export

    from pocketsize.prune import add_vocab_clamp_to_onnx

    onnx_dir = tmp_path / "onnx"
    main_export(str(pruned_all), onnx_dir, task="text-classification")
    assert add_vocab_clamp_to_onnx(onnx_dir / "model.onnx")
    assert not add_vocab_clamp_to_onnx(onnx_dir / "model.onnx")  # idempotent
    texts = list(data["test"]["text"])[:8] + ["the plot was boringly long", "films q and scenes"]
    tokenizer = tok(onnx_dir)
    enc = tokenizer(texts, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    (got,) = session.run(["logits"], {k: v for k, v in enc.items() if k in names})
    expected = logits(load_pruned(pruned_all), tok(pruned_all), texts).numpy()
    assert abs(got - expected).max() < 1e-5
    assert (enc["input_ids"] >= load_pruned(pruned_all).config.vocab_size).any()
    # the directory is what optimum's ORTModel loads
    from optimum.onnxruntime import ORTModelForSequenceClassification

    ort_model = ORTModelForSequenceClassification.from_pretrained(onnx_dir)
    got = ort_model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    assert abs(got - expected).max() < 1e-5


def test_clamped_torch_model_traces_into_onnx(pruned_all, tmp_path):
    import onnxruntime as ort

    model, tokenizer = load_pruned(pruned_all), tok(pruned_all)
    enc = tokenizer(["films q and scenes", "the cast was good"], padding=True, return_tensors="pt")
    path = tmp_path / "model.onnx"
    args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    torch.onnx.export(
        model, args, str(path), dynamo=False,
        input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
        dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "token_type_ids"]},
    )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.numpy() for k, v in enc.items()})
    with torch.no_grad():
        expected = model(**enc).logits.numpy()
    assert abs(got - expected).max() < 1e-5


def test_global_scope_keeps_at_least_one_head_per_layer(tiny, data, tmp_path):
    out = prune(tiny, data, heads=0.75, scope="global", out=tmp_path / "g", verbose=False)
    record = json.loads((out / "stage.json").read_text())["heads"]
    assert sum(record["kept_per_layer"]) == 2 * N_HEADS - 6
    assert min(record["kept_per_layer"]) >= 1
    assert [
        layer.attention.self.num_attention_heads for layer in auto_cls(out).bert.encoder.layer
    ] == record["kept_per_layer"]


def test_magnitude_sparsity_is_reported_honestly(tiny, tmp_path):
    out = prune(tiny, sparsity=0.5, out=tmp_path / "s", verbose=False)
    record = json.loads((out / "stage.json").read_text())
    assert abs(record["sparsity"]["achieved"] - 0.5) < 0.01
    assert "no time" in record["sparsity"]["note"]
    assert record["params_after"] == record["params_before"]  # zeros are still parameters
    model = auto_cls(out)
    weight = model.bert.encoder.layer[0].intermediate.dense.weight
    assert 0.2 < (weight == 0).float().mean() < 0.8


@pytest.mark.parametrize("model_type", ["roberta", "electra"])
def test_other_bert_like_architectures_prune_and_reload(model_type, data, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    tokenizer = make_tokenizer(tmp_path / "tok")
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer) + 2, hidden_size=HIDDEN, num_hidden_layers=2,
        num_attention_heads=N_HEADS, intermediate_size=FFN, max_position_embeddings=80,
        num_labels=2, pad_token_id=0, **({"embedding_size": HIDDEN} if model_type == "electra" else {}),
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    out = prune(
        model, data, heads=0.5, ffn=0.5, tokenizer=tokenizer, out=tmp_path / "p", verbose=False
    )
    reloaded = auto_cls(out)
    assert reloaded.config.model_type == model_type and reloaded.config.intermediate_size == 19
    texts = list(data["test"]["text"])[:4]
    record = json.loads((out / "stage.json").read_text())
    model.prune_heads({int(k): v for k, v in record["heads"]["removed"].items()})
    remove_neurons(model, {int(k): v for k, v in record["ffn"]["removed"].items()})
    torch.testing.assert_close(logits(reloaded, tokenizer, texts), logits(model, tokenizer, texts))


# ---- bad input: one clear PocketsizeError each, before any work, nothing written ----


@pytest.mark.parametrize("kwargs", [{"heads": 0}, {"heads": 1.0}, {"ffn": -0.2}, {"sparsity": 1.5}])
def test_fraction_outside_open_interval_is_refused(tiny, data, tmp_path, kwargs):
    with pytest.raises(PocketsizeError, match="strictly between 0 and 1"):
        prune(tiny, data, out=tmp_path / "x", verbose=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_fraction_that_empties_a_layer_is_refused(tiny, data, tmp_path):
    with pytest.raises(PocketsizeError, match="all 4 heads of layer 0"):
        prune(tiny, data, heads=0.9, out=tmp_path / "x", verbose=False)
    assert not (tmp_path / "x").exists()


def test_unknown_architecture_is_named(data, tmp_path):
    from transformers import AlbertConfig, AlbertForSequenceClassification

    tokenizer = make_tokenizer(tmp_path / "tok")
    config = AlbertConfig(
        vocab_size=len(tokenizer) + 1, embedding_size=16, hidden_size=HIDDEN,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
    )  # fmt: skip
    model = AlbertForSequenceClassification(config)
    with pytest.raises(PocketsizeError, match=r"'albert'.*supported: bert, roberta.*distilbert"):
        prune(model, data, heads=0.5, tokenizer=tokenizer, out=tmp_path / "x", verbose=False)
    assert not (tmp_path / "x").exists()


def test_too_small_dataset_says_how_many_examples_it_needs(tiny, tmp_path):
    small = make_cls_dataset(n_train=10, n_val=4, n_test=4)
    with pytest.raises(PocketsizeError, match="at least 32 .* has 10"):
        prune(tiny, small, heads=0.5, out=tmp_path / "x", verbose=False)


def test_vocab_trim_on_slow_tokenizer_is_refused(tiny, data, tmp_path):
    from transformers import BertTokenizer

    slow = BertTokenizer(vocab_file=str(tiny / "vocab.txt"))
    with pytest.raises(PocketsizeError, match="fast"):
        prune(auto_cls(tiny), data, vocab=True, tokenizer=slow, out=tmp_path / "x", verbose=False)


def test_existing_output_is_not_overwritten(tiny, data, pruned_all):
    before = (pruned_all / "model.safetensors").read_bytes()
    with pytest.raises(PocketsizeError, match="already exists"):
        prune(tiny, data, heads=0.5, out=pruned_all, verbose=False)
    assert (pruned_all / "model.safetensors").read_bytes() == before


def test_cli_prunes_and_reports_errors(tiny, data, tmp_path, capsys):
    from pocketsize.cli import main

    data.save_to_disk(tmp_path / "data")
    out = tmp_path / "cli-out"
    argv = ["prune", "--model", str(tiny), "--data", str(tmp_path / "data"), "--out", str(out)]
    assert main(argv + ["--heads", "0.5", "--vocab"]) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "weights file" in printed and "vocabulary rows" in printed
    assert json.loads((out / "stage.json").read_text())["heads"]["kept_per_layer"] == [2, 2]
    assert main(argv + ["--heads", "2"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err


def test_recovery_distils_from_the_unpruned_model(tiny, data, tmp_path):
    options = {"epochs": 1, "progress": False, "evaluate": False, "logging_steps": 1}
    out = prune(
        tiny, data, heads=0.5, ffn=0.5, recover=True, recover_options=options,
        out=tmp_path / "r", verbose=False,
    )  # fmt: skip
    plain = prune(tiny, data, heads=0.5, ffn=0.5, out=tmp_path / "plain", verbose=False)
    record = json.loads((out / "stage.json").read_text())
    assert record["recovery"]["method"] == "pocketsize.distill"
    # how it was recovered: the distillation's steps, time and logged losses
    steps = record["recovery"]["steps"]
    assert steps >= 1 and record["recovery"]["wall_time_s"] > 0
    assert record["recovery"]["losses"] and record["recovery"]["losses"][-1]["step"] <= steps
    assert (
        record["heads"]["removed"]
        == json.loads((plain / "stage.json").read_text())["heads"]["removed"]
    )
    recovered = auto_cls(out)
    assert recovered.config.intermediate_size == 19
    texts = list(data["test"]["text"])
    # same structure, but distillation moved the weights
    assert not torch.allclose(
        logits(recovered, tok(out), texts), logits(auto_cls(plain), tok(plain), texts)
    )


def test_recovery_trains_with_the_pruning_seed_unless_its_options_name_one(tiny, data, tmp_path):
    options = {"epochs": 1, "progress": False, "evaluate": False}
    runs = {}
    for name, extra in (("inherited", {}), ("own", {"seed": 5})):
        out = prune(
            tiny, data, heads=0.5, recover=True, recover_options={**options, **extra}, seed=3,
            out=tmp_path / name, verbose=False,
        )  # fmt: skip
        runs[name] = out
        assert json.loads((out / "stage.json").read_text())["recovery"]["seed"] == (
            extra.get("seed", 3)
        )
    # the same heads go (the scoring sample follows the pruning's seed), the training differs
    texts = list(data["test"]["text"])
    assert not torch.allclose(
        logits(auto_cls(runs["inherited"]), tok(runs["inherited"]), texts),
        logits(auto_cls(runs["own"]), tok(runs["own"]), texts),
    )


def test_recovery_toward_another_teacher(tiny, data, tmp_path):
    other = make_tiny_bert(tmp_path / "other-teacher", seed=11)
    options = {"epochs": 1, "progress": False, "evaluate": False}
    out = prune(
        tiny, data, heads=0.5, recover=True, recover_options=options, recover_teacher=other,
        out=tmp_path / "r", verbose=False,
    )  # fmt: skip
    own = prune(
        tiny, data, heads=0.5, recover=True, recover_options=options, out=tmp_path / "own",
        verbose=False,
    )  # fmt: skip
    assert json.loads((out / "stage.json").read_text())["recovery"]["teacher"] == str(other)
    assert json.loads((own / "stage.json").read_text())["recovery"]["teacher"] == (
        "the unpruned model"
    )
    texts = list(data["test"]["text"])
    assert not torch.allclose(
        logits(auto_cls(out), tok(out), texts), logits(auto_cls(own), tok(own), texts)
    )
    with pytest.raises(PocketsizeError, match="recover_teacher= needs recover=True"):
        prune(tiny, data, heads=0.5, recover_teacher=other, out=tmp_path / "x", verbose=False)


def test_extractive_qa_model_prunes_scored_on_its_answer_spans(tiny_qa_dir, tmp_path):
    from transformers import AutoModelForQuestionAnswering

    data = make_qa_dataset(40, 8, 8)
    out = prune(
        tiny_qa_dir, data, heads=0.5, ffn=0.5, vocab=True, out=tmp_path / "qa", verbose=False
    )
    record = json.loads((out / "stage.json").read_text())
    assert record["task"] == "extractive-qa"
    assert record["heads"]["scoring_loss"] == "task labels"
    model = load_pruned(out)
    assert isinstance(model, AutoModelForQuestionAnswering._model_mapping[type(model.config)])
    in_memory = AutoModelForQuestionAnswering.from_pretrained(tiny_qa_dir).eval()
    in_memory.prune_heads({int(k): v for k, v in record["heads"]["removed"].items()})
    remove_neurons(in_memory, {int(k): v for k, v in record["ffn"]["removed"].items()})
    q, c = list(data["test"]["question"]), list(data["test"]["context"])
    with torch.no_grad():
        a = in_memory(**tok(tiny_qa_dir)(q, c, padding=True, return_tensors="pt")).start_logits
        b = model(**tok(out)(q, c, padding=True, return_tensors="pt")).start_logits
    torch.testing.assert_close(a, b)


def test_vocab_extra_text_and_keep_list_keep_their_pieces(tiny, data, tmp_path):
    keep_file = tmp_path / "keep.txt"
    keep_file.write_text("##ed\n")
    out = prune(
        tiny, data, vocab=True, vocab_extra_text=["the plot was boringly long"],
        vocab_keep=keep_file, out=tmp_path / "v", verbose=False,
    )  # fmt: skip
    new_tok, kept = tok(out), load_pruned(out).config.vocab_size
    for piece in ("##ly", "##ed", "boring"):
        assert new_tok.convert_tokens_to_ids(piece) < kept
    assert new_tok.convert_tokens_to_ids("##ing") >= kept  # used by nothing given
    with pytest.raises(PocketsizeError, match="not in the tokenizer"):
        prune(tiny, data, vocab=True, vocab_keep=["nonexistentpiece"], out=tmp_path / "w")


def test_vocab_corpora_keep_the_pieces_of_a_dataset_text(tiny, data, tmp_path):
    corpus = tmp_path / "corpus.csv"
    corpus.write_text(
        "text,label\n" + "".join(f"the filming {c},a\n" for c in "bcdefghjklmnopqrtuvw")
    )
    out = prune(
        tiny, data, vocab=True, vocab_corpora=[str(corpus)], out=tmp_path / "c", verbose=False
    )
    new_tok, kept = tok(out), load_pruned(out).config.vocab_size
    assert new_tok.convert_tokens_to_ids("##ing") < kept  # "filming": film + ##ing
    record = json.loads((out / "stage.json").read_text())
    assert record["vocab"]["corpora"] == [str(corpus)]


def test_vocab_min_count_drops_the_rare_pieces_and_keeps_the_special_ones(tiny, data, tmp_path):
    out1 = prune(tiny, data, vocab=True, out=tmp_path / "m1", verbose=False)
    out3 = prune(tiny, data, vocab=True, vocab_min_count=3, out=tmp_path / "m3", verbose=False)
    kept1, kept3 = load_pruned(out1).config.vocab_size, load_pruned(out3).config.vocab_size
    assert kept3 < kept1
    record = json.loads((out3 / "stage.json").read_text())["vocab"]
    assert record["min_count"] == 3 and record["kept_vocab_size"] == kept3
    new_tok = tok(out3)
    assert all(i < kept3 for i in new_tok.all_special_ids)
    with pytest.raises(PocketsizeError, match="vocab_min_count"):
        prune(tiny, data, vocab=True, vocab_min_count=0, out=tmp_path / "m0", verbose=False)


def test_pruning_a_pruned_model_again(pruned_all, data, tmp_path):
    out = prune(pruned_all, data, heads=0.5, ffn=0.5, out=tmp_path / "again", verbose=False)
    model = load_pruned(out)
    assert [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer] == [
        1,
        1,
    ]
    assert model.config.intermediate_size == 19 - round(0.5 * 19)
    assert (
        model.config.pocketsize_vocab_trim == load_pruned(pruned_all).config.pocketsize_vocab_trim
    )
    texts = ["the plot was boringly long", "films q and scenes"]
    assert logits(model, tok(out), texts).shape == (2, 2)  # dropped pieces still read [UNK]
