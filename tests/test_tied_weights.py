"""A tied LM head (the output layer reading the embedding table through a Transpose, as
SmolLM2's and GPT-2's exports do) gets a table of its own before quantization: the folded
graph computes the same logits, and quantized at 4 or 8 bits no float table stays behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _quantize_helpers import prefill_logits as _logits
from zoo import make_tiny_decoder

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tied_onnx(tmp_path_factory):
    from pocketsize.export import export

    root = tmp_path_factory.mktemp("tied")
    make_tiny_decoder(root / "model", tie_word_embeddings=True)
    return export(root / "model", root / "onnx", task="causal-lm")


def _float_tables(model, rows: int) -> list[str]:
    """Float initializers shaped like the table (a 4-bit block's scales have one column per
    block: fewer than 16 here)."""
    from onnx import TensorProto

    return [
        i.name
        for i in model.graph.initializer
        if i.data_type == TensorProto.FLOAT
        and len(i.dims) == 2
        and rows in i.dims
        and min(i.dims) >= 16
    ]


def _ids(vocab: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, vocab, size=(1, 12), dtype=np.int64)


def test_the_folded_head_computes_the_same_logits(tied_onnx, tmp_path):
    import onnx

    from pocketsize.quantize.tied_weights import fold_transposed_weights

    model = onnx.load(str(tied_onnx / "model.onnx"))
    vocab = _logits(tied_onnx / "model.onnx", _ids(8)).shape[-1]
    assert len(_float_tables(model, vocab)) == 1  # one table, read by Gather and Transpose
    assert fold_transposed_weights(model) == ["/lm_head/MatMul"]
    assert not [n for n in model.graph.node if n.op_type == "Transpose" and "embed" in n.input[0]]
    assert len(_float_tables(model, vocab)) == 2  # the Gather's table and the head's own
    onnx.save(model, str(tmp_path / "folded.onnx"))
    ids = _ids(vocab)
    np.testing.assert_array_equal(
        _logits(tmp_path / "folded.onnx", ids), _logits(tied_onnx / "model.onnx", ids)
    )
    assert fold_transposed_weights(model) == []  # nothing left to fold


def test_a_head_kept_in_float_stays_tied(tied_onnx, tmp_path):
    """Excluding the head from quantization keeps it reading the one float table."""
    import onnx

    from pocketsize.quantize import quantize

    vocab = _logits(tied_onnx / "model.onnx", _ids(8)).shape[-1]
    out = quantize(tied_onnx, method="dynamic", matmul_bits=4, exclude_nodes=["/lm_head/MatMul"],
                   out=tmp_path / "q", task="causal-lm")  # fmt: skip
    model = onnx.load(str(out / "model_quantized.onnx"))
    tables = [i for i in model.graph.initializer if vocab in i.dims and min(i.dims) >= 16]
    assert len(tables) == 1  # one table (int8, dequantized for the head), not a second copy
    assert [n.op_type for n in model.graph.node if n.name == "/lm_head/MatMul"] == ["MatMul"]


@pytest.mark.parametrize("bits", [8, 4])
def test_a_tied_head_is_quantized_and_no_float_table_stays(tied_onnx, tmp_path, bits):
    import onnx

    from pocketsize.quantize import quantize

    reference = _logits(tied_onnx / "model.onnx", _ids(8))
    vocab = reference.shape[-1]
    out = quantize(tied_onnx, method="dynamic", matmul_bits=bits, embedding_bits=bits,
                   out=tmp_path / "q", task="causal-lm")  # fmt: skip
    model = onnx.load(str(out / "model_quantized.onnx"))
    assert _float_tables(model, vocab) == []
    head = [n for n in model.graph.node if n.name.startswith("/lm_head/")]
    assert head and "MatMul" not in {n.op_type for n in head}  # the head is quantized
    ids = _ids(vocab)
    got, want = _logits(out / "model_quantized.onnx", ids), _logits(tied_onnx / "model.onnx", ids)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9


def test_head_bits_8_keeps_the_output_layer_at_8_bits(tied_onnx, tmp_path):
    """head_bits=8 (the default with 4-bit MatMuls): the LM head is an 8-bit MatMulNBits, every
    other MatMul 4-bit, and its logits follow the float model's more closely than the
    all-4-bit file's (head_bits=4) do."""
    import onnx

    from pocketsize.quantize import quantize

    ids = _ids(_logits(tied_onnx / "model.onnx", _ids(8)).shape[-1])
    want = _logits(tied_onnx / "model.onnx", ids)
    errors = {}
    for head_bits in (None, 4):
        out = quantize(tied_onnx, method="dynamic", matmul_bits=4, embedding_bits=4,
                       head_bits=head_bits, out=tmp_path / f"q{head_bits}",
                       task="causal-lm")  # fmt: skip
        model = onnx.load(str(out / "model_quantized.onnx"))
        bits = {
            n.name: next(a.i for a in n.attribute if a.name == "bits")
            for n in model.graph.node
            if n.op_type == "MatMulNBits"
        }
        head = [b for name, b in bits.items() if name.startswith("/lm_head/")]
        assert head == [head_bits or 8]
        recorded = json.loads((out / "stage.json").read_text())["quantization"]["head_bits"]
        assert recorded == (head_bits or 8)
        assert {b for name, b in bits.items() if not name.startswith("/lm_head/")} == {4}
        errors[head_bits] = np.abs(_logits(out / "model_quantized.onnx", ids) - want).mean()
    assert errors[None] < errors[4]


def test_head_bits_needs_4_bit_matmuls(tied_onnx, tmp_path):
    from pocketsize.errors import PocketsizeError
    from pocketsize.quantize import quantize

    with pytest.raises(PocketsizeError, match="head_bits=8 applies to 4-bit MatMuls, but "
                       "matmul_bits=8; set matmul_bits=4 or drop head_bits"):  # fmt: skip
        quantize(tied_onnx, method="dynamic", head_bits=8, out=tmp_path / "q", task="causal-lm")
    with pytest.raises(PocketsizeError, match="head_bits: must be 4 or 8, not 6"):
        quantize(tied_onnx, method="dynamic", matmul_bits=4, head_bits=6, out=tmp_path / "q6",
                 task="causal-lm")  # fmt: skip
    assert not (tmp_path / "q").exists() and not (tmp_path / "q6").exists()
