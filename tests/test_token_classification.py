"""Token classification: word/piece alignment, entity metrics under the conlleval rules (against
seqeval and values worked out by hand), the bootstrap of micro F1 from per-sentence counts, the
per-token teacher cache, and the chain through every stage on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from zoo import make_ner_dataset, make_tokenizer, tiny_bert_config

NAMES = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]

# (gold, predicted): the conlleval edge cases
EDGE_CASES = [
    # an I- after O starts an entity: the predicted LOC matches the gold one
    (["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-PER", "I-PER", "O", "I-LOC", "O"]),
    # an I- of another type ends the entity and starts a new one: PER(0) + LOC(1), not PER(0-1)
    (["B-PER", "I-PER", "O"], ["B-PER", "I-LOC", "O"]),
    # a spurious entity in a sentence without any
    (["O", "O", "O"], ["B-ORG", "O", "O"]),
    # two touching entities (B- B-) are not one long entity (B- I-)
    (["B-PER", "B-PER"], ["B-PER", "I-PER"]),
]


def _tag_dataset(rows):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    features = Features(
        {"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=NAMES))}
    )
    return Dataset.from_dict(
        {
            "tokens": [[f"w{i}" for i in range(len(tags))] for tags in rows],
            "ner_tags": [[NAMES.index(t) for t in tags] for tags in rows],
        },
        features=features,
    )


def _ids(tags):
    return [NAMES.index(t) for t in tags]


def test_first_piece_carries_the_word_label_and_predictions_map_back(tmp_path):
    from pocketsize.tasks.token_classification import align_labels, word_predictions

    tok = make_tokenizer(tmp_path)
    words = ["the", "films", "directed", "well"]
    assert tok.tokenize("films") == ["film", "##s"]  # the case under test: a word of two pieces
    enc = tok(words, is_split_into_words=True)
    word_ids = enc.word_ids()
    labels = align_labels(word_ids, [0, 5, 6, 0])
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    by_piece = dict(zip(pieces, labels))
    assert by_piece["film"] == 5 and by_piece["##s"] == -100
    assert labels[0] == labels[-1] == -100  # [CLS] and [SEP]
    assert [lab for lab in labels if lab != -100] == [0, 5, 6, 0]
    # each word's prediction is its first piece's argmax; a truncated word gets O
    logits = np.zeros((len(word_ids), len(NAMES)))
    for position, label in enumerate(labels):
        logits[position, label if label >= 0 else 3] = 1.0  # later pieces vote ORG: ignored
    wids = [-1 if w is None else w for w in word_ids]
    assert word_predictions(logits, wids, 4, outside=0) == [0, 5, 6, 0]
    assert word_predictions(logits[:3], wids[:3], 4, outside=0) == [0, 5, 0, 0]


def test_entity_metrics_follow_conlleval_and_match_seqeval():
    from seqeval.metrics import f1_score, precision_score, recall_score

    from pocketsize.tasks import get_task

    task = get_task("token-classification")
    gold = [g for g, _ in EDGE_CASES]
    predicted = [p for _, p in EDGE_CASES]
    examples = _tag_dataset(gold)
    scores = task.score([_ids(p) for p in predicted], examples)
    # by hand: TP 2 (S1's PER and LOC), FP 4 (S2 PER(0), LOC(1); S3 ORG; S4 PER(0-1)), FN 3
    assert scores["entity_precision"] == pytest.approx(2 / 6)
    assert scores["entity_recall"] == pytest.approx(2 / 5)
    assert scores["entity_f1"] == pytest.approx(4 / 11)
    assert scores["entity_f1"] == pytest.approx(f1_score(gold, predicted))
    assert scores["entity_precision"] == pytest.approx(precision_score(gold, predicted))
    assert scores["entity_recall"] == pytest.approx(recall_score(gold, predicted))
    assert scores["token_accuracy"] == pytest.approx(9 / 13)
    per = scores["per_class"]
    assert per["PER"]["f1"] == pytest.approx(2 / 7) and per["PER"]["support"] == 4
    assert per["LOC"]["f1"] == pytest.approx(2 / 3) and per["LOC"]["support"] == 1
    assert per["ORG"]["f1"] == 0 and per["ORG"]["support"] == 0


def test_entity_f1_is_bootstrapped_from_per_sentence_counts():
    from pocketsize.eval import bootstrap
    from pocketsize.tasks import get_task

    task = get_task("token-classification")
    examples = _tag_dataset([g for g, _ in EDGE_CASES])
    predictions = [_ids(p) for _, p in EDGE_CASES]
    numerators, denominators = task.metric_parts(predictions, examples)
    assert numerators.tolist() == [4, 0, 0, 0]  # 2 TP per sentence
    assert denominators.tolist() == [4, 3, 1, 3]  # 2 TP + FP + FN
    # micro F1 is the ratio of the sums, not the mean of per-sentence F1s (which is 0.25)
    identity = np.arange(4)[None, :]
    ci = bootstrap.ratio_ci(numerators, denominators, identity)
    assert ci["value"] == pytest.approx(4 / 11) == pytest.approx(ci["ci_low"])
    indices = bootstrap.resample_indices(4, samples=500, seed=0)
    ci = bootstrap.ratio_ci(numerators, denominators, indices)
    assert ci["ci_low"] < 4 / 11 < ci["ci_high"] and ci["ci_low"] >= 0
    # a resample holding only S1 scores 1.0, one without S1 scores 0
    only = bootstrap.ratio_ci(numerators, denominators, np.array([[0, 0], [1, 2]]))
    assert (only["ci_low"], only["ci_high"]) == pytest.approx((0.025, 0.975))
    # entity agreement of a model with itself is 1 even where neither finds an entity
    same = task.agreement_parts(predictions, predictions, examples)
    assert bootstrap.ratio_ci(*same, identity, empty=1.0)["value"] == 1.0
    levels = task.agreement_levels(predictions, [_ids(g) for g, _ in EDGE_CASES], examples)
    assert levels["entity"] == pytest.approx(4 / 11)
    assert levels["token"] == pytest.approx(9 / 13) and levels["sentence"] == 0.0


def test_disagreements_show_tagged_sentences():
    from pocketsize.tasks import get_task

    task = get_task("token-classification")
    example = {"tokens": ["anna", "lives", "in", "new", "york"], "ner_tags": _ids(
        ["B-PER", "O", "O", "B-LOC", "I-LOC"]
    )}  # fmt: skip
    shown = task.show_gold(example, NAMES)
    assert shown == "[anna]PER lives in [new york]LOC"
    assert task.show_prediction(_ids(["O"] * 5), NAMES, example) == "anna lives in new york"


@pytest.fixture(scope="module")
def ner_teacher(tmp_path_factory):
    import torch
    from transformers import BertModel

    import pocketsize as ps

    root = tmp_path_factory.mktemp("ner")
    tok = make_tokenizer(root / "base")
    torch.manual_seed(0)
    BertModel(tiny_bert_config(len(tok))).save_pretrained(root / "base")
    data = ps.load_dataset(make_ner_dataset())
    teacher = ps.finetune(
        str(root / "base"), data, out=root / "teacher", epochs=8, learning_rate=5e-3,
        batch_size=16, progress=False,
    )  # fmt: skip
    return root, data, teacher


def test_the_task_is_told_from_the_data_and_from_the_saved_model(ner_teacher):
    from pocketsize.tasks import task_for_dataset, task_of_model

    _, data, teacher = ner_teacher
    assert task_for_dataset(data).name == "token-classification"
    assert task_of_model(teacher).name == "token-classification"
    config = json.loads((teacher / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert list(config["id2label"].values()) == ["O", "B-MISC", "I-MISC", "B-PER", "I-PER"]


def test_the_teacher_cache_holds_per_token_outputs(ner_teacher, tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from pocketsize.distill.cache import load_or_compute
    from pocketsize.distill.features import FeatureCollator, training_features
    from pocketsize.tasks import get_task

    _, data, teacher_dir = ner_teacher
    task = get_task("token-classification")
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForTokenClassification.from_pretrained(teacher_dir).eval()
    features = training_features(task, data["train"], tok, 64).select_columns(
        ["input_ids", "attention_mask", "token_type_ids"]
    )
    collate = FeatureCollator(task, tok)
    first, info = load_or_compute(model, features, collate, ("logits",), True, tmp_path, 16)
    again, info_again = load_or_compute(model, features, collate, ("logits",), True, tmp_path, 16)
    assert not info["hit"] and info_again["hit"]
    index = torch.tensor([3, 0, 7])
    batch = collate([features[int(i)] for i in index])
    width = batch["input_ids"].shape[1]
    cached = again.batch(index, width)["logits"]
    assert cached.shape == (3, width, 5)
    with torch.no_grad():
        live = model(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached[real], live[real], atol=1e-5, rtol=1e-5)


@pytest.mark.e2e
def test_every_stage_runs_for_token_classification(ner_teacher, capsys):
    import pocketsize as ps
    from pocketsize.cli import main

    root, data, teacher = ner_teacher
    teacher_stage = json.loads((teacher / "stage.json").read_text())
    assert teacher_stage["validation"]["entity_f1"] > 0.8  # the toy entities were learnt
    student = ps.distill(
        teacher, data, student="truncate:0", out=root / "student", epochs=3,
        losses="token_kl=1,token_ce=1,hidden=1", learning_rate=5e-3, batch_size=16,
        progress=False,
    )  # fmt: skip
    stage = json.loads((student / "stage.json").read_text())
    assert set(stage["config"]["losses"]) == {"token_kl", "token_ce", "hidden_mse"}
    assert stage["validation"]["entity_f1"] > 0.6
    cached = ps.distill(
        teacher, data, out=root / "student-cached", epochs=1, batch_size=16, progress=False
    )
    assert json.loads((cached / "stage.json").read_text())["cache"]["used"]
    pruned = ps.prune(student, data, heads=0.5, ffn=0.5, vocab=True, out=root / "pruned")
    record = json.loads((pruned / "stage.json").read_text())
    assert record["task"] == "token-classification"
    assert record["heads"]["scoring_loss"] == "task labels"
    onnx = ps.export(pruned, root / "onnx")
    parity = json.loads((onnx / "stage.json").read_text())["parity"]
    assert parity["ok"]
    int8 = ps.quantize(onnx, data, method="dynamic", out=root / "int8")
    static = ps.quantize(onnx, data, method="static", out=root / "static")
    auto = ps.quantize(onnx, data, method="auto", out=root / "auto", max_drop=0.05)
    manifest = json.loads((auto / "stage.json").read_text())
    assert manifest["task"] == "token-classification"
    assert manifest["accuracy_budget"]["metric"] == "entity_f1"
    variants = {"teacher": teacher, "student": student, "pruned": pruned, "onnx": onnx,
                "int8": int8, "static": static, "auto": auto}  # fmt: skip
    report = ps.evaluate(
        variants, data, final="int8", progress=False, repeats=1, latency_examples=8, memory=False
    )
    records = report.variants
    for name, r in records.items():
        metric = r["metric"]
        assert metric["name"] == "entity_f1"
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"], name
        assert set(r["agreement_levels"]) == {"entity", "token", "sentence"}
        assert set(r["per_class"]) <= {"PER", "MISC"}
    assert records["teacher"]["metric"]["value"] > 0.8
    # the export computes what the pruned model does
    assert records["onnx"]["agreement_levels"]["token"] > 0.99
    assert records["int8"]["size_bytes"] < records["teacher"]["size_bytes"]
    # every other variant's agreement set against the shipped one's, on the same resamples
    assert "agreement_vs_final" not in records["int8"]
    assert "agreement_vs_final" not in records["teacher"]
    for name in ("student", "pruned", "static"):
        diff = records[name]["agreement_vs_final"]
        assert diff["value"] == pytest.approx(
            records[name]["agreement"] - records["int8"]["agreement"]
        ), name
    markdown = report.to_markdown(images=False)
    assert "agreement Δ vs final (95% CI)" in markdown
    assert "| class | precision | recall | f1 | f1 of teacher | support |" in markdown
    assert "Agreement: entity F1" in markdown
    for r in records.values():
        for entry in r["disagreements"]:
            # tagged sentences: two taggings that differ hold an entity between them
            assert entry["text"] and "[" in entry["prediction"] + entry["reference_prediction"]
    # transformers' pipeline, with entities grouped, over PyTorch and over the int8 graph
    for model in (teacher, int8):
        found = ps.load_pipeline(model, aggregation_strategy="simple")(
            "the director cast was music"
        )
        assert {e["entity_group"] for e in found} == {"PER", "MISC"}
        assert next(e["word"] for e in found if e["entity_group"] == "PER") == "director cast"
    text = "the director cast was music"
    assert main(["predict", "--model", str(int8), "--aggregation", "simple", text]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {e["entity_group"] for e in found} == {"PER", "MISC"}
