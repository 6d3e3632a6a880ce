"""Add a sentence embedder's pooling to an ONNX graph that stops at the token embeddings.

optimum's exporter and sentence-transformers' ONNX backend write graphs whose output is
`last_hidden_state`; the pooling and normalization then run in Python after each call. To run
such a graph as pocketsize runs its own (one session, `sentence_embedding` out), the same
arithmetic is appended as ONNX nodes: a masked mean (or the first token, or a masked max) and
an L2 normalization. A handful of elementwise nodes beside the encoder's hundreds, so the
graph's cost is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketsize.errors import PocketsizeError

TOKENS = "last_hidden_state"
MASK = "attention_mask"
OUTPUT = "sentence_embedding"


def has_pooling(onnx_path) -> bool:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(o.name == OUTPUT for o in graph.output)


def append_pooling(onnx_path, mode: str = "mean", normalize: bool = True) -> None:
    """Rewrite `onnx_path` with a `sentence_embedding` output after its `last_hidden_state`."""
    import onnx
    from onnx import TensorProto, helper

    path = Path(onnx_path)
    model = onnx.load(str(path))
    graph = model.graph
    names = {o.name for o in graph.output}
    if TOKENS not in names or MASK not in {i.name for i in graph.input}:
        raise PocketsizeError(
            f"{path.name} has no {TOKENS} output or no {MASK} input, so its token embeddings "
            "cannot be pooled; export the encoder for feature extraction"
        )
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes = _Nodes(opset)
    pooled = {"mean": nodes.mean, "cls": nodes.first, "max": nodes.max}[mode]()
    if normalize:
        pooled = nodes.l2_normalize(pooled)
    nodes.add("Identity", [pooled], [OUTPUT])
    graph.node.extend(nodes.nodes)
    graph.initializer.extend(nodes.constants)
    width = _width(graph)
    graph.output.insert(
        0, helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch_size", width])
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _width(graph):
    tokens = next(o for o in graph.output if o.name == TOKENS)
    dims = tokens.type.tensor_type.shape.dim
    return dims[-1].dim_value if dims and dims[-1].dim_value else "hidden_size"


class _Nodes:
    """The pooling nodes, named under `pooling/`, for the graph's opset (axes became inputs
    in opset 13 for ReduceSum and Unsqueeze, in 18 for the other reductions)."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list = []
        self.constants: list = []

    def add(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        from onnx import helper

        name = f"pooling/{op}_{len(self.nodes)}"
        outputs = outputs or [name + ":0"]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def constant(self, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = f"pooling/const_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def reduce(self, op: str, x: str, axis: int, keepdims: int) -> str:
        axes_as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if axes_as_input:
            return self.add(op, [x, self.constant([axis], np.int64)], keepdims=keepdims)
        return self.add(op, [x], axes=[axis], keepdims=keepdims)

    def mask(self) -> str:
        from onnx import TensorProto

        mask = self.add("Cast", [MASK], to=TensorProto.FLOAT)
        if self.opset >= 13:
            return self.add("Unsqueeze", [mask, self.constant([-1], np.int64)])
        return self.add("Unsqueeze", [mask], axes=[-1])

    def mean(self) -> str:
        mask = self.mask()
        summed = self.reduce("ReduceSum", self.add("Mul", [TOKENS, mask]), 1, 0)
        count = self.reduce("ReduceSum", mask, 1, 0)
        return self.add("Div", [summed, self.add("Max", [count, self.constant(1e-9)])])

    def first(self) -> str:
        return self.add("Gather", [TOKENS, self.constant(0, np.int64)], axis=1)

    def max(self) -> str:
        padded = self.add("Equal", [self.mask(), self.constant(0.0)])
        hidden = self.add("Where", [padded, self.constant(-np.inf), TOKENS])
        return self.reduce("ReduceMax", hidden, 1, 0)

    def l2_normalize(self, x: str) -> str:
        norm = self.reduce("ReduceL2", x, -1, 1)
        return self.add("Div", [x, self.add("Max", [norm, self.constant(1e-12)])])
