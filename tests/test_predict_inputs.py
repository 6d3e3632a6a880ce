"""`pocketsize predict` with inputs a new user gives: a question to a classifier (PyTorch and
ONNX), a question-answering model with no question, an empty question or an empty context, and
an empty text. Each is one line before the model is loaded (exit 2), or a note beside the
answer."""

from __future__ import annotations

import json

import pytest

from pocketsize.cli import main


@pytest.fixture(scope="module")
def cls_onnx(tiny_cls_dir, tmp_path_factory):
    from _eval_helpers import export_onnx

    return export_onnx(tiny_cls_dir, tmp_path_factory.mktemp("predict") / "onnx")


def _one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pocketsize: error: "), lines
    return lines[0]


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
def test_a_question_to_a_classifier_is_refused(kind, tiny_cls_dir, cls_onnx, capsys):
    model = tiny_cls_dir if kind == "pytorch" else cls_onnx
    argv = ["predict", "--model", str(model), "--question", "who?", "a good film"]
    assert main(argv) == 2
    line = _one_error(capsys)
    assert "--question is for extractive-qa models; this is a text-classification model" in line


@pytest.mark.parametrize(
    "extra, text, message",
    [
        ([], "the film was long", "no --question was given"),
        (["--question", "  "], "the film was long", "an empty --question was given"),
        (["--question", "how long?"], " ", "text 1 is empty"),
    ],
)
def test_a_qa_model_needs_a_question_and_a_context(tiny_qa_dir, extra, text, message, capsys):
    assert main(["predict", "--model", str(tiny_qa_dir), *extra, text]) == 2
    assert message in _one_error(capsys)


def test_an_empty_text_is_answered_with_a_note(tiny_cls_dir, capsys):
    assert main(["predict", "--model", str(tiny_cls_dir), "", "a good film"]) == 0
    captured = capsys.readouterr()
    assert "note: text 1 is empty" in captured.err and "text 2" not in captured.err
    answers = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert len(answers) == 2 and all(a[0]["label"] for a in answers)


def test_a_qa_model_answers_with_its_question(tiny_qa_dir, capsys):
    argv = ["predict", "--model", str(tiny_qa_dir), "--question", "how long?", "it was long"]
    assert main(argv) == 0
    assert "answer" in json.loads(capsys.readouterr().out.strip())


def test_a_model_that_records_no_task_is_asked_about_not_guessed(cls_onnx, tmp_path, capsys):
    """An ONNX graph with no record and no architectures in its config used to be taken for a
    text classifier; now --task says what it is."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(cls_onnx, bare)
    assert not (bare / "stage.json").exists()  # a graph exported without pocketsize
    config = json.loads((bare / "config.json").read_text())
    config.pop("architectures")
    (bare / "config.json").write_text(json.dumps(config))
    assert main(["predict", "--model", str(bare), "a good film"]) == 2
    line = _one_error(capsys)
    assert "cannot tell the task" in line and "--task" in line and "token-classification" in line
    assert main(["predict", "--model", str(bare), "--task", "text-classification", "good"]) == 0
    (answers,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert answers[0]["label"] in config["id2label"].values()
