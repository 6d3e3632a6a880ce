"""SmoothQuant-style rescaling of a MatMul's input channels before dynamic int8 quantization.

Why: dynamic int8 quantizes each MatMul input with one scale per tensor, so a few channels with
large activations (a BERT FFN's GELU output is the usual case) crush the resolution of all the
others. Xiao et al. 2023 ("SmoothQuant") move that range into the weights, which are quantized
per channel: X @ W == (X / s) @ (diag(s) W) with s_k = max|X_k|^alpha / max|W_k|^(1 - alpha).
Here the division is a Mul node inserted on that MatMul's input edge only (other consumers of X
are untouched) and the weights are rescaled in place, so the model keeps its size: unlike
keeping the node in float, which costs 4x its weight bytes. ONNX Runtime's own SmoothQuant
lives in its static (QDQ) path via Neural Compressor; nothing does it for dynamic quantization.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def smoothable_nodes(onnx_path: str | Path, nodes: Iterable[str]) -> list[str]:
    """The nodes among `nodes` that are MatMuls with their own constant 2-D weight, in order."""
    import onnx

    model = onnx.load(str(onnx_path))
    weights = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    wanted = set(nodes)
    # a weight shared with another node (tied embeddings) cannot be rescaled for one of them
    found = {
        n.name
        for n in model.graph.node
        if n.name in wanted
        and n.op_type == "MatMul"
        and n.input[1] in weights
        and len(weights[n.input[1]].dims) == 2
        and uses[n.input[1]] == 1
    }
    return [n for n in nodes if n in found]


def input_absmax(onnx_path: str | Path, nodes: list[str], batches: Iterable[dict]) -> dict:
    """Per-channel max |x| of each node's first input over `batches` (feeds of the float model)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    by_name = {n.name: n for n in model.graph.node}
    tensors = [by_name[n].input[0] for n in nodes]
    have = {o.name for o in model.graph.output}
    for t in dict.fromkeys(tensors):
        if t not in have:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
            )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    absmax: dict[str, np.ndarray] = {}
    for feed in batches:
        values = session.run(tensors, {k: v for k, v in feed.items() if k in names})
        for t, v in zip(tensors, values):
            m = np.abs(v).reshape(-1, v.shape[-1]).max(axis=0)
            absmax[t] = m if t not in absmax else np.maximum(absmax[t], m)
    if not absmax:
        raise ValueError("no calibration batches to measure activation ranges on")
    return {n: absmax[by_name[n].input[0]] for n in nodes}


def smooth_file(
    src: str | Path, dst: str | Path, absmax: dict[str, np.ndarray], alpha: float = 0.5
) -> dict[str, float]:
    """Write `src` with every node in `absmax` smoothed; returns each node's largest scale."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    largest = {}
    position = {n.name: i for i, n in enumerate(graph.node)}
    for name, act in absmax.items():
        node = graph.node[position[name]]
        w_init = weights[node.input[1]]
        w = numpy_helper.to_array(w_init).astype(np.float32)
        w_max = np.abs(w).max(axis=1)
        scale = np.power(np.maximum(act, 1e-5), alpha) / np.power(
            np.maximum(w_max, 1e-5), 1 - alpha
        )
        scale = np.clip(scale, 1e-2, 1e2).astype(np.float32)
        w_init.CopyFrom(numpy_helper.from_array(w * scale[:, None], w_init.name))
        inv_name, out_name = f"{name}_smooth_inv_scale", f"{node.input[0]}_smoothed_for_{name}"
        graph.initializer.append(numpy_helper.from_array(1.0 / scale, inv_name))
        mul = onnx.helper.make_node(
            "Mul", [node.input[0], inv_name], [out_name], name=f"{name}_smooth"
        )
        node.input[0] = out_name
        graph.node.insert(position[name], mul)
        position = {n.name: i for i, n in enumerate(graph.node)}
        largest[name] = float(scale.max())
    onnx.save(model, str(dst))
    return largest
