"""No code runs that the user did not trust (issue 34, part 1).

A model directory may name code of its own: an `auto_map` in config.json or
tokenizer_config.json (transformers' remote code), or a module directory's class. Left unset,
transformers asks "Do you wish to run the custom code? [y/N]" on stdin, so `echo y | pocketsize
predict ...` ran a file from the directory. Every verb, fed "y" on stdin, must refuse such a
directory in one line naming --trust-remote-code, and the file must not have run. The verbs run
in-process through the CLI's `main(argv)` with stdin replaced (a subprocess costs ~7 s of
imports); one runs as a real subprocess, as a shell user would."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_tiny_bert, make_tokenizer, write_cls_files

from pocketsize.cli import main
from pocketsize.errors import PocketsizeError

PACKAGE = Path(__file__).resolve().parent.parent / "pocketsize"
REFUSED = r"needs its own code .*--trust-remote-code"
# a tokenizer whose code is a file beside the model; importing the file leaves a marker
EVIL_MODULE = """from pathlib import Path
Path({marker!r}).write_text("ran")
from transformers import BertTokenizer, BertTokenizerFast


class EvilTokenizer(BertTokenizer):
    pass


class EvilTokenizerFast(BertTokenizerFast):
    pass
"""


def add_evil_tokenizer(d: Path, marker: Path, prefix: str = "") -> Path:
    """tokenizer_config.json names EvilTokenizer, a class only evil_tok.py (or, with a
    `owner/name--` prefix, a hub repository) has."""
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "EvilTokenizer"
    config["auto_map"] = {
        "AutoTokenizer": [f"{prefix}evil_tok.EvilTokenizer", f"{prefix}evil_tok.EvilTokenizerFast"]
    }
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    (d / "evil_tok.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    return d


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from _eval_helpers import export_onnx

    root = tmp_path_factory.mktemp("trust")
    marker = root / "evil-code-ran"
    good = make_tiny_bert(root / "good")
    write_cls_files(root / "data", n_train=16, n_val=8, n_test=8)
    export_onnx(good, root / "onnx")
    for name, source in (("evil", good), ("evil-onnx", root / "onnx"), ("hub", good)):
        shutil.copytree(source, root / name)
        add_evil_tokenizer(root / name, marker, "someone/evil--" if name == "hub" else "")
    return root


@pytest.fixture
def stdin_says_yes(monkeypatch):
    """What `echo y | pocketsize ...` gives a prompt."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 5))


def argv_of(verb, model, data, out):
    return {
        "predict": ["predict", "--model", model, "a good film"],
        "eval": ["eval", "--model", f"m={model}", "--data", data, "--out", out, "--no-latency",
                 "--no-memory"],
        "export": ["export", "--model", model, "--out", out],
        "quantize": ["quantize", "--model", model, "--method", "static", "--data", data,
                     "--out", out],
        "prune": ["prune", "--model", model, "--data", data, "--ffn", "0.5", "--out", out],
        "finetune": ["finetune", "--model", model, "--data", data, "--out", out, "--max-steps",
                     "1"],
        "distill": ["distill", "--teacher", model, "--data", data, "--student", "config:layers=1",
                    "--out", out, "--max-steps", "1"],
    }[verb]  # fmt: skip


def assert_one_error_line(err: str, pattern: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pocketsize: error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


CASES = [
    ("predict", "evil"),
    ("predict", "evil-onnx"),
    ("eval", "evil"),
    ("eval", "evil-onnx"),
    ("export", "evil"),
    ("quantize", "evil-onnx"),
    ("prune", "evil"),
    ("finetune", "evil"),
    ("distill", "evil"),
]


@pytest.mark.parametrize("verb, model", CASES)
def test_no_verb_runs_a_tokenizers_own_code_even_when_stdin_says_yes(
    verb, model, workdir, stdin_says_yes, capsys
):
    out = workdir / "out" / f"{verb}-{model}"
    assert main(argv_of(verb, str(workdir / model), str(workdir / "data"), str(out))) == 2
    line = assert_one_error_line(capsys.readouterr().err, REFUSED)
    assert "EvilTokenizerFast in evil_tok.py" in line and "holds no tokenizer" not in line
    assert not (workdir / "evil-code-ran").exists()
    assert not out.exists()


def test_a_shell_user_piping_yes_gets_one_line_and_nothing_runs(workdir):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, "-m", "pocketsize", "predict", "--model", str(workdir / "evil"), "x"],
        input="y\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert_one_error_line(done.stderr, REFUSED)
    assert "Traceback" not in done.stderr and "[y/N]" not in done.stdout + done.stderr
    assert not (workdir / "evil-code-ran").exists()


def test_a_tokenizer_from_a_hub_repository_is_refused_naming_it(workdir, stdin_says_yes, capsys):
    assert main(["predict", "--model", str(workdir / "hub"), "a film"]) == 2
    line = assert_one_error_line(capsys.readouterr().err, REFUSED)
    assert "EvilTokenizerFast from the hub repository someone/evil" in line


def test_the_python_loaders_say_own_code_not_no_tokenizer(workdir):
    from pocketsize.assets import load_tokenizer

    with pytest.raises(PocketsizeError, match="needs its own code.*trust_remote_code=True"):
        load_tokenizer(workdir / "evil")


