"""4-bit block-quantized weights in ONNX Runtime: embedding tables and MatMul weights.

ONNX Runtime stores a 4-bit table as `GatherBlockQuantized` and a 4-bit MatMul as `MatMulNBits`
(both written by its `MatMulNBitsQuantizer`): every block of `block_size` values along the
hidden axis keeps a float scale and a 4-bit zero point. The quantizer only rewrites a plain
`Gather` whose table is an initializer, so a graph whose embeddings were fused into
`EmbedLayerNormalization` (ONNX Runtime's BERT fusion) is first unfused by `unfuse_embeddings`.

The graph shape chosen for an unfused embedding keeps the node count low, because at mobile
sizes per-node overhead costs as much as arithmetic (STACK.md):
    word      = Gather(word_table, input_ids)              -> GatherBlockQuantized
    positions = Gather(position_table, Slice(0..max_pos-1, 0, seq_len))  -> GatherBlockQuantized
    segment   = Gather(segment_table, token_type_ids)      (2 rows: left in float)
    output    = SkipLayerNormalization(word + segment, positions, gamma, beta)
    mask_index = ReduceSum(mask, axis 1)                    (what the fused op computes)
The [UNK] clamp in front of input_ids is untouched: GatherBlockQuantized reads the clamped ids.
"""

from __future__ import annotations

import contextlib
import logging

from pocketsize.errors import PocketsizeError
from pocketsize.quantize.quiet import quiet_logger
from pocketsize.quantize.source_grid import keep_grids

logger = logging.getLogger(__name__)

FUSED_EMBEDDING = "EmbedLayerNormalization"
MIN_TABLE_ROWS = 16  # smaller tables (token types: 2 rows) save nothing worth dequantising
BITS = (4, 8)


def check_block_size(block_size: int) -> None:
    if block_size < 16 or block_size & (block_size - 1):
        raise PocketsizeError(
            f"block_size={block_size} is not a power of two >= 16; use 32 (finer, larger) to "
            "256 (coarser, smaller)"
        )


def unfuse_embeddings(model) -> dict[str, list[str]]:
    """Rewrite every EmbedLayerNormalization of `model` (an onnx ModelProto) in place into plain
    Gathers + SkipLayerNormalization. Returns {fused node name: [names of its table Gathers]}."""
    graph = model.graph
    tables = {i.name: i for i in graph.initializer}
    made: dict[str, list[str]] = {}
    for node in [n for n in graph.node if n.op_type == FUSED_EMBEDDING]:
        p = node.name or f"embedding{len(made)}"
        new = _unfused(graph, node, p, tables)
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for k, n in enumerate(new):
            graph.node.insert(at + k, n)
        made[node.name] = [f"{p}_word_gather", f"{p}_position_gather"]
    return made


def _unfused(graph, node, p: str, tables: dict) -> list:
    """The plain nodes (names prefixed `p`) that compute what one fused embedding node did."""
    from onnx import helper

    ids, segment, word, position, segment_table, gamma, beta, mask, position_ids = (
        list(node.input) + [""] * 9
    )[:9]
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
    new, total = _word_and_segment(p, ids, word, segment, segment_table)
    if not position_ids:
        new += _position_ids(graph, p, ids, tables[position].dims[0])
        position_ids = f"{p}_position_ids"
    new += [
        helper.make_node(
            "Gather", [position, position_ids], [f"{p}_position"], name=f"{p}_position_gather"
        ),
        helper.make_node(
            "SkipLayerNormalization",
            [total, f"{p}_position", gamma, beta],
            [node.output[0]],
            name=f"{p}_layer_norm",
            domain="com.microsoft",
            epsilon=eps,
        ),
    ]
    return new + _side_outputs(graph, node, p, mask, total)


