"""Weights already on a block grid (a GGUF file's) keep it in MatMulNBits: quantize/source_grid.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _quantize_helpers import prefill_logits
from onnx import TensorProto, helper, numpy_helper
from zoo import make_tiny_gguf

import pocketsize as ps
from pocketsize.formats.onnx_dir import model_file
from pocketsize.quantize.four_bit import quantize_4bit
from pocketsize.quantize.source_grid import find_grid
from pocketsize.runtime.cost import onnx_param_count

K, N, BLOCK = 96, 40, 32


def _on_grid(kind: str, seed: int = 0) -> np.ndarray:
    """A K x N weight as llama.cpp's `kind` stores it, blocks of 32 along K."""
    rng = np.random.default_rng(seed)
    blocks = (K // BLOCK, 1, N)
    if kind == "Q4_1":  # m + d*q, q = 0..15, the minimum a fraction of a step off zero
        q = rng.integers(0, 16, (K // BLOCK, BLOCK, N))
        q[:, 0], q[:, 1] = 0, 15
        w = rng.uniform(-0.4, -0.05, blocks) + rng.uniform(0.01, 0.05, blocks) * q
    else:  # Q8_0: d*q, q = -127..127
        q = rng.integers(-127, 128, (K // BLOCK, BLOCK, N))
        q[:, 0] = 127
        w = rng.uniform(0.001, 0.01, blocks) * q
    return w.reshape(K, N).astype(np.float32)


def _matmuls(weights: dict[str, np.ndarray], reader: str | None = None) -> onnx.ModelProto:
    """y_NAME = x @ NAME for each weight, all reading x; `reader` also reads its weight through
    a MatMul left out of the quantization (a shared table)."""
    nodes = [helper.make_node("MatMul", ["x", w], [f"y_{w}"], name=w) for w in weights]
    if reader:
        nodes.append(helper.make_node("MatMul", ["x", reader], ["y_other"], name="other"))
    outputs = [
        helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, [2, 5, N]) for n in nodes
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, K])], outputs,
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _param_count_of(model: onnx.ModelProto) -> int:
    """The report's parameter count (residuals and scales are not parameters)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, str(Path(tmp) / "m.onnx"))
        return onnx_param_count(Path(tmp) / "m.onnx")


def _run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x})))


@pytest.mark.parametrize("kind, bits", [("Q4_1", 4), ("Q8_0", 8), ("Q4_1", 8)])
def test_a_weight_on_a_block_grid_keeps_it_exactly_where_rounding_loses(kind, bits):
    x = np.random.default_rng(1).normal(size=(2, 5, K)).astype(np.float32)
    weights = {"a": _on_grid(kind, 0), "b": _on_grid(kind, 1)}
    kept = quantize_4bit(_matmuls(weights), ["a", "b"], BLOCK, accuracy_level=0, bits=bits)
    rounded = quantize_4bit(
        _matmuls(weights), ["a", "b"], BLOCK, accuracy_level=0, bits=bits, keep_grid=False
    )
    onnx.checker.check_model(kept)  # MatMulNBits' domain is declared
    ops = [n.op_type for n in kept.graph.node]
    assert ops.count("MatMulNBits") == 2
    assert not {"a", "b"} & {i.name for i in kept.graph.initializer}  # the float weights are gone
    assert _param_count_of(kept) == _param_count_of(rounded) == 2 * K * N
    exact, near = _run(kept, x), _run(rounded, x)
    for w in weights:
        want = x @ weights[w]
        scale = np.abs(want).max()
        assert np.abs(exact[f"y_{w}"] - want).max() < 1e-5 * scale
        assert np.abs(near[f"y_{w}"] - want).max() > 1e-3 * scale  # the loss the grid avoids
    # Q4_1's minimum is no whole number of steps from zero: one block-sum MatMul for both weights
    # (they read the same x) and a residual MatMul each; Q8_0 needs no residual
    assert ops.count("MatMul") == (3 if kind == "Q4_1" else 0)


def test_a_float_weight_is_rounded_and_a_weight_read_elsewhere_stays():
    rng = np.random.default_rng(2)
    float_weight = rng.normal(0, 0.05, (K, N)).astype(np.float32)
    assert find_grid(float_weight, 4, BLOCK) is None
    assert find_grid(_on_grid("Q4_1")[:, :7], 4, 64) is None  # K=96 is not whole blocks of 64
    model = quantize_4bit(
        _matmuls({"a": _on_grid("Q4_1"), "f": float_weight}, reader="a"), ["a", "f"], BLOCK
    )
    names = {n.name: n.op_type for n in model.graph.node}
    assert names["other"] == "MatMul" and "a" in {i.name for i in model.graph.initializer}
    assert names["f_Q4"] == "MatMulNBits" and "f_grid_codes" not in str(model.graph.initializer)


def test_a_gguf_decoder_quantized_to_4_bits_stays_nearer_the_float_export(tmp_path, cache_in_tmp):
    gguf_file = make_tiny_gguf(tmp_path / "tiny.Q4_1.gguf", matmul_type="Q4_1")
    onnx_dir = ps.export(gguf_file, tmp_path / "onnx", task="causal-lm")
    ids = np.random.default_rng(3).integers(0, 256, (1, 12))
    float_logits = prefill_logits(model_file(onnx_dir), ids)
    errors = {}
    for keep in (True, False):
        out = ps.quantize(
            onnx_dir, out=tmp_path / f"q{keep}", method="4bit", embedding_bits=8, keep_grid=keep,
            mobile=keep,  # the grid's graph converts to .ort (checked against the .onnx inside)
        )  # fmt: skip
        record = json.loads((out / "stage.json").read_text())["quantization"]
        assert record["keep_grid"] is keep
        # 2 layers x 7 MatMuls and the head (8-bit by default), all on the file's Q4_1 grid
        assert record.get("kept_grid_matmuls") == ({"4": 14, "8": 1} if keep else None)
        errors[keep] = np.abs(prefill_logits(model_file(out, False), ids) - float_logits).mean()
    ort = prefill_logits(tmp_path / "qTrue" / "model_quantized.ort", ids)
    assert (
        np.abs(ort - prefill_logits(tmp_path / "qTrue" / "model_quantized.onnx", ids)).max() < 1e-4
    )
    # every MatMul (the tied head too: it reads the Q4_1 table) keeps its grid; what is left is
    # MatMulNBits' int8 activations (accuracy_level 4) and the int8 table
    assert errors[True] < errors[False] / 3, errors
