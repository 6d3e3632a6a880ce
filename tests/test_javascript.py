"""pocketsize's ONNX output where web and Node users run it: the transformers.js pipeline (its
tokenizer, onnxruntime-node) reading the `onnx/` layout that export and quantize write with
transformers_js=True, gives pocketsize's labels and scores within 1e-4, for every kind of graph
pocketsize emits (fp32 with ONNX Runtime's fusions, dynamic and static int8, 4-bit weights and
embedding tables).

The JavaScript packages come from the npm registry through the committed lockfile
(tests/js/package-lock.json, `npm ci` with install scripts off, so nothing downloads from
elsewhere). The npm onnxruntime-node is older than the Python onnxruntime, which is why every
operator is run there. Skipped only where node or npm is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from zoo import make_cls_dataset, make_sentences, make_tiny_bert

JS = Path(__file__).parent / "js"

if shutil.which("node") is None or shutil.which("npm") is None:
    pytest.skip(
        "node and npm are not installed, so pocketsize's output cannot be run from JavaScript "
        "here (install Node.js 18 or later to run these tests)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def node_modules():
    """tests/js/node_modules, installed from the lockfile when it is missing or stale."""
    marker = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not marker.is_file() or marker.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=JS, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return JS / "node_modules"


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """A tiny classifier with outputs far from 50/50 (large random weights), exported and
    quantized four ways, each with the transformers.js layout."""
    from pocketsize.export import export
    from pocketsize.quantize import quantize

    root = tmp_path_factory.mktemp("js")
    model = make_tiny_bert(root / "bert", initializer_range=0.5)
    fp32 = export(model, root / "fp32", transformers_js=True)
    data = make_cls_dataset()
    return {
        "fp32": fp32,
        "int8-dynamic": quantize(fp32, out=root / "int8", transformers_js=True),
        "int8-static": quantize(fp32, data, method="static", out=root / "static",
                                transformers_js=True),
        "4-bit": quantize(fp32, out=root / "q4", matmul_bits=4, embedding_bits=4,
                          transformers_js=True),
    }  # fmt: skip


TEXTS = make_sentences(24, seed=5)[0] + ["", "a"]
# longer than the model's 64 positions: transformers.js 4.3.2 cuts it after adding [CLS] and
# [SEP] (its last token is a word piece), transformers keeps [SEP] last, so the two runtimes
# read different inputs and only running it is checked
LONG = "good " * 200


def run_in_node(model_dir: Path, texts: list[str], tmp_path, script="classify.mjs") -> list:
    """What tests/js/`script` prints for `texts` run through the directory's model."""
    manifest = json.loads((model_dir / "stage.json").read_text())
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts))
    done = subprocess.run(
        ["node", str(JS / script), str(model_dir), manifest["transformers_js"]["dtype"],
         str(texts_file)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", ["fp32", "int8-dynamic", "int8-static", "4-bit"])
def test_transformers_js_gives_pocketsizes_labels_and_scores(name, variants, node_modules,
                                                             tmp_path):  # fmt: skip
    from pocketsize.eval import load_pipeline

    model_dir = variants[name]
    expected = load_pipeline(model_dir)(TEXTS, top_k=None)
    got = run_in_node(model_dir, TEXTS, tmp_path)
    assert len(got) == len(expected)
    for mine, theirs in zip(expected, got):
        assert theirs[0]["label"] == mine[0]["label"]
        by_label = {r["label"]: r["score"] for r in theirs}
        for r in mine:
            assert abs(by_label[r["label"]] - r["score"]) < 1e-4
    # the comparison means something: the model is sure of some texts, and not of one label
    assert len({e[0]["label"] for e in expected}) == 2
    assert max(e[0]["score"] for e in expected) > 0.7
    # a text past the model's limit runs (the layout states the limit for the tokenizer)
    (long,) = run_in_node(model_dir, [LONG], tmp_path)
    assert {r["label"] for r in long} == {"negative", "positive"}


def test_every_operator_pocketsize_emits_was_run_in_node(variants):
    """The graphs above hold the operators pocketsize writes, so the parity test ran each of
    them on the npm onnxruntime-node."""
    ops = set()
    for model_dir in variants.values():
        manifest = json.loads((model_dir / "stage.json").read_text())
        graph = onnx.load(str(model_dir / manifest["transformers_js"]["file"]))
        ops |= {node.op_type for node in graph.graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops  # dynamic int8
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static int8 (QDQ)
    assert {"MatMulNBits", "GatherBlockQuantized"} <= ops  # 4-bit weights and embeddings
    assert ops & {"Attention", "MultiHeadAttention", "SkipLayerNormalization"}  # fusions


def test_the_layout_links_the_graph_and_names_its_precision(variants):
    for name, dtype, file in [("fp32", "fp32", "model.onnx"),
                              ("int8-dynamic", "q8", "model_quantized.onnx"),
                              ("4-bit", "q4", "model_q4.onnx")]:  # fmt: skip
        model_dir = variants[name]
        manifest = json.loads((model_dir / "stage.json").read_text())
        assert manifest["transformers_js"] == {"dtype": dtype, "file": f"onnx/{file}"}
        top = model_dir / manifest["file"]
        assert (model_dir / "onnx" / file).samefile(top)  # a hard link, not a second copy
        assert (model_dir / "tokenizer.json").is_file() and (model_dir / "config.json").is_file()
        settings = json.loads((model_dir / "tokenizer_config.json").read_text())
        assert settings["model_max_length"] == 64  # the model's positions


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "int8"])
def test_transformers_js_feature_extraction_gives_the_graphs_sentence_embeddings(
    quantized, node_modules, tmp_path
):
    """A sentence embedder's directory in transformers.js's feature-extraction pipeline (mean
    pooling, normalize), as its documentation runs all-MiniLM-L6-v2: the embeddings pocketsize's
    graph computes inside, within 1e-4."""
    import numpy as np
    from zoo import make_tiny_embedder

    from pocketsize.distill.loading import load_tokenizer
    from pocketsize.export import export
    from pocketsize.quantize import quantize
    from pocketsize.runtime.runners import OnnxRunner

    model = make_tiny_embedder(tmp_path / "embedder", initializer_range=0.5)
    model_dir = export(model, tmp_path / "fp32", transformers_js=True)
    if quantized:
        model_dir = quantize(model_dir, out=tmp_path / "int8", transformers_js=True)
    record = json.loads((model_dir / "stage.json").read_text())
    texts = TEXTS[:8]
    got = np.asarray(run_in_node(model_dir, texts, tmp_path, script="embed.mjs"))
    runner = OnnxRunner(model_dir / record["file"], ("sentence_embedding",), 1, "graph")
    # one padded batch, as the pipeline runs the list (dynamic int8's scales are the batch's)
    enc = load_tokenizer(str(model_dir))(texts, padding=True, return_tensors="np")
    want = runner.run({k: v.astype(np.int64) for k, v in enc.items()})["sentence_embedding"]
    assert got.shape == (len(texts), 32)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(want).max() > 0.05  # embeddings that could differ
