"""load_dataset: catalogue sets with their fixed splits, local files with a column mapping,
deterministic hash splits, label handling and each bad input."""

from __future__ import annotations

import json

import pytest

from pocketsize.data import bucket, load_dataset, load_texts, split_of
from pocketsize.errors import PocketsizeError


def test_rt_polarity_split_and_labels():
    dd = load_dataset("rt-polarity")
    assert {k: len(v) for k, v in dd.items()} == {"train": 8373, "validation": 1103, "test": 1092}
    assert dd["train"].features["label"].names == ["negative", "positive"]
    assert dd["train"].column_names == ["text", "label"]
    # the split rule written out: md5 of the snippet id; snippet 1 is a positive train example
    assert split_of("1") == {0: "test", 1: "validation"}.get(bucket("1"), "train")
    assert "The Rock is destined" in "".join(dd[split_of("1")]["text"][:5])


def test_vader_sets_and_texts():
    nyt = load_dataset("vader-nyt")
    assert sum(len(v) for v in nyt.values()) == 5190 - 244  # zero-rated sentences dropped
    assert len(load_texts("vader-nyt")) == 5190  # unlabelled: all of them
    tweets = load_texts("vader-tweets")
    assert len(tweets) == 4200 and not any("&amp;" in t for t in tweets)


@pytest.mark.parametrize(
    ("name", "n_labels", "n_train_val", "n_test"),
    [
        ("reuters-r8", 8, 5485, 2189),
        ("reuters-r52", 52, 6532, 2568),
        ("20newsgroups", 20, 11293, 7528),
    ],
)
def test_orange_topic_sets(name, n_labels, n_train_val, n_test):
    dd = load_dataset(name)
    names = dd["train"].features["label"].names
    assert len(names) == n_labels and names == sorted(names) and "" not in names
    assert len(dd["train"]) + len(dd["validation"]) == n_train_val and len(dd["test"]) == n_test
    assert all(split_of(t) == "validation" for t in dd["validation"]["text"][:50])


def test_local_csv_with_column_mapping_and_hash_split(tmp_path):
    rows = [
        {"review": f"review number {i} NA", "stars": "good" if i % 3 else "bad", "x": i}
        for i in range(200)
    ]
    path = tmp_path / "reviews.csv"
    path.write_text(
        "review,stars,x\n" + "".join(f"{r['review']},{r['stars']},{r['x']}\n" for r in rows)
    )
    dd = load_dataset(str(path), columns={"text": "review", "label": "stars"})
    assert dd["train"].column_names == ["text", "label"]
    assert dd["train"].features["label"].names == ["bad", "good"]  # sorted
    assert sum(len(v) for v in dd.values()) == 200
    for split, ds in dd.items():  # every row sits where md5 of its text puts it
        assert all(split_of(t) == split for t in ds["text"])
    assert dd["test"][0]["text"].endswith("NA")  # "NA" stays text, not a missing value
    again = load_dataset(path, columns={"text": "review", "label": "stars"})
    assert all(dd[s]["text"] == again[s]["text"] for s in dd)  # deterministic


def test_local_jsonl_pairs_and_label_names(tmp_path):
    lines = [
        {"premise": f"p {i}", "hypothesis": f"h {i}", "label": ["no", "yes", "maybe"][i % 3]}
        for i in range(120)
    ]
    path = tmp_path / "nli.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    dd = load_dataset(path, label_names=["yes", "maybe", "no"])
    assert dd["train"].column_names == ["text", "text_pair", "label"]
    assert dd["train"].features["label"].names == ["yes", "maybe", "no"]
    row = dd["train"][0]
    assert ["no", "yes", "maybe"][int(row["text"].split()[1]) % 3] == dd["train"].features[
        "label"
    ].int2str(row["label"])


