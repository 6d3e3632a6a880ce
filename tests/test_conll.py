"""CoNLL token-classification data: the reader (any whitespace, sentence breaks, -DOCSTART-,
IOB1 and BIOES to IOB2, bad tags refused by name) and the packaged W-NUT 2016 set."""

from __future__ import annotations

import pytest

from pocketsize.errors import PocketsizeError


def _write(tmp_path, text, name="data.conll"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reader_takes_the_first_and_last_column_and_breaks_on_blank_lines(tmp_path):
    from pocketsize.data.conll import read_conll

    conll2003 = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n \t \n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    )
    assert read_conll(_write(tmp_path, conll2003)) == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
    ]


def test_iob1_and_bioes_become_iob2(tmp_path):
    from pocketsize.data.conll import detect_scheme, read_conll, to_iob2

    iob1 = "New\tI-LOC\nYork\tI-LOC\nand\tO\nParis\tI-LOC\nLondon\tB-LOC\n"
    assert read_conll(_write(tmp_path, iob1))[0][1] == ["B-LOC", "I-LOC", "O", "B-LOC", "B-LOC"]
    bioes = "New\tB-LOC\nYork\tE-LOC\nand\tO\nParis\tS-LOC\n"
    assert read_conll(_write(tmp_path, bioes, "b.conll"))[0][1] == ["B-LOC", "I-LOC", "O", "B-LOC"]
    # IOB2 with one stray I- after O stays as it is (conlleval reads it as a start)
    assert detect_scheme(["B-PER", "I-PER", "O", "I-LOC", "B-ORG", "O", "B-PER"]) == "iob2"
    assert to_iob2(["I-PER", "I-PER"], "iob1") == ["B-PER", "I-PER"]


def test_bad_files_are_one_line_errors(tmp_path):
    from pocketsize.data.conll import read_conll

    for text, message in (
        ("word\tB-PER\nalone\n", r"data.conll:2 has a token but no tag"),
        ("a x B-PER\nb y z O\n", r"data.conll:2 has 4 columns but line 1 has 3"),
        ("a\tO\n\nword\tX-PER\n", r"tag 'X-PER' \(.*data.conll:3\) is not O or B-/I-/E-/S-TYPE"),
        ("\n\n", "holds no sentences"),
    ):
        with pytest.raises(PocketsizeError, match=message) as e:
            read_conll(_write(tmp_path, text))
        assert "\n" not in str(e.value)
    with pytest.raises(PocketsizeError, match="unknown tag scheme 'bilou'"):
        read_conll(_write(tmp_path, "a\tO\n"), scheme="bilou")


@pytest.mark.e2e
def test_packaged_wnut16_set():
    import pocketsize as ps

    data = ps.load_dataset("wnut16")
    names = data["train"].features["ner_tags"].feature.names
    assert names[0] == "O" and len(names) == 21  # O + B-/I- of 10 entity types
    rows = [r for split in data.values() for r in split]
    assert len(rows) == 2394
    assert sum(len(r["tokens"]) for r in rows) == 46469
    assert sum(names[t].startswith("B-") for r in rows for t in r["ner_tags"]) == 1496
    assert {len(r["tokens"]) == len(r["ner_tags"]) for r in rows} == {True}
    sizes = {k: len(v) for k, v in data.items()}
    assert sizes == {"train": 1917, "validation": 228, "test": 249}  # md5 of the tokens


def test_local_conll_files_load_with_one_label_set_and_hash_splits(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    from pocketsize.data import load_dataset

    sentences = [f"w{i}_Paris\tO\nis\tO\nnice\tO\n" for i in range(40)]
    one = _write(tmp_path, "\n".join(sentences) + "\nAnna\tB-PER\nlives\tO\n", "all.conll")
    data = load_dataset(str(one))
    assert set(data) == {"train", "validation", "test"}
    assert sum(len(s) for s in data.values()) == 41
    names = data["train"].features["ner_tags"].feature.names
    assert names == ["O", "B-PER", "I-PER"]
    folder = tmp_path / "splits"
    folder.mkdir()
    _write(folder, "Anna\tB-PER\nKarenina\tI-PER\n", "train.conll")
    _write(folder, "Acme\tB-ORG\nsells\tO\n", "validation.conll")
    _write(folder, "Bob\tS-PER\n", "test.conll")
    data = load_dataset(str(folder))
    # one label set over every split, and the test split's BIOES read as IOB2
    assert data["test"].features["ner_tags"].feature.names == [
        "O",
        "B-ORG",
        "I-ORG",
        "B-PER",
        "I-PER",
    ]
    assert data["test"][0]["ner_tags"] == [3]
    # a hub-style set keeps its ClassLabel names (and order)
    hub_names = ["O", "B-LOC", "I-LOC"]
    features = Features(
        {"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=hub_names))}
    )
    rows = {"tokens": [["in", f"Rome{i}"] for i in range(30)], "ner_tags": [[0, 1]] * 30}
    hub = load_dataset(DatasetDict(train=Dataset.from_dict(rows, features=features)))
    assert hub["train"].features["ner_tags"].feature.names == hub_names
    ragged = Dataset.from_dict({"tokens": [["a", "b"]] * 20, "ner_tags": [["O"]] * 20})
    with pytest.raises(PocketsizeError, match="row 0 of train has 2 tokens but 1 tags"):
        load_dataset(DatasetDict(train=ragged))
