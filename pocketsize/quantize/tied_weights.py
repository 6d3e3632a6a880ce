"""Untie a tied output layer for the quantizers.

A decoder whose LM head shares the input embedding table (SmolLM2, Llama-3.2, GPT-2, T5) is
exported with the table read twice:
    embeddings = Gather(table, input_ids)
    logits     = MatMul(hidden, Transpose(table))
The quantizers take a MatMul's weight only when it is an initializer, so the head stays float:
the 4-bit path keeps the float table in the file for it (113 MB of SmolLM2-135M's 183 MB 4-bit
file), the int8 path dequantizes its int8 table for it at every call. `fold_transposed_weights`
stores the transposed table as the MatMul's own initializer, so each of the two reads is
quantized as its op allows (a second copy, but of int8 or 4-bit values: two 4-bit copies of
SmolLM2's table weigh 36 MB).
"""

from __future__ import annotations


def transposed_weight_matmuls(model) -> dict[str, list]:
    """{Transpose output: [MatMul nodes reading it as their weight]} for every Transpose of a
    2-D float initializer (default or (1, 0) permutation) that only MatMul weights read."""
    from onnx import TensorProto

    tables = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, k))
    found = {}
    for node in model.graph.node:
        table = tables.get(node.input[0]) if node.op_type == "Transpose" else None
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [1, 0])
        if table is None or len(table.dims) != 2 or table.data_type != TensorProto.FLOAT:
            continue
        users = readers.get(node.output[0], [])
        if perm == [1, 0] and users and all(u.op_type == "MatMul" and k == 1 for u, k in users):
            found[node.output[0]] = [u for u, _ in users]
    return found


def fold_transposed_weights(model, keep=()) -> list[str]:
    """Replace each Transpose found by `transposed_weight_matmuls` with an initializer holding
    the transposed table (in place); returns the names of the MatMuls now holding a constant
    weight. A table no node reads any more is dropped. A Transpose read by a MatMul named in
    `keep` (kept in float: a second float copy would only grow the file) stays."""
    from onnx import numpy_helper

    found = {
        name: users
        for name, users in transposed_weight_matmuls(model).items()
        if not {u.name for u in users} & set(keep)
    }
    if not found:
        return []
    graph = model.graph
    tables = {i.name: i for i in graph.initializer}
    folded = [n for n in graph.node if n.op_type == "Transpose" and n.output[0] in found]
    for node in folded:
        table = numpy_helper.to_array(tables[node.input[0]])
        graph.initializer.append(numpy_helper.from_array(table.T.copy(), node.output[0]))
        graph.node.remove(node)
    still_read = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for name in {n.input[0] for n in folded} - still_read:
        graph.initializer.remove(tables[name])
    return [m.name for users in found.values() for m in users]
