"""GGUF files in: every verb that takes a model takes a llama.cpp GGUF file (or a directory
holding one), dequantized once by transformers' GGUF loader into a cached directory that
records where its weights came from; the records of what is made from it say so too."""

from __future__ import annotations

import json
import sys

import pytest
from zoo import assert_one_error_line, lm_data, make_tiny_gguf

import pocketsize as ps
from pocketsize.errors import PocketsizeError


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.Q8_0.gguf")


def test_a_gguf_file_is_a_model_that_records_its_quantized_source(
    gguf_file, tmp_path, cache_in_tmp
):
    from pocketsize.assets import resolve_model

    first = resolve_model(str(gguf_file))
    record = json.loads(open(f"{first}/stage.json").read())["dequantized_from"]
    assert record["file"] == gguf_file.name and len(record["sha256"]) == 64
    assert record["tensor_types"] == {"Q8_0": 14, "F32": 5, "Q4_1": 1}
    assert "dequantized to float32" in open(f"{first}/README.md").read()
    # made once: the directory holding the file resolves to the same cached copy
    assert resolve_model(str(gguf_file.parent)) == first
    model = ps.load_model(first, task="causal-lm")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 2


def test_export_and_quantize_of_a_gguf_file_say_where_the_weights_came_from(
    gguf_file, tmp_path, cache_in_tmp
):
    onnx_dir = ps.export(gguf_file, tmp_path / "onnx", task="causal-lm")
    onnx_record = json.loads((onnx_dir / "stage.json").read_text())
    assert onnx_record["generation_parity"] is True
    assert onnx_record["dequantized_from"]["tensor_types"]["Q4_1"] == 1
    int8 = ps.quantize(onnx_dir, out=tmp_path / "int8", method="dynamic")
    assert (
        json.loads((int8 / "stage.json").read_text())["dequantized_from"]["file"] == gguf_file.name
    )


def test_a_gguf_teacher_distils_through_the_cli(gguf_file, tmp_path, cache_in_tmp, capsys):
    from pocketsize.cli import main

    data = lm_data(n_train=16, n_val=4, n_test=4)
    data.save_to_disk(str(tmp_path / "lm"))
    argv = [
        "distill", "--teacher", str(gguf_file), "--data", str(tmp_path / "lm"),
        "--task", "causal-lm", "--student", "truncate:0", "--max-steps", "2",
        "--out", str(tmp_path / "student"),
    ]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((tmp_path / "student" / "stage.json").read_text())["task"] == "causal-lm"


def test_several_gguf_files_in_one_directory_are_named(gguf_file, tmp_path):
    from pocketsize.assets import resolve_model

    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(gguf_file.read_bytes())
    with pytest.raises(
        PocketsizeError, match=r"holds 2 GGUF files \(a.gguf, b.gguf\); pass the one"
    ):
        resolve_model(str(tmp_path))


def test_a_broken_gguf_file_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    from pocketsize.cli import main

    monkeypatch.setenv("POCKETSIZE_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    assert main(["export", "--model", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert_one_error_line(capsys, r"broken.gguf could not be read as a GGUF model")
    assert not list((tmp_path / "cache" / "gguf").iterdir())
    assert not (tmp_path / "o").exists()


def test_without_the_gguf_package_the_extra_is_named(gguf_file, tmp_path, monkeypatch, capsys):
    from pocketsize.cli import main

    monkeypatch.setenv("POCKETSIZE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    assert main(["export", "--model", str(gguf_file), "--out", str(tmp_path / "o")]) == 2
    assert_one_error_line(capsys, r"needs the gguf package.*pip install 'pocketsize\[gguf\]'")