def test_transformers_own_refusal_is_the_same_one_line(workdir, monkeypatch):
    """For a hub id the checks cannot read the files: transformers, told trust_remote_code=False,
    refuses by itself, and the loader says so in the same words (never asking on stdin)."""
    from pocketsize.formats import hf_load

    monkeypatch.setattr(hf_load, "check_tokenizer_code", lambda *a: None)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    with pytest.raises(PocketsizeError, match="needs its own code.*--trust-remote-code"):
        hf_load.load_tokenizer(workdir / "evil")
    assert not (workdir / "evil-code-ran").exists()


def test_trust_remote_code_runs_it(workdir, tmp_path, monkeypatch, capsys):
    """--trust-remote-code reaches transformers: the tokenizer's file runs, nothing is asked."""
    import transformers.dynamic_module_utils as dynamic

    # transformers copies the module into its modules cache and puts that on sys.path
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a prompt would fail to read
    marker = tmp_path / "trusted-code-ran"
    trusted = add_evil_tokenizer(shutil.copytree(workdir / "good", tmp_path / "m"), marker)
    assert main(["predict", "--model", str(trusted), "--trust-remote-code", "a good film"]) == 0
    assert marker.read_text() == "ran"
    assert json.loads(capsys.readouterr().out.strip())[0]["label"] in ("negative", "positive")


@pytest.mark.parametrize("verb", ["finetune", "distill"])
def test_the_training_verbs_pass_trust_remote_code_to_their_loaders(
    verb, workdir, tmp_path, monkeypatch
):
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    marker = tmp_path / "trusted-code-ran"
    trusted = add_evil_tokenizer(shutil.copytree(workdir / "good", tmp_path / "m"), marker)
    out = tmp_path / "out"
    argv = argv_of(verb, str(trusted), str(workdir / "data"), str(out))
    assert main(argv + ["--trust-remote-code", "--no-evaluate"]) == 0
    assert marker.read_text() == "ran" and (out / "model.safetensors").is_file()


MODEL_VERBS = ("predict", "eval", "export", "quantize", "prune", "finetune", "distill")


@pytest.mark.parametrize("verb", MODEL_VERBS)
def test_every_verb_that_loads_a_model_takes_both_trust_flags(verb):
    from pocketsize.cli import build_parser

    argv = argv_of(verb, "m", "d", "o") + ["--trust-remote-code", "--trust-module-code"]
    args = build_parser().parse_args(argv)
    assert args.trust_remote_code and args.trust_module_code


def _linear_module_dir(d: Path, class_path: str) -> Path:
    import torch
    from safetensors.torch import save_model

    make_tokenizer(d)
    config = {
        "pocketsize_class": class_path,
        "module_config": {"in_features": 2, "out_features": 2},
        "module_init": "kwargs",
    }
    (d / "config.json").write_text(json.dumps(config))
    save_model(torch.nn.Linear(2, 2), str(d / "model.safetensors"))
    return d


@pytest.mark.parametrize(
    "class_path, shown",
    [
        ("pocketsize.distill.bilstm:nn.Linear", "defined in torch.nn.modules.linear"),
        ("torch.nn:Linear", "torch.nn:Linear outside pocketsize"),
    ],
)
def test_a_class_path_through_pocketsize_to_another_module_needs_trust(
    class_path, shown, tmp_path, capsys
):
    import torch

    from pocketsize.formats.module_dir import load_module_dir

    d = _linear_module_dir(tmp_path / "linear", class_path)
    with pytest.raises(PocketsizeError, match=f"{shown}.*trust_module_code=True"):
        load_module_dir(d)
    assert isinstance(load_module_dir(d, trust_module_code=True), torch.nn.Linear)
    # the CLI's refusal names the flag every verb now takes (this directory records no task:
    # predict asks for it rather than guess)
    assert main(["predict", "--model", str(d), "--task", "text-classification", "x"]) == 2
    assert_one_error_line(capsys.readouterr().err, f"{shown}.*--trust-module-code")


# ---- no call site can forget: every transformers load goes through formats/hf_load.py ----

# ONNX-only tools of optimum: they read the config.json of a graph pocketsize exported from a
# model the loader had already checked
ALLOWED_FROM_PRETRAINED = {"ORTOptimizer", "ORTQuantizer"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value if isinstance(func, ast.Attribute) else None
            yield node, name, getattr(owner, "id", None)


def test_no_module_loads_from_transformers_but_the_loader():
    loader = PACKAGE / "formats" / "hf_load.py"
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        if file == loader:
            continue
        for node, name, owner in _calls(ast.parse(file.read_text())):
            where = f"{file.relative_to(PACKAGE.parent)}:{node.lineno}"
            keywords = {k.arg for k in node.keywords}
            if name == "from_pretrained" and owner not in ALLOWED_FROM_PRETRAINED:
                found.append(f"{where} calls {owner or '...'}.from_pretrained")
            elif name == "main_export":
                found.append(f"{where} calls main_export")
            elif name == "pipeline" and "trust_remote_code" not in keywords:
                found.append(f"{where} calls pipeline without trust_remote_code")
    assert not found, "load through pocketsize.formats.hf_load instead: " + "; ".join(found)