def _word_and_segment(p: str, ids: str, word: str, segment: str, segment_table: str):
    """(nodes, output name): the word embeddings, plus the segment embeddings where there are."""
    from onnx import helper

    new = [helper.make_node("Gather", [word, ids], [f"{p}_word"], name=f"{p}_word_gather")]
    if not segment:
        return new, f"{p}_word"
    new += [
        helper.make_node(
            "Gather", [segment_table, segment], [f"{p}_segment"], name=f"{p}_segment_gather"
        ),
        helper.make_node(
            "Add", [f"{p}_word", f"{p}_segment"], [f"{p}_word_segment"], name=f"{p}_add_segment"
        ),
    ]
    return new, f"{p}_word_segment"


def _position_ids(graph, p: str, ids: str, max_positions: int) -> list:
    """ids 0..seq_len-1 as a slice of a constant: two nodes instead of Shape/Gather/Range."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph.initializer.extend(
        [
            numpy_helper.from_array(np.arange(max_positions, dtype=np.int32), f"{p}_all_positions"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), f"{p}_zero"),
        ]
    )
    return [
        helper.make_node("Shape", [ids], [f"{p}_seq_len"], name=f"{p}_seq_len", start=1, end=2),
        helper.make_node(
            "Slice",
            [f"{p}_all_positions", f"{p}_zero", f"{p}_seq_len"],
            [f"{p}_position_ids"],
            name=f"{p}_position_ids",
        ),
    ]


def _side_outputs(graph, node, p: str, mask: str, total: str) -> list:
    """The fused node's mask index and embedding sum, where later nodes read them."""
    import numpy as np
    from onnx import helper, numpy_helper

    new = []
    mask_index = node.output[1] if len(node.output) > 1 else ""
    if mask_index and _consumers(graph, mask_index):
        if not mask:
            raise PocketsizeError(
                f"{p} hands a mask index to attention without a mask input; export the "
                "model again without graph optimisation (--no-optimize)"
            )
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), f"{p}_axis1"))
        new.append(
            helper.make_node(
                "ReduceSum", [mask, f"{p}_axis1"], [mask_index], name=f"{p}_mask_index", keepdims=0
            )
        )
    if len(node.output) > 2 and node.output[2] and _consumers(graph, node.output[2]):
        new.append(
            helper.make_node("Add", [total, f"{p}_position"], [node.output[2]], name=f"{p}_sum")
        )
    return new


def table_gathers(model, min_rows: int = MIN_TABLE_ROWS) -> list[str]:
    """Names of the Gathers that read a 2-D float table of at least `min_rows` rows and an
    even number of columns. A 4-bit table is stored two values to a byte along each row, and
    ONNX Runtime reads a packed row of n bytes as 2n values: an odd row (MPNet's position
    bias once 3 heads are left, one column per head) would come back a column too wide."""
    from onnx import TensorProto

    tables = {i.name: i for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        table = tables.get(node.input[0]) if node.op_type == "Gather" else None
        if (
            table is not None
            and node.name
            and len(table.dims) == 2
            and table.dims[0] >= min_rows
            and table.dims[1] % 2 == 0
            and table.data_type == TensorProto.FLOAT
        ):
            names.append(node.name)
    return names


def constant_matmuls(model) -> list[str]:
    """Names of the MatMuls whose second input is a 2-D float initializer (a weight)."""
    tables = {i.name: i for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and n.name
        and len(getattr(tables.get(n.input[1]), "dims", ())) == 2
    ]


def output_matmuls(model) -> list[str]:
    """Names of the MatMuls that make a graph output, directly or through one Add (a bias): the
    output layer (a decoder's LM head, a classifier's last projection)."""
    outputs = {o.name for o in model.graph.output}
    through_add = {
        i
        for n in model.graph.node
        if n.op_type == "Add" and n.output[0] in outputs
        for i in n.input
    }
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and n.name and ({n.output[0]} & (outputs | through_add))
    ]