def test_split_files_and_json_list(tmp_path):
    train = [{"text": f"t{i}", "label": i % 2} for i in range(100)]
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "test.json").write_text(
        json.dumps([{"text": "x", "label": 1}, {"text": "y", "label": 0}])
    )
    dd = load_dataset(tmp_path)
    assert len(dd["test"]) == 2  # given test kept; validation carved from train only
    assert len(dd["train"]) + len(dd["validation"]) == 100
    assert dd["train"].features["label"].names == ["0", "1"]
    same = load_dataset({"train": tmp_path / "train.json", "test": tmp_path / "test.json"})
    assert same["validation"]["text"] == dd["validation"]["text"]


def test_datasetdict_passthrough(tiny_cls_data):
    dd = load_dataset(tiny_cls_data)
    assert dd["test"]["text"] == tiny_cls_data["test"]["text"]
    renamed = load_dataset(tiny_cls_data, label_names=["positive", "negative"])
    assert renamed["test"][0]["label"] == 1 - tiny_cls_data["test"][0]["label"]


def test_bad_inputs(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("body,y\nhello,1\n")
    with pytest.raises(PocketsizeError, match=r"no text column; its columns are \['body', 'y'\]"):
        load_dataset(csv)
    with pytest.raises(PocketsizeError, match=r"no label column \(mapped to 'stars'\)"):
        load_dataset(csv, columns={"text": "body", "label": "stars"})
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(PocketsizeError, match="empty"):
        load_dataset(empty)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("")
    with pytest.raises(PocketsizeError, match="empty"):
        load_dataset(blank)
    labelled = tmp_path / "b.csv"
    labelled.write_text(
        "text,label\n" + "".join(f"s{i},{'pos' if i % 2 else 'meh'}\n" for i in range(50))
    )
    with pytest.raises(PocketsizeError, match=r"labels \['meh'\] that are not in the label set"):
        load_dataset(labelled, label_names=["neg", "pos"])
    with pytest.raises(PocketsizeError, match="does not exist"):
        load_dataset(tmp_path / "missing.csv")
    with pytest.raises(PocketsizeError, match="hub is unreachable.*catalogue dataset"):
        load_dataset("someone/not-a-dataset-here")
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("text,label\na,1\nb,0\n")
    with pytest.raises(PocketsizeError, match="split is empty"):
        load_dataset(tiny)


def test_load_texts_of_a_split(tiny_cls_data):
    assert load_texts(tiny_cls_data, split="test") == tiny_cls_data["test"]["text"]
    with pytest.raises(PocketsizeError, match="no split 'dev'"):
        load_texts(tiny_cls_data, split="dev")


def test_text_specs_draw_a_split_and_a_fixed_sample():
    from pocketsize.data.text_specs import spec_texts, specs_texts

    data = load_dataset("vader-tweets")
    train = spec_texts("vader-tweets:train")
    assert train == [t for t in data["train"]["text"] if t.strip()]
    assert not set(train) & set(data["test"]["text"])  # the test split stays out
    sample = spec_texts("vader-tweets:train:50")
    assert len(sample) == 50 and set(sample) <= set(train)
    assert sample == spec_texts("vader-tweets:train:50")  # the same texts on every run
    assert sample != train[:50]  # a sample across the split, not its first rows
    both = specs_texts("vader-tweets:train:50, vader-amazon:test:5")
    assert both[:50] == sample and len(both) == 55


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vader-tweets:train:0", "sample size '0' must be a whole number"),
        ("vader-tweets:train:many", "sample size 'many'"),
        ("vader-tweets::5", "expected NAME, NAME:SPLIT or NAME:SPLIT:N"),
        ("vader-tweets:dev", "no split 'dev'"),
    ],
)
def test_bad_text_specs_are_named(spec, message):
    from pocketsize.data.text_specs import spec_texts

    with pytest.raises(PocketsizeError, match=message):
        spec_texts(spec)


def test_a_file_path_is_never_read_as_a_spec(tmp_path):
    from pocketsize.data.text_specs import specs_texts

    path = tmp_path / "a:b.csv"
    rows = [f"text number {i}" for i in range(40)]
    path.write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(rows)))
    assert sorted(specs_texts(str(path))) == sorted(rows)
