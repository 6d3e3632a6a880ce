"""Every example a user would paste from README.md and docs/ runs, on tiny settings.

Executed: every ```python block, and every `pocketsize ...` command of the ```bash blocks
(continuation lines joined). A block right after `<!-- not executed: WHY -->` is left out, and
the reason is in the comment; ```text blocks are synopses, never run. In a ```bash block any
command other than `pocketsize` is an error unless the block is marked, so nothing is left
out silently.

Tiny settings: the catalogue's real names are swapped for a tiny random model and toy data of
the same kind (SUBSTITUTIONS), and epochs for two steps; everything else runs as written, in
a fresh working directory.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from zoo import make_ner_dataset, make_tokenizer, tiny_config, write_cls_files

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"(<!-- not executed: [^>]+-->\n)?```(\w*)\n(.*?)\n```", re.S)


def examples(language: str) -> list:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            marker, lang, body = match.groups()
            if lang == language and not marker:
                line = text.count("\n", 0, match.start(3))
                found.append(pytest.param(body, id=f"{page.relative_to(REPO)}:{line + 1}"))
    return found


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """What the examples' catalogue names stand for here."""
    from transformers import AutoModel

    root = tmp_path_factory.mktemp("world")
    tokenizer = make_tokenizer(root / "encoder")  # six layers, as MiniLM-L6: truncate:0,2,4 fits
    config = tiny_config("bert", len(tokenizer), num_hidden_layers=6)
    AutoModel.from_config(config).save_pretrained(root / "encoder")
    write_cls_files(root / "sentiment", n_train=48, n_val=16, n_test=24)
    make_ner_dataset(n_train=48, n_val=16, n_test=16).save_to_disk(str(root / "ner"))
    return {
        "minilm-l6": str(root / "encoder"),
        "rt-polarity": str(root / "sentiment"),
        "wnut16": str(root / "ner"),
    }


def tiny(text: str, world: dict, quote: str) -> str:
    for name, path in world.items():
        text = text.replace(f"{quote}{name}{quote}" if quote else name, f"{quote}{path}{quote}")
    text = re.sub(r"\bepochs=\d+", "max_steps=2", text)
    return re.sub(r"--epochs \d+", "--max-steps 2", text)


def test_every_example_is_found():
    assert len(examples("python")) >= 2 and len(examples("bash")) >= 1


@pytest.mark.parametrize("code", examples("python"))
def test_python_example_runs(code, tiny_world, tmp_path, monkeypatch, cache_in_tmp):
    monkeypatch.chdir(tmp_path)
    exec(compile(tiny(code, tiny_world, '"'), "<example>", "exec"), {"__name__": "example"})


@pytest.mark.parametrize("block", examples("bash"))
def test_command_example_runs(block, tiny_world, tmp_path, monkeypatch, cache_in_tmp):
    from pocketsize.cli import main

    monkeypatch.chdir(tmp_path)
    commands = [c for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    for command in commands:
        words = shlex.split(tiny(command, tiny_world, ""), comments=True)
        assert words[0] == "pocketsize", f"mark the block <!-- not executed: ... -->: {command}"
        assert main(words[1:]) == 0, command
