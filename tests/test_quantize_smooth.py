"""SmoothQuant rescaling: same float function, less int8 error when one input channel is huge."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pocketsize.quantize.dynamic import DynamicSettings, quantize_dynamic_file
from pocketsize.quantize.smooth import input_absmax, smooth_file, smoothable_nodes


def _matmul_model(path, tied: bool = False):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if tied:
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y2"], name="mm2"))
        outputs.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        outputs,
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _inputs():
    x = np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32)
    x[:, 3] *= 200.0  # one outlier channel, as a GELU output's
    return x


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]


def test_smoothing_keeps_the_float_function_and_cuts_int8_error(tmp_path):
    src = _matmul_model(tmp_path / "m.onnx")
    x = _inputs()
    absmax = input_absmax(src, ["mm"], [{"x": x}])
    assert absmax["mm"].shape == (16,) and absmax["mm"][3] > 100 * np.median(absmax["mm"])
    largest = smooth_file(src, tmp_path / "s.onnx", absmax)
    assert largest["mm"] > 1.0
    reference = _run(src, x)
    np.testing.assert_allclose(_run(tmp_path / "s.onnx", x), reference, rtol=1e-4, atol=1e-3)

    settings = DynamicSettings(target="avx512_vnni", per_channel=True, op_types=["MatMul"])
    quantize_dynamic_file(src, tmp_path / "q.onnx", settings)
    quantize_dynamic_file(tmp_path / "s.onnx", tmp_path / "sq.onnx", settings)
    plain_error = np.abs(_run(tmp_path / "q.onnx", x) - reference).mean()
    smooth_error = np.abs(_run(tmp_path / "sq.onnx", x) - reference).mean()
    assert smooth_error < 0.5 * plain_error
    # same number of weight bytes: smoothing does not keep anything in float
    assert abs((tmp_path / "sq.onnx").stat().st_size - (tmp_path / "q.onnx").stat().st_size) < 400


def test_only_matmuls_with_their_own_constant_weight_are_smoothable(tmp_path):
    assert smoothable_nodes(_matmul_model(tmp_path / "m.onnx"), ["mm", "absent"]) == ["mm"]
    assert smoothable_nodes(_matmul_model(tmp_path / "t.onnx", tied=True), ["mm", "mm2"]) == []


def test_auto_tries_smoothing_before_keeping_nodes_in_float():
    from pocketsize.quantize.auto import SmoothedDynamic, _trials

    ranked = ["Attention_0", "mm_b", "mm_a", "Gather_0"]
    trials = list(
        _trials(
            DynamicSettings(target="avx512_vnni"),
            lambda: ranked,
            lambda nodes: [n for n in nodes if n.startswith("mm")],
            None,
        )
    )
    names = [name for name, _ in trials]
    # per depth: smoothing the MatMuls among the top k (when there are new ones), then exclusion
    assert names[:6] == [
        "dynamic-per-channel",
        "dynamic-per-channel-exclude-top1",
        "dynamic-per-channel-smooth-top2",
        "dynamic-per-channel-exclude-top2",
        "dynamic-per-channel-smooth-top4",
        "dynamic-per-channel-reduce-range",
    ]
    smoothed = [s for _, s in trials if isinstance(s, SmoothedDynamic)]
    assert [s.nodes for s in smoothed] == [["mm_b"], ["mm_b", "mm_a"]]
    assert smoothed[0].to_dict()["smooth_nodes"] == ["mm_b"]
