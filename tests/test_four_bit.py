"""4-bit weights: the unfused embedding equals the fused one, 4-bit tables and MatMuls stay close
to float, load in optimum's ORTModel and the pipeline, convert to the mobile format, and the
settings that make no sense are refused."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from pocketsize.errors import PocketsizeError
from pocketsize.runtime.cost import onnx_param_count


@pytest.fixture(scope="module")
def cls_onnx(tiny_cls_dir, tmp_path_factory):
    from pocketsize.export import export

    return export(tiny_cls_dir, tmp_path_factory.mktemp("four-bit") / "cls-onnx")


def _ops(path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _table_bytes(path, op_type: str, inputs: list[int]) -> int:
    """Bytes of the initializers feeding `inputs` of every `op_type` node."""
    import onnx

    model = onnx.load(str(path))
    tables = {i.name: len(i.raw_data) for i in model.graph.initializer}
    return sum(
        tables.get(n.input[k], 0)
        for n in model.graph.node
        if n.op_type == op_type
        for k in inputs
        if k < len(n.input)
    )


def _run(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _random_feeds(vocab_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, (6, 12))
    # padding on either side and holes inside: whatever the fused op does with the mask, the
    # unfused graph must do the same
    mask = (rng.random((6, 12)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": rng.integers(0, 2, (6, 12))}


def test_unfused_embedding_matches_the_fused_op(cls_onnx, tmp_path):
    import onnx

    from pocketsize.quantize.four_bit import table_gathers, unfuse_embeddings

    fused = cls_onnx / "model.onnx"
    before = _ops(fused)
    assert before["EmbedLayerNormalization"] == 1
    model = onnx.load(str(fused))
    made = unfuse_embeddings(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "unfused.onnx"))
    ops = _ops(tmp_path / "unfused.onnx")
    assert ops["EmbedLayerNormalization"] == 0 and ops["Gather"] == before["Gather"] + 3
    assert sorted(made["EmbedLayerNormalization_0"]) == sorted(table_gathers(model))  # not types
    vocab = json.loads((cls_onnx / "config.json").read_text())["vocab_size"]
    feeds = _random_feeds(vocab)
    np.testing.assert_allclose(
        _run(tmp_path / "unfused.onnx", feeds), _run(fused, feeds), atol=1e-5
    )


def test_4bit_embeddings_and_matmuls(cls_onnx, tiny_cls_data, tmp_path):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    from pocketsize.quantize import quantize

    int8 = quantize(cls_onnx, out=tmp_path / "int8")
    emb4 = quantize(cls_onnx, out=tmp_path / "emb4", embedding_bits=4, block_size=16, mobile=True)
    ops = _ops(emb4 / "model_quantized.onnx")
    assert ops["GatherBlockQuantized"] == 2  # word and position tables; token types stay float
    assert ops["QEmbedLayerNormalization"] == 0 and ops["MatMulInteger"] > 0
    # the word and position tables: 4 bits + a float scale per 16 values against 8 bits
    int8_tables = _table_bytes(int8 / "model_quantized.onnx", "QEmbedLayerNormalization", [2, 3])
    four_tables = _table_bytes(emb4 / "model_quantized.onnx", "GatherBlockQuantized", [0, 2, 3])
    assert four_tables < 0.8 * int8_tables
    q = json.loads((emb4 / "stage.json").read_text())["quantization"]
    assert (q["embedding_bits"], q["matmul_bits"], q["block_size"]) == (4, 8, 16)

    vocab = json.loads((cls_onnx / "config.json").read_text())["vocab_size"]
    feeds = _random_feeds(vocab, seed=1)
    ref = _run(cls_onnx / "model.onnx", feeds)
    scale = max(1.0, np.abs(ref).max())
    assert np.abs(_run(emb4 / "model_quantized.onnx", feeds) - ref).max() < 0.1 * scale
    assert np.abs(_run(emb4 / "model_quantized.ort", feeds) - ref).max() < 0.1 * scale

    all4 = quantize(cls_onnx, out=tmp_path / "all4", embedding_bits=4, matmul_bits=4)
    ops = _ops(all4 / "model_quantized.onnx")
    assert ops["MatMulNBits"] > 0 and ops["MatMul"] == 0 and ops["MatMulInteger"] == 0
    # the report counts the model's values, not the packed bytes, scales and zero points
    params = [onnx_param_count(d / name) for d, name in ((cls_onnx, "model.onnx"),
              (emb4, "model_quantized.onnx"), (all4, "model_quantized.onnx"))]  # fmt: skip
    assert params[0] == params[1] == params[2], params
    assert ops["QAttention"] == 2  # fused QKV weights stay int8
    assert np.abs(_run(all4 / "model_quantized.onnx", feeds) - ref).max() < 0.1 * scale

    tok = AutoTokenizer.from_pretrained(emb4)
    model = ORTModelForSequenceClassification.from_pretrained(
        emb4, file_name="model_quantized.onnx"
    )
    assert len(pipeline("text-classification", model=model, tokenizer=tok)(["a good film"])) == 1

    # the accuracy-budget search: 4-bit tables first, then 8-bit ones before anything in float
    auto = quantize(
        cls_onnx, tiny_cls_data, method="auto", embedding_bits=4, exhaustive=True,
        out=tmp_path / "auto",
    )  # fmt: skip
    trials = json.loads((auto / "quantize_trials.json").read_text())["trials"]
    bits = {t["name"]: t["settings"]["embedding_bits"] for t in trials if "static" not in t["name"]}
    assert list(bits)[:2] == ["dynamic-per-channel", "dynamic-per-channel-int8-embedding"]
    assert bits.pop("dynamic-per-channel-int8-embedding") == 8 and set(bits.values()) == {4}
    assert all("agreement" in t for t in trials)


def test_excluded_embedding_stays_float(cls_onnx, tmp_path):
    from pocketsize.quantize import quantize

    before = _ops(cls_onnx / "model.onnx")["Gather"]
    out = quantize(
        cls_onnx,
        out=tmp_path / "kept",
        embedding_bits=4,
        exclude_nodes=["EmbedLayerNormalization_0"],
    )
    ops = _ops(out / "model_quantized.onnx")
    assert (
        ops["GatherBlockQuantized"] == 0
        and ops["Gather"] == before + 3
        and ops["MatMulInteger"] > 0
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(embedding_bits=3), "embedding_bits: expected 4 or 8, got 3"),
        (dict(matmul_bits=2), "matmul_bits: expected 4 or 8, got 2"),
        (dict(embedding_bits=4, block_size=24), "block_size: must be a power of two"),
        (dict(embedding_bits=4, quantize_embeddings=False), "drop one of the two"),
        (dict(embedding_bits=4, method="static"), "embedding_bits applies to method dynamic"),
        (dict(method="4bit", embedding_bits=8, matmul_bits=8), "use method='dynamic'"),
    ],
)
def test_bad_4bit_settings(cls_onnx, tiny_cls_data, tmp_path, kw, message):
    from pocketsize.quantize import quantize

    with pytest.raises(PocketsizeError, match=message) as e:
        quantize(cls_onnx, tiny_cls_data, out=tmp_path / "o", **kw)
    assert "\n" not in str(e.value) and not (tmp_path / "o").exists()


def test_cli_4bit(cls_onnx, tmp_path, capsys):
    from pocketsize.cli import main

    out = tmp_path / "cli"
    argv = ["quantize", "--model", str(cls_onnx), "--out", str(out), "--embedding-bits", "4"]
    assert main(argv + ["--block-size", "64"]) == 0
    q = json.loads((out / "stage.json").read_text())["quantization"]
    assert (q["embedding_bits"], q["block_size"]) == (4, 64)
    with pytest.raises(SystemExit):  # argparse: 4 and 8 are the choices
        main(argv[:3] + ["--out", str(tmp_path / "bad"), "--matmul-bits", "5"])
    assert "--matmul-bits: invalid choice: 5" in capsys.readouterr().err
    # the 4bit method: 4-bit tables and MatMuls unless told otherwise
    assert main(argv[:4] + [str(tmp_path / "m4"), "--method", "4bit"]) == 0
    q = json.loads((tmp_path / "m4" / "stage.json").read_text())["quantization"]
    assert (q["embedding_bits"], q["matmul_bits"]) == (4, 4)


def test_a_table_of_odd_width_stays_float_and_the_model_loads(tmp_path):
    """A 4-bit table is stored two values to a byte along each row, and ONNX Runtime reads a
    packed row of n bytes as 2n values. MPNet's relative position bias has one column per
    head; pruned to 3 heads, it would come back a column too wide and the model would not
    load. It stays float; the word table, 24 wide, goes to 4 bits."""
    from zoo import make_cls_dataset, make_tiny_encoder

    from pocketsize.export import export
    from pocketsize.prune import prune
    from pocketsize.quantize import quantize

    make_tiny_encoder(
        tmp_path / "src", "mpnet", pad_token_id=0, hidden_size=48, num_attention_heads=6
    )
    pruned = prune(
        tmp_path / "src", make_cls_dataset(), heads=0.5, width=0.5, out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    assert json.loads((pruned / "config.json").read_text())["num_attention_heads"] == 3
    onnx_dir = export(pruned, tmp_path / "onnx")
    emb4 = quantize(onnx_dir, out=tmp_path / "emb4", embedding_bits=4, block_size=16)
    import onnx

    graph = onnx.load(str(emb4 / "model_quantized.onnx")).graph
    tables = {i.name: list(i.dims) for i in graph.initializer}
    four = [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
    assert four and all(tables[n.input[0]][-1] % 2 == 0 for n in four)
    bias = [n for n in graph.node if n.op_type == "Gather" and tables.get(n.input[0]) == [32, 3]]
    assert len(bias) == 1, "the position bias stays a float Gather"
    vocab = json.loads((onnx_dir / "config.json").read_text())["vocab_size"]
    feeds = _random_feeds(vocab, seed=2)
    feeds.pop("token_type_ids")
    ref = _run(onnx_dir / "model.onnx", feeds)
    got = _run(emb4 / "model_quantized.onnx", feeds)
    # (a tiny random model with large weights: 4 bits in a 24-wide table move it by about a
    # quarter of its largest logit, the int8 MatMuls alone by a tenth)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 0.35 * max(1.0, np.abs(ref).max())
