"""The data's labels are matched to a model's outputs by name (pocketsize.tasks.labels), not by
position: a model listing its labels in another order scores the same, numbers against named
labels need --label-map, a label the model does not know is refused by name, a subset of the
model's labels is evaluated with a note. Gold labels here are the tiny models' own predictions
(by name), so the right mapping scores 1.0 and a positional one scores far below."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from _eval_helpers import export_onnx, make_trained_looking_bert
from zoo import NEUTRAL, POSITIVE, make_sentences, make_tokenizer, tiny_bert_config

from pocketsize.cli import main
from pocketsize.errors import PocketsizeError
from pocketsize.eval import evaluate
from pocketsize.tasks.labels import map_labels, parse_label_map

FAST = dict(latency=False, memory=False, progress=False, threads=1, bootstrap_samples=20)
QUIET_EVAL = ["--no-latency", "--no-memory"]
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


# ---- the mapping itself ----


def test_labels_are_matched_by_name_and_unknown_ones_refused_by_name():
    mapping = map_labels(["negative", "positive"], ["positive", "negative"])
    assert mapping.index == {"negative": 1, "positive": 0} and not mapping.identity
    with pytest.raises(
        PocketsizeError, match=r"labels 'neg', 'pos' are not among the labels the m"
    ):
        map_labels(["neg", "pos"], ["negative", "positive"])
    with pytest.raises(
        PocketsizeError, match=r"label 'neutral' is not among .*--label-map neutral=NAME"
    ):
        map_labels(["negative", "neutral", "positive"], ["negative", "positive"])
    mapped = map_labels(
        ["neg", "pos"], ["negative", "positive"], {"neg": "negative", "pos": "positive"}
    )
    assert mapped.index == {"neg": 0, "pos": 1} and mapped.names == ["negative", "positive"]
    with pytest.raises(PocketsizeError, match=r"maps 'pos' to 'postive', which the model does not"):
        map_labels(["neg", "pos"], ["negative", "positive"], "neg=negative,pos=postive")


def test_case_and_spacing_differences_are_named():
    with pytest.raises(
        PocketsizeError,
        match=r"labels 'Negative', 'positive ' differ only in case or spacing from 'negative', "
        r"'positive', .* --label-map 'Negative=negative,positive =positive'",
    ):
        map_labels(["Negative", "positive", "positive "], ["negative", "positive"])


def test_numbers_against_named_labels_need_a_label_map():
    with pytest.raises(PocketsizeError, match=r"numbers \(0, 1\) .*--label-map 0=NAME,1=NAME"):
        map_labels(["0", "1"], ["negative", "positive"])
    assert map_labels(["0", "1"], ["negative", "positive"], "0=positive,1=negative").index == {
        "0": 1,
        "1": 0,
    }
    # a YAML recipe gives number keys
    assert parse_label_map({0: "negative", 1: "positive"}) == {"0": "negative", "1": "positive"}
    with pytest.raises(PocketsizeError, match="expected DATA=MODEL pairs"):
        parse_label_map("0:negative")


def test_a_subset_is_matched_with_a_note_and_unnamed_outputs_go_by_index():
    subset = map_labels(["positive"], ["negative", "positive"])
    assert subset.index == {"positive": 1}
    assert "holds 1 of the 2 labels" in subset.notes[0] and "labelled negative" in subset.notes[0]
    # transformers' placeholders: a number is its index, names go in order with a note
    assert map_labels(["1"], ["LABEL_0", "LABEL_1"]).index == {"1": 1}
    in_order = map_labels(["neg", "pos"], ["LABEL_0", "LABEL_1"])
    assert in_order.by_position and "neg=LABEL_0, pos=LABEL_1" in in_order.notes[0]
    with pytest.raises(PocketsizeError, match="3 unnamed labels .* the data has 2"):
        map_labels(["neg", "pos"], ["LABEL_0", "LABEL_1", "LABEL_2"])


# ---- text classification, end to end ----


def _permuted(src, dst, order, auto_class):
    """A copy of a classifier whose outputs (head rows and id2label) are listed in `order`:
    output j is the original's output order[j], under its name, so it predicts the same."""
    import torch

    model = auto_class.from_pretrained(src)
    head = model.classifier
    with torch.no_grad():
        head.weight.copy_(head.weight[order].clone())
        head.bias.copy_(head.bias[order].clone())
    names = [model.config.id2label[i] for i in order]
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    model.save_pretrained(dst)
    for side in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (src / side).is_file():
            shutil.copy(src / side, dst / side)
    return dst


