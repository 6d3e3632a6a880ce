"""More of the bad-input matrix (issue 34): ragged TSV and CoNLL-shaped tables, recipe
overrides and recipe files that are not plain YAML or not UTF-8, range checks at
`run --check`, and the training runs a checkpoint is left beside (the note without --resume,
the whole run's train_loss after it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zoo import (
    QUICK,
    assert_one_error_line,
    make_cls_dataset,
    make_sentences,
    make_tiny_bert,
    write_cls_files,
)

from pocketsize.cli import main

RECIPE = Path(__file__).parents[1] / "recipes" / "sentiment.yaml"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


# ---------------------------------------------------------------- TSV and CoNLL-shaped files


def _tsv_rows(n=40):
    texts, labels = make_sentences(n, seed=1)
    return [f"{t}\t{['negative', 'positive'][y]}\n" for t, y in zip(texts, labels)]


ROWS = _tsv_rows()
# name -> (the file, extra arguments, what the one error line must say)
RAGGED_TSV = {
    # no header: the first example is read as the header and line 2 (no label) was never named
    "no-header-short-line-2": (
        ROWS[0] + "a film\n" + "".join(ROWS[1:]),
        ["--columns", "text={},label={}".format(*ROWS[0].strip().split("\t"))],
        "not a well-formed TSV file: line 2 has 1 column but the header \\(line 1\\) has 2",
    ),
    "short-line-11": (
        "text\tlabel\n" + "".join(ROWS[:9]) + "a film\n" + "".join(ROWS[9:]),
        [],
        "not a well-formed TSV file: line 11 has 1 column but the header \\(line 1\\) has 2.*"
        "give every row the header's columns",
    ),
    "long-line-11": (
        "text\tlabel\n" + "".join(ROWS[:9]) + "a film\tpositive\textra\n" + "".join(ROWS[9:]),
        [],
        "not a well-formed TSV file: line 11 has 3 columns but the header \\(line 1\\) has 2",
    ),
}


@pytest.mark.parametrize("verb", ["eval", "finetune"])
@pytest.mark.parametrize("case", list(RAGGED_TSV))
def test_a_ragged_tsv_is_refused_naming_the_line(case, verb, model, tmp_path, capsys):
    text, extra, pattern = RAGGED_TSV[case]
    data = tmp_path / "data.tsv"
    data.write_text(text)
    out = tmp_path / "out"
    argv = {
        "eval": ["eval", "--model", f"m={model}", "--no-latency", "--no-memory"],
        "finetune": ["finetune", "--model", str(model), "--max-steps", "1"],
    }[verb]
    assert main([*argv, "--data", str(data), "--out", str(out), *extra]) == 2
    assert_one_error_line(capsys, pattern)
    assert not out.exists()


def test_a_csv_row_with_fewer_columns_is_named_by_line(tmp_path):
    from pocketsize.data import load_dataset
    from pocketsize.errors import PocketsizeError

    data = tmp_path / "data.csv"
    rows = [r.replace("\t", ",") for r in ROWS]
    # a quoted text over two lines: line numbers count lines, not rows
    data.write_text('text,label\n"a film\nin two lines",positive\n' + "".join(rows[:9]) + "bad\n")
    with pytest.raises(PocketsizeError, match="CSV file: line 13 has 1 column"):
        load_dataset(data)


CONLL = "EU\tB-ORG\nrejects\tO\nGerman\tB-MISC\ncall\tO\n\nPeter\tB-PER\nBlackburn\tI-PER\n\n"


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("ner.tsv", "ner.tsv is not a table with a header; it looks like CoNLL data"),
        ("ner.txt", "unsupported file type '.txt'; use one of .*; it looks like CoNLL data"),
    ],
)
def test_a_conll_shaped_table_gets_the_conll_reader_hint(name, pattern, model, tmp_path, capsys):
    from pocketsize.data import load_dataset

    data = tmp_path / name
    data.write_text(CONLL)
    out = tmp_path / "out"
    argv = ["finetune", "--model", str(model), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--max-steps", "1"]) == 2
    hint = f"name it .conll \\(mv {name} ner.conll\\) to read it with pocketsize's CoNLL reader"
    assert_one_error_line(capsys, f"{pattern}.*{hint}")
    assert not out.exists()
    # and the hint is right: renamed, the file reads as token classification
    renamed = load_dataset(data.rename(tmp_path / "ner.conll"), split="all")
    assert renamed["tokens"][1] == ["Peter", "Blackburn"]


def test_a_plain_tsv_is_not_taken_for_conll(tmp_path):
    from pocketsize.data import load_dataset

    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\n" + "".join(ROWS))
    assert len(load_dataset(data, split="all")) == len(ROWS)


# ---------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("distill.epochs=[1", "override 'distill.epochs=\\[1': the value is not plain YAML "
         "\\(expected ',' or '\\]'.*\\); give a number, a string"),
        ("distill.epochs=!!python/object:os.system x", "the value is not plain YAML \\(the tag "
         "'!!python/object:os.system' is refused: a recipe holds plain values"),
        ("distill.epochs=-1", "recipe key distill.epochs: must be above 0, not -1"),
        ("prune.heads=1.5", "recipe key prune.heads: must be a fraction to remove strictly "
         "between 0 and 1"),
        ("quantize.max_drop=5", "recipe key quantize.max_drop: must be between 0 and 1, not 5"),
    ],
)  # fmt: skip
def test_run_check_refuses_a_bad_override_in_one_line(override, pattern, capsys):
    assert main(["run", str(RECIPE), "--check"]) == 0  # the recipe itself is valid
    assert "recipe sentiment: valid" in capsys.readouterr().out
    assert main(["run", str(RECIPE), "--check", "--set", override]) == 2
    assert_one_error_line(capsys, pattern)


def test_a_recipe_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(RECIPE.read_text().replace("name: sentiment", "name: critiqué")
                       .encode("latin-1"))  # fmt: skip
    assert main(["run", str(recipe), "--check"]) == 2
    assert_one_error_line(capsys, "recipe .*r.yaml is not UTF-8 text \\(.* at byte \\d+\\); "
                                  "save it as UTF-8 \\(e.g. iconv")  # fmt: skip


# ---------------------------------------------------------------- a checkpoint left behind


def _interrupted(model, data, out, at: int, **kw):
    """A finetune run into `out` killed before step `at + 1`, its checkpoints left beside."""
    from transformers import TrainerCallback

    from pocketsize.distill import finetune

    class Interrupt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == at:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(model, data, out, callbacks=[Interrupt()], **kw)
    assert (out.parent / f".{out.name}.checkpoints" / f"checkpoint-{at}").is_dir()


def test_a_resumed_run_records_the_whole_runs_train_loss(model, tmp_path):
    from pocketsize.distill import finetune

    data = make_cls_dataset(n_train=96)
    kw = dict(max_steps=6, save_steps=2, bf16=False, **QUICK)
    straight = json.loads((finetune(model, data, tmp_path / "a", **kw) / "stage.json").read_text())
    _interrupted(model, data, tmp_path / "b", at=4, **kw)
    resumed = finetune(model, data, tmp_path / "b", resume=True, **kw)
    record = json.loads((resumed / "stage.json").read_text())
    assert record["steps"] == straight["steps"] == 6 and record["resumed_from"]
    # the same six steps (resume reproduces them), so the same mean loss over all six
    assert record["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-4)


def test_a_checkpoint_ignored_without_resume_is_named(model, tmp_path, capsys):
    data = tmp_path / "data"
    write_cls_files(data)
    out = tmp_path / "t"
    _interrupted(model, str(data), out, at=2, max_steps=3, save_steps=2, bf16=False, **QUICK)
    capsys.readouterr()
    argv = ["finetune", "--model", str(model), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--max-steps", "3", "--batch-size", "16", "--no-evaluate"]) == 0
    err = capsys.readouterr().err
    assert "holds checkpoint-2 of an earlier run that stopped; starting over" in err
    assert "pass --resume" in err
    assert json.loads((out / "stage.json").read_text())["resumed_from"] is None
