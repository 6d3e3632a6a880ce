"""The bad-input matrix: every verb, given a broken model, tokenizer, data file, recipe or output
path, ends with exactly one stderr line `pocketsize: error: ...` that names the problem and the
fix, exit code 2, no traceback, and no output written.

Most cases run in-process through the CLI's `main(argv)` (a subprocess costs ~7 s of imports);
a few run as real subprocesses, to check what a shell user sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import make_sentences, make_tiny_bert, write_cls_files
from zoo import assert_one_error_line

from pocketsize.cli import main


def _halve(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path):
    path.write_bytes(os.urandom(path.stat().st_size))


def _drop_tokenizer(d):
    for p in list(d.iterdir()):
        if "tok" in p.name or p.name in ("vocab.txt", "special_tokens_map.json"):
            p.unlink()


def _pickle_only(d):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()


def _nan_weight(d):
    from safetensors.torch import load_file, save_file

    tensors = load_file(d / "model.safetensors")
    tensors["classifier.weight"][0, 0] = float("nan")
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})


def _needs_own_code(d):
    config = json.loads((d / "config.json").read_text())
    config["model_type"] = "mybert"
    config["auto_map"] = {"AutoConfig": "configuration_my.MyConfig"}
    (d / "config.json").write_text(json.dumps(config))


def _tokenizer_too_big(d):
    vocab = (d / "vocab.txt").read_text().splitlines() + [f"extra{i}" for i in range(50)]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (d / "tokenizer.json").unlink()


# name -> (how the model directory is broken, what the one error line must say)
BROKEN_MODELS = {
    "weights-truncated": (lambda d: _halve(d / "model.safetensors"), "not a readable safetensors"),
    "weights-random": (lambda d: _random_bytes(d / "model.safetensors"), "truncated or corrupted"),
    "weights-empty": (lambda d: (d / "model.safetensors").write_bytes(b""), "not a readable"),
    "weights-missing": (lambda d: (d / "model.safetensors").unlink(), "no model"),
    "weights-pickled": (_pickle_only, "never loads pickled weights.*safe_serialization=True"),
    "weights-nan": (_nan_weight, "hold NaN or infinite values \\(classifier.weight\\)"),
    "tokenizer-missing": (_drop_tokenizer, "no tokenizer"),
    "tokenizer-too-big": (_tokenizer_too_big, "tokenizer has \\d+ tokens but the model's vocab"),
    "remote-code": (_needs_own_code, "custom architecture \\('mybert'\\).*trust_remote_code"),
}
BROKEN_ONNX = {
    "onnx-truncated": (lambda d: _halve(d / "model.onnx"), "not a valid ONNX model.*re-export"),
    "onnx-random": (lambda d: _random_bytes(d / "model.onnx"), "not a valid ONNX model"),
}


def verb_argv(verb, model, data, out):
    return {
        "eval": ["eval", "--model", f"m={model}", "--data", data, "--out", out, "--no-latency",
                 "--no-memory"],
        "predict": ["predict", "--model", model, "a good film"],
        "export": ["export", "--model", model, "--out", out],
        "quantize": ["quantize", "--model", model, "--out", out],
        "prune": ["prune", "--model", model, "--data", data, "--ffn", "0.5", "--out", out],
        "finetune": ["finetune", "--model", model, "--data", data, "--out", out, "--max-steps",
                     "1"],
        "distill": ["distill", "--teacher", model, "--data", data, "--student", "config:layers=1",
                    "--out", out, "--max-steps", "1"],
    }[verb]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    good = make_tiny_bert(root / "good")
    write_cls_files(root / "data")
    assert main(["export", "--model", str(good), "--out", str(root / "onnx")]) == 0
    for name, (breaks, _) in BROKEN_MODELS.items():
        shutil.copytree(good, root / name)
        breaks(root / name)
    for name, (breaks, _) in BROKEN_ONNX.items():
        shutil.copytree(root / "onnx", root / name)
        breaks(root / name)
    (root / "a-file").write_text("not a directory")
    return root


TORCH_VERBS = ("eval", "predict", "export", "prune", "finetune", "distill")


@pytest.mark.parametrize("verb", TORCH_VERBS)
@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_a_broken_model_directory_is_one_error_line(case, verb, workdir, capsys):
    out = workdir / "out" / f"{case}-{verb}"
    argv = verb_argv(verb, str(workdir / case), str(workdir / "data"), str(out))
    assert main(argv) == 2
    assert_one_error_line(capsys, BROKEN_MODELS[case][1])
    assert not out.exists()


@pytest.mark.parametrize("verb", ["eval", "predict", "quantize"])
@pytest.mark.parametrize("case", list(BROKEN_ONNX))
def test_a_broken_onnx_file_is_one_error_line(case, verb, workdir, capsys):
    out = workdir / "out" / f"{case}-{verb}"
    assert main(verb_argv(verb, str(workdir / case), str(workdir / "data"), str(out))) == 2
    assert_one_error_line(capsys, BROKEN_ONNX[case][1])
    assert not out.exists()


def _rows(n=40, seed=1):
    texts, labels = make_sentences(n, seed=seed)
    return [f'"{t}",{["negative", "positive"][y]}\n' for t, y in zip(texts, labels)]


BAD_DATA = {
    "not-utf8": (
        lambda rows: ("text,label\n" + "".join(rows) + '"un film très beau",positive\n')
        .encode("latin-1"),
        "not UTF-8 text.*iconv",
    ),
    "ragged": (
        lambda rows: ("text,label\n" + "".join(rows[:9]) + '"a film",positive,extra\n'
                      + "".join(rows[9:])).encode(),
        "not a well-formed CSV file.*line 11",
    ),
    "no-label": (
        lambda rows: ("text,label\n" + "".join(rows[:9]) + '"a film",\n' + "".join(rows[9:]))
        .encode(),
        "row 10 of .* has no label",
    ),
    "empty-text": (
        lambda rows: ("text,label\n" + "".join(rows[:9]) + '"  ",positive\n' + "".join(rows[9:]))
        .encode(),
        "row 10 of .* has empty text",
    ),
    "empty-file": (lambda rows: b"", "is empty"),
}  # fmt: skip


@pytest.mark.parametrize("verb", ["eval", "finetune", "prune"])
@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_error_line_naming_the_row(case, verb, workdir, capsys, tmp_path):
    make, pattern = BAD_DATA[case]
    data = tmp_path / f"{case}.csv"
    data.write_bytes(make(_rows()))
    out = tmp_path / "out"
    assert main(verb_argv(verb, str(workdir / "good"), str(data), str(out))) == 2
    assert_one_error_line(capsys, pattern)
    assert not out.exists()


def test_a_very_long_text_is_truncated_with_a_note(workdir, tmp_path, capsys):
    data = tmp_path / "long.csv"
    rows = _rows(3)
    data.write_text("text,label\n" + '"' + "good film " * 10_000 + '",positive\n' + "".join(rows))
    out = tmp_path / "report"
    argv = verb_argv("eval", str(workdir / "good"), str(data), str(out)) + ["--split", "all"]
    assert main(argv) == 0
    assert "1 texts reach the 64-token limit of variant 'm'" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["truncated_inputs"] == {"m": {"examples": 1, "max_length": 64}}
    assert "truncated to it" in (out / "report.md").read_text()


@pytest.mark.parametrize("model", ["good", "onnx"])
def test_predict_reads_the_start_of_a_very_long_text_with_a_note(model, workdir, capsys):
    assert main(["predict", "--model", str(workdir / model), "good film " * 10_000]) == 0
    out, err = capsys.readouterr()
    assert "note: text 1 is longer than the model's 64 tokens" in err
    assert json.loads(out.strip())[0]["label"] in ("negative", "positive")


@pytest.mark.parametrize("verb", ["eval", "export", "quantize", "prune", "finetune", "distill"])
def test_an_output_inside_a_file_is_one_error_line(verb, workdir, capsys):
    model = workdir / ("onnx" if verb == "quantize" else "good")
    out = workdir / "a-file" / "sub"
    assert main(verb_argv(verb, str(model), str(workdir / "data"), str(out))) == 2
    assert_one_error_line(capsys, "a-file is a file, not a directory")
    assert (workdir / "a-file").read_text() == "not a directory"


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('name: x\ntask: !!python/object/apply:os.system ["echo hi"]\n', "not valid YAML.*tag"),
        ("name: x\n  task: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("name: x\nepochs: 2\n", "recipe key 'epochs' is unknown"),
    ],
)
def test_a_bad_recipe_is_one_error_line(text, pattern, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--check"]) == 2
    assert_one_error_line(capsys, pattern)


@pytest.mark.parametrize("case", ["weights-truncated", "weights-nan", "tokenizer-too-big"])
def test_a_recipe_on_a_broken_teacher_is_one_error_line(case, workdir, capsys, tmp_path):
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "broken", "data": str(workdir / "data"),
        "teacher": {"model": str(workdir / case), "finetune": {"max_steps": 1}},
        "student": {"init": "truncate", "layers": [0]}, "distill": {"max_steps": 1},
    }))  # fmt: skip
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run_dir)]) == 2
    assert_one_error_line(capsys, BROKEN_MODELS[case][1])
    assert not (run_dir / "teacher").exists()


def test_an_existing_output_is_kept(workdir, capsys, tmp_path):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "model.onnx").write_text("finished work")
    assert main(["export", "--model", str(workdir / "good"), "--out", str(out)]) == 2
    assert_one_error_line(capsys, "already exists.*--overwrite")
    assert (out / "model.onnx").read_text() == "finished work"


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["eval", "--model", "m={onnx-truncated}", "--data", "{data}", "--out", "{out}"],
         "not a valid ONNX model"),
        (["predict", "--model", "{weights-pickled}", "a film"], "never loads pickled weights"),
        (["finetune", "--model", "{good}", "--data", "{a-file}", "--out", "{out}"],
         "unsupported file type|not UTF-8|dataset"),
    ],
)  # fmt: skip
def test_a_shell_user_sees_one_line_and_exit_code_2(args, pattern, workdir, tmp_path):
    import re

    paths = {p.name: str(p) for p in workdir.iterdir()} | {"out": str(tmp_path / "out")}
    argv = [a.format_map(paths) if "{" in a else a for a in args]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, "-m", "pocketsize", *argv], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pocketsize: error: "), lines
    assert re.search(pattern, lines[0]) and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
