"""Evaluating and training on the data a user has: a small file evaluated whole (`--split all`,
`split="all"`), and columns named on the command line (`--columns text=comment,label=stars`)."""

from __future__ import annotations

import csv
import json
import re

import pytest
from conftest import make_sentences, make_tiny_bert
from zoo import squad_json

from pocketsize.cli import main
from pocketsize.data import load_dataset
from pocketsize.errors import PocketsizeError

QUIET_EVAL = ["--no-latency", "--no-memory"]


def write_reviews(path, n):
    """A CSV whose columns pocketsize cannot guess: comment, stars (label names), id."""
    texts, labels = make_sentences(n, seed=3)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "comment", "stars"])
        for i, (t, y) in enumerate(zip(texts, labels)):
            writer.writerow([i, t, ["negative", "positive"][y]])
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pocketsize: error: "), err
    return err[0]


def test_a_three_row_file_is_evaluated_whole_with_split_all(tmp_path, capsys):
    model = make_tiny_bert(tmp_path / "bert")
    data = write_reviews(tmp_path / "three.csv", 3)
    out = tmp_path / "report"
    base = ["eval", "--model", f"bert={model}", "--data", str(data), "--out", str(out)]

    assert main([*base, *QUIET_EVAL, "--columns", "text=comment,label=stars"]) == 2
    line = one_error_line(capsys)
    assert "split is empty" in line and "--split all" in line
    assert main([*base, *QUIET_EVAL]) == 2
    line = one_error_line(capsys)
    assert "has no text column" in line and "--columns text=NAME" in line
    assert not out.exists()

    argv = [*base, *QUIET_EVAL, "--columns", "text=comment,label=stars", "--split", "all"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["examples"] == 3 and metrics["settings"]["split"] == "all"
    assert "every row of the data" in (out / "report.md").read_text()


def test_missing_columns_name_the_cli_option(tmp_path, capsys):
    model = make_tiny_bert(tmp_path / "bert")
    data = write_reviews(tmp_path / "reviews.csv", 40)
    argv = ["eval", "--model", f"bert={model}", "--data", str(data), "--out", str(tmp_path / "r")]
    assert main([*argv, *QUIET_EVAL, "--columns", "text=comment"]) == 2
    line = one_error_line(capsys)
    assert "has no label column" in line and "--columns label=NAME" in line


def test_a_squad_dev_file_evaluates_every_question_with_split_all(tmp_path, tiny_qa_dir):
    from pocketsize.eval import evaluate

    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps(squad_json("v2.0", with_impossible=True)))
    with pytest.raises(PocketsizeError, match="split is empty.*split='all'"):
        load_dataset(path)
    assert len(load_dataset(path, split="all")) == 3
    report = evaluate(
        {"qa": tiny_qa_dir}, str(path), split="all", latency=False, memory=False, progress=False
    )
    assert report.metrics["settings"]["examples"] == 3
    assert report.metrics["task"] == "extractive-qa"


def test_split_all_of_a_dataset_dict_is_every_row(tmp_path):
    from conftest import make_cls_dataset

    from pocketsize.eval import evaluate

    model = make_tiny_bert(tmp_path / "bert")
    data = make_cls_dataset(n_train=5, n_val=4, n_test=3)
    report = evaluate({"bert": model}, data, split="all", latency=False, memory=False,
                      progress=False)  # fmt: skip
    assert report.metrics["settings"]["examples"] == 12
    assert len(load_dataset(data, split="validation")) == 4
    with pytest.raises(PocketsizeError, match="no 'dev' split.*or 'all'"):
        load_dataset(data, split="dev")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("comment", "expected ROLE=COLUMN pairs"),
        ("text=comment,text=stars", "maps 'text' twice"),
        ("words=comment,label=stars", "column roles are text, text_pair and label; got words"),
        ("text=review,label=stars", "has no text column \\(mapped to 'review'\\)"),
    ],
)
def test_bad_columns_are_one_line_errors(spec, message, tmp_path, capsys):
    model = make_tiny_bert(tmp_path / "bert")
    data = write_reviews(tmp_path / "reviews.csv", 40)
    out = tmp_path / "r"
    argv = ["eval", "--model", f"bert={model}", "--data", str(data), "--out", str(out)]
    assert main([*argv, *QUIET_EVAL, "--columns", spec]) == 2
    assert re.search(message, one_error_line(capsys))
    assert not out.exists()


def test_finetune_and_prune_read_the_columns_they_are_told(tmp_path):
    from transformers import AutoConfig

    model = make_tiny_bert(tmp_path / "bert")
    data = write_reviews(tmp_path / "reviews.csv", 96)
    columns = ["--data", str(data), "--columns", "text=comment,label=stars"]
    teacher = tmp_path / "teacher"
    argv = ["finetune", "--model", str(model), *columns, "--out", str(teacher), "--max-steps", "2"]
    assert main(argv) == 0
    config = AutoConfig.from_pretrained(teacher)
    assert [config.id2label[i] for i in range(2)] == ["negative", "positive"]
    pruned = tmp_path / "pruned"
    argv = ["prune", "--model", str(teacher), *columns, "--ffn", "0.5", "--out", str(pruned)]
    assert main(argv) == 0
    assert json.loads((pruned / "stage.json").read_text())["ffn"]["intermediate_size_after"] == 19