def _predicted_names(model_dir, task_name, examples) -> list:
    """The model's predictions by name, through eval's own scoring path (same batches)."""
    from transformers import AutoConfig, AutoTokenizer

    from pocketsize.runtime.scoring import encode_split, outputs_of, predict, torch_forward
    from pocketsize.tasks import get_task

    task = get_task(task_name)
    model = task.auto_model_class().from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = encode_split(task, examples, tokenizer, 64)
    predictions = predict(encoded, outputs_of(encoded, torch_forward(model, task), 32, True))
    names = AutoConfig.from_pretrained(model_dir).id2label
    if task_name == "token-classification":
        return [[names[t] for t in row] for row in predictions]
    return [names[p] for p in predictions]


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    from datasets import ClassLabel, Dataset
    from transformers import AutoModelForSequenceClassification

    root = tmp_path_factory.mktemp("labels")
    texts, _ = make_sentences(24, seed=5)
    original = _two_sided(make_trained_looking_bert(root / "original"), texts)
    swapped = _permuted(original, root / "swapped", [1, 0], AutoModelForSequenceClassification)
    blank = Dataset.from_dict(
        {"text": texts, "label": [0] * len(texts)},
        features=_features(ClassLabel(names=["negative", "positive"])),
    )
    gold = _predicted_names(original, "text-classification", blank)
    assert len(set(gold)) == 2, "the tiny model should predict both labels"
    return original, swapped, texts, gold