def quantize_4bit(
    model, nodes: list[str], block_size: int, accuracy_level: int = 4, bits=4, keep_grid=True
):
    """Rewrite `nodes` (Gathers and MatMuls with constant weights) of `model` to 4 bits (or to
    8-bit MatMulNBits: bits=8); returns the new ModelProto. accuracy_level 4 lets MatMulNBits
    compute in int8 (the fast CPU path). keep_grid: a MatMul weight already on a block grid
    (dequantized from a GGUF file) keeps it exactly (source_grid.py); the rest is rounded to
    the nearest of a new grid by ONNX Runtime's quantizer."""
    check_block_size(block_size)
    if keep_grid and nodes:
        matmuls = {n.name for n in model.graph.node if n.op_type == "MatMul"}
        kept = keep_grids(
            model, [n for n in nodes if n in matmuls], bits, block_size, accuracy_level
        )
        if kept:
            logger.info(
                "%d of %d MatMuls kept the %d-bit grid their weights already lie on",
                len(kept), len(matmuls & set(nodes)), bits,
            )  # fmt: skip
        nodes = [n for n in nodes if n not in set(kept)]
    if not nodes:
        return model
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    op_types = tuple(sorted({n.op_type for n in model.graph.node if n.name in set(nodes)}))
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=bits,
        block_size=block_size,
        accuracy_level=accuracy_level,
        # the quantizer takes every node of op_types unless excluded (nodes_to_include adds to
        # op_types, it does not narrow them)
        nodes_to_exclude=[n.name for n in model.graph.node if n.name not in set(nodes)],
        op_types_to_quantize=op_types,
    )
    opsets = {o.domain: o.version for o in model.opset_import}
    ir_version = model.ir_version
    # ERROR: the 4-bit quantizer also warns that it raises the opset for int4, undone below
    with quiet_logger("onnxruntime.quantization.matmul_nbits_quantizer"), np_quiet():
        quantizer.process()
    model = quantizer.model.model
    if _pack_tables_as_uint8(model):
        # int4 tensors were why the quantizer raised the opset to 21 and the IR to 10; with
        # none left the model keeps the versions it came with
        for o in model.opset_import:
            o.version = opsets.get(o.domain, o.version)
        model.ir_version = ir_version
    return model


def _pack_tables_as_uint8(model) -> bool:
    """Store each GatherBlockQuantized table as uint8 holding two 4-bit values (bits=4).

    ONNX Runtime's quantizer writes the tables as uint4 tensors, which its mobile (.ort) format
    cannot hold ("Unsupported tensor data type"); the op also takes uint8 data packed along the
    last axis, low nibble first, which every ONNX Runtime build loads. Returns False when a
    table could not be repacked (the uint4 form is kept).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    tables = {i.name: i for i in model.graph.initializer}
    int4 = (TensorProto.UINT4, TensorProto.INT4)
    packed_all = True
    for node in model.graph.node:
        if node.op_type != "GatherBlockQuantized":
            continue
        names = list(node.input[:1]) + (list(node.input[3:4]) if len(node.input) > 3 else [])
        # an odd data row cannot be packed: its last byte would read as one value too many
        # (zero points, one per block, are read as ceil(blocks / 2) bytes and may be padded)
        odd = names[0] in tables and tables[names[0]].dims[-1] % 2
        if odd or any(tables[n].data_type not in int4 for n in names if n in tables):
            packed_all = False
            continue
        for name in names:
            values = numpy_helper.to_array(tables[name]).astype(np.int16)
            if tables[name].data_type == TensorProto.INT4:
                values = values + 8  # uint8 storage: zero point 8 when none is given
            if values.shape[-1] % 2:
                values = np.concatenate([values, np.zeros_like(values[..., :1])], axis=-1)
            packed = (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)
            tables[name].CopyFrom(numpy_helper.from_array(packed, name))
        attrs = [a for a in node.attribute if a.name != "bits"]
        del node.attribute[:]
        node.attribute.extend(attrs + [helper.make_attribute("bits", 4)])
    return packed_all


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input] + [o for o in graph.output if o.name == name]


@contextlib.contextmanager
def np_quiet():
    """All-zero blocks (the [PAD] row) divide by a zero scale inside the quantizer, which then
    maps them to the zero point: right, but numpy warns per block."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        yield