def _two_sided(model_dir, texts):
    """The tiny classifier with its head shifted so that it predicts each label for about half
    of `texts` (a fresh one predicts one label for all): both labels get mapped."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    batch = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        model.classifier.weight.mul_(50)
        model.classifier.bias.zero_()
        logits = model(**batch).logits
        # the threshold in the widest gap near the middle: no text sits on the boundary
        margin = (logits[:, 1] - logits[:, 0]).sort().values
        middle = range(len(texts) // 4, 3 * len(texts) // 4)
        i = max(middle, key=lambda k: margin[k + 1] - margin[k])
        model.classifier.bias[1] = -(margin[i] + margin[i + 1]) / 2
    model.save_pretrained(model_dir)
    return model_dir


def _features(label):
    from datasets import Features, Value

    return Features({"text": Value("string"), "label": label})


def _dataset(texts, labels, names):
    from datasets import ClassLabel, Dataset

    ids = [names.index(label) for label in labels]
    return Dataset.from_dict(
        {"text": texts, "label": ids}, features=_features(ClassLabel(names=names))
    )


def test_a_model_listing_its_labels_in_another_order_scores_the_same(classifiers):
    original, swapped, texts, gold = classifiers
    data = _dataset(texts, gold, ["negative", "positive"])
    alone = evaluate({"swapped": swapped}, data, **FAST)
    assert alone["swapped"]["metric"]["value"] == 1.0  # by position: 0.0
    assert alone.metrics["labels"] == ["positive", "negative"]
    both = evaluate({"original": original, "swapped": swapped}, data, **FAST)
    assert both["original"]["metric"]["value"] == both["swapped"]["metric"]["value"] == 1.0
    # the swapped variant's outputs are put in the reference's order: the same distributions
    assert both["swapped"]["agreement"] == 1.0
    assert both["swapped"]["fidelity"]["max_abs_logit_diff"] < 1e-5
    notes = both.metrics["settings"]["label_mapping"]["notes"]
    assert any("variant 'swapped' lists its labels in another order" in n for n in notes)


def test_labels_named_otherwise_are_refused_by_name_and_mapped_on_request(classifiers):
    original, _, texts, gold = classifiers
    short = ["neg" if g == "negative" else "pos" for g in gold]
    data = _dataset(texts, short, ["neg", "pos"])
    with pytest.raises(
        PocketsizeError, match=r"'neg', 'pos' are not among the labels variant 'm' "
    ):
        evaluate({"m": original}, data, **FAST)
    report = evaluate(
        {"m": original}, data, label_map={"neg": "negative", "pos": "positive"}, **FAST
    )
    assert report["m"]["metric"]["value"] == 1.0
    assert report.metrics["settings"]["label_mapping"]["matched"] == {
        "neg": "negative",
        "pos": "positive",
    }


def test_a_subset_of_the_labels_is_evaluated_with_a_note(classifiers):
    original, _, texts, gold = classifiers
    rows = [i for i, g in enumerate(gold) if g == "positive"]
    data = _dataset([texts[i] for i in rows], ["positive"] * len(rows), ["positive"])
    report = evaluate({"m": original}, data, **FAST)
    assert report["m"]["metric"]["value"] == 1.0
    assert report.metrics["labels"] == ["negative", "positive"]
    notes = report.metrics["settings"]["label_mapping"]["notes"]
    assert notes and "no example is labelled negative" in notes[0]


def test_variants_predicting_other_labels_are_refused_naming_both(classifiers, tmp_path):
    original, *_, texts, gold = classifiers
    other = tmp_path / "other"
    shutil.copytree(original, other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {"0": "negative", "1": "neutral"}
    config["label2id"] = {"negative": 0, "neutral": 1}
    (other / "config.json").write_text(json.dumps(config))
    data = _dataset(texts, gold, ["negative", "positive"])
    with pytest.raises(
        PocketsizeError,
        match=r"variant 'other' predicts 2 labels \(negative, neutral\) but variant 'm' predicts "
        r"2 \(negative, positive\); every variant of one report",
    ):
        evaluate({"m": original, "other": other}, data, **FAST)


def _write_csv(path, texts, labels):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pocketsize: error: "), err
    return err[0]


def test_a_zero_one_file_needs_label_map_on_the_cli(classifiers, tmp_path, capsys):
    original, _, texts, gold = classifiers
    # 1 means negative here: by position this file scores 0.0
    path = _write_csv(
        tmp_path / "flipped.csv", texts, ["1" if g == "negative" else "0" for g in gold]
    )
    base = ["eval", "--model", f"m={original}", "--data", str(path), "--split", "all", *QUIET_EVAL]
    assert main([*base, "--out", str(tmp_path / "refused")]) == 2
    line = _one_error_line(capsys)
    assert "the data's labels are numbers (0, 1) but variant 'm' predicts names" in line
    assert "--label-map 0=NAME,1=NAME" in line
    out = tmp_path / "mapped"
    assert main([*base, "--out", str(out), "--label-map", "0=positive,1=negative"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variants"]["m"]["metric"]["value"] == 1.0
    assert metrics["settings"]["label_mapping"]["label_map"] == {"0": "positive", "1": "negative"}


def test_a_label_with_a_trailing_space_is_named_on_the_cli(classifiers, tmp_path, capsys):
    original, _, texts, gold = classifiers
    labels = [g + " " if i % 3 == 0 and g == "positive" else g for i, g in enumerate(gold)]
    labels[0] = "positive "  # at least one
    path = _write_csv(tmp_path / "spaced.csv", texts, labels)
    argv = ["eval", "--model", f"m={original}", "--data", str(path), "--split", "all"]
    assert main([*argv, *QUIET_EVAL, "--out", str(tmp_path / "r")]) == 2
    line = _one_error_line(capsys)
    assert "label 'positive ' differs only in case or spacing from 'positive'" in line
    assert "--label-map 'positive =positive'" in line


def test_the_accuracy_budget_of_quantize_matches_labels_by_name(classifiers, tmp_path):
    from datasets import DatasetDict

    from pocketsize.quantize import quantize

    original, _, texts, gold = classifiers
    onnx_dir = export_onnx(original, tmp_path / "onnx")
    flipped = _dataset(texts, ["1" if g == "negative" else "0" for g in gold], ["0", "1"])
    data = DatasetDict(train=flipped, validation=flipped, test=flipped)
    with pytest.raises(PocketsizeError, match=r"numbers \(0, 1\) but the model predicts names"):
        quantize(onnx_dir, data, method="auto", out=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    out = quantize(
        onnx_dir, data, method="auto", max_drop=1.0, out=tmp_path / "int8",
        label_map="0=positive,1=negative", exhaustive=False,
    )  # fmt: skip
    budget = json.loads((out / "stage.json").read_text())["accuracy_budget"]
    assert budget["float_metric"] == 1.0  # by position: 0.0, and a worse int8 looked better


# ---- token classification ----


@pytest.fixture(scope="module")
def taggers(tmp_path_factory):
    import torch
    from datasets import ClassLabel, Dataset, Features, Sequence, Value
    from transformers import AutoModelForTokenClassification, BertForTokenClassification

    root = tmp_path_factory.mktemp("taggers")
    tok = make_tokenizer(root / "original")
    config = tiny_bert_config(len(tok), num_labels=len(TAGS))
    config.id2label = dict(enumerate(TAGS))
    config.label2id = {t: i for i, t in enumerate(TAGS)}
    torch.manual_seed(0)
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # sharp, varied per-word tags, so that there are entities to score
        model.classifier.weight.mul_(40)
    model.save_pretrained(root / "original")
    permuted = _permuted(
        root / "original", root / "permuted", [3, 4, 0, 1, 2], AutoModelForTokenClassification
    )
    words = NEUTRAL[:12] + POSITIVE[:4]
    tokens = [[words[(3 * i + 5 * j) % len(words)] for j in range(4 + i % 4)] for i in range(12)]
    features = Features(
        {"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=TAGS))}
    )
    blank = Dataset.from_dict(
        {"tokens": tokens, "ner_tags": [[0] * len(t) for t in tokens]}, features=features
    )
    gold = _predicted_names(root / "original", "token-classification", blank)
    data = Dataset.from_dict(
        {"tokens": tokens, "ner_tags": [[TAGS.index(t) for t in row] for row in gold]},
        features=features,
    )
    return root / "original", permuted, data


def test_taggers_listing_their_tags_in_another_order_score_the_same(taggers):
    original, permuted, data = taggers
    first = evaluate({"original": original}, data, **FAST)
    second = evaluate({"permuted": permuted}, data, **FAST)
    assert first["original"]["metric"]["value"] == 1.0  # the gold tags hold entities
    assert second["permuted"]["metric"]["value"] == 1.0  # by position: far lower
    both = evaluate({"original": original, "permuted": permuted}, data, **FAST)
    assert both["permuted"]["agreement"] == 1.0


def test_a_tagger_is_scored_on_data_holding_some_of_its_tags(taggers):
    from datasets import ClassLabel, Features, Sequence, Value

    original, _, data = taggers
    # only the PER entities: the LOC tags have no example, and the data names none of them
    per = [[t if "PER" in TAGS[t] else 0 for t in row] for row in data["ner_tags"]]
    names = ["O", "B-PER", "I-PER"]
    subset = data.from_dict(
        {"tokens": data["tokens"], "ner_tags": [[names.index(TAGS[t]) for t in r] for r in per]},
        features=Features(
            {"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))}
        ),
    )
    report = evaluate({"original": original}, subset, **FAST)
    notes = report.metrics["settings"]["label_mapping"]["notes"]
    assert "holds 3 of the 5 labels" in notes[0] and "B-LOC, I-LOC" in notes[0]
    assert report.metrics["labels"] == TAGS
