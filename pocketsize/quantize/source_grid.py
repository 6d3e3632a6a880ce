"""MatMul weights that already lie on a block grid keep it exactly in `MatMulNBits`.

A model dequantized from a quantized file (transformers' GGUF loader) is 4-bit or 8-bit
already: llama.cpp's Q4_1 stores each block of 32 values as m + d*q (q = 0..15, m the block's
minimum, d = (max - min) / 15), Q8_0 and Q4_0 as d*q. Rounding such weights to a new grid
moves every value by up to half a step, whatever the search (on SmolLM2's Q4_1 file,
round-to-nearest raised perplexity by 25%).

MatMulNBits computes (q - z) * scale with an integer zero point z per block and output
column. With the file's step as the scale, the codes are exact, but a minimum that is not a
whole number of steps from zero is not: z is the nearest integer, and what it leaves,
r = m + z*d, is added back exactly:

    x @ W = MatMulNBits(x) + (x @ S) @ R

S (K x K/block, 0/1) sums each block of x; R (K/block x N) holds the residuals. The two small
MatMuls are 1/block of the weight's work; S is shared by every weight of the same K and block,
and x @ S by every weight reading the same x (a layer's q/k/v, gate/up). A grid whose minimum
is a whole number of steps (symmetric Q8_0, Q4_0) needs no residual at all.

A weight is kept only when every value lies on the grid found (within GRID_TOLERANCE of a
step): that is a lossless rewrite, so a float weight that happens to pass loses nothing either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# name endings the report's parameter count skips as bookkeeping (runtime/cost.py)
from pocketsize.formats.onnx_dir import GRID_RESIDUALS, GRID_SUMS

CONTRIB = "com.microsoft"
METADATA_KEY = "pocketsize.kept_grid_matmuls"  # {"4": MatMuls, "8": MatMuls}
GRID_TOLERANCE = 1e-3  # in steps: float32 dequantization leaves ~1e-6
RESIDUAL_FLOOR = 1e-4  # in steps: float32 values 127 steps from zero are ~1e-5 off the grid


@dataclass
class Grid:
    """One weight (K x N) on a block grid: codes[b, i, n] at step[b, n] above low[b, n]."""

    codes: np.ndarray  # (K/block, block, N) integers in 0 .. 2**bits - 1
    step: np.ndarray  # (K/block, N)
    low: np.ndarray  # (K/block, N)

    def zero_points(self, bits: int) -> np.ndarray:
        return np.clip(np.rint(-self.low / self.step), 0, 2**bits - 1)

    def residuals(self, zero_points: np.ndarray) -> np.ndarray:
        """What the integer zero points leave of each block's minimum, (K/block, N)."""
        return self.low + zero_points * self.step


def find_grid(weight: np.ndarray, bits: int, block: int) -> Grid | None:
    """The block grid `weight` (K x N, blocks along K) lies on with 2**bits levels, or None.

    The steps tried are those llama.cpp's formats use: (max - min) / 15 with the minimum at
    code 0 (Q4_1, Q8_1-like), max|w| / 127 (Q8_0) and max|w| / 8 (Q4_0), scaled to `bits`."""
    k, n = weight.shape
    if k % block or weight.dtype != np.float32:
        return None
    w = weight.astype(np.float64).reshape(k // block, block, n)
    low, high = w.min(axis=1), w.max(axis=1)
    widest = np.maximum(np.abs(low), np.abs(high))
    levels = 2**bits - 1
    for step in ((high - low) / levels, widest / (2 ** (bits - 1) - 1), widest / 2 ** (bits - 1)):
        step = np.where(step > 0, step, 1.0)  # a constant block: any step, every code 0
        codes = (w - low[:, None, :]) / step[:, None, :]
        rounded = np.rint(codes)
        if rounded.max() <= levels and np.abs(codes - rounded).max() <= GRID_TOLERANCE:
            return Grid(rounded.astype(np.uint8), step, low)
    return None


def keep_grids(model, names: list[str], bits: int, block: int, accuracy_level: int) -> list[str]:
    """Rewrite each MatMul in `names` whose weight lies on a grid as MatMulNBits with that grid
    (plus the residual MatMuls where the grid needs them); returns the names rewritten."""
    from onnx import numpy_helper

    tables = {i.name: i for i in model.graph.initializer}
    wanted = set(names)
    kept, nodes, replaced, sums = [], [], set(), {}
    for node in model.graph.node:
        weight = tables.get(node.input[1]) if node.op_type == "MatMul" else None
        grid = None
        if node.name in wanted and weight is not None and len(weight.dims) == 2:
            grid = find_grid(numpy_helper.to_array(weight), bits, block)
        if grid is None:
            nodes.append(node)
            continue
        nodes += _on_grid(model, node, grid, bits, block, accuracy_level, sums)
        kept.append(node.name)
        replaced.add(weight.name)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unread(model, replaced)
    if kept:
        _count_in_metadata(model, bits, len(kept))
        if not any(o.domain == CONTRIB for o in model.opset_import):  # MatMulNBits' domain
            model.opset_import.add(domain=CONTRIB, version=1)
    return kept


def kept_grid_counts(path) -> dict[str, int]:
    """{bits: MatMuls} that kept their source grid in the ONNX file at `path` (for stage.json)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    entry = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), "{}")
    return json.loads(entry)


def _count_in_metadata(model, bits: int, count: int) -> None:
    """The file says which of its weights are the source's grid (a later reader cannot tell
    them from rounded ones)."""
    entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None)
    if entry is None:
        entry = model.metadata_props.add(key=METADATA_KEY, value="{}")
    counts = json.loads(entry.value)
    counts[str(bits)] = counts.get(str(bits), 0) + count
    entry.value = json.dumps(counts, sort_keys=True)


def _on_grid(model, node, grid: Grid, bits, block, accuracy_level, sums: dict) -> list:
    from onnx import helper, numpy_helper

    kb, _, n = grid.codes.shape
    p = node.name
    codes = grid.codes.transpose(2, 0, 1)  # (N, K/block, block): MatMulNBits' layout
    zero_points = grid.zero_points(bits)
    zero = zero_points.T.astype(np.uint8)  # (N, K/block)
    if bits == 4:
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
        zero = _pack_nibbles(zero)
    inits = {
        f"{p}_grid_codes": codes,
        f"{p}_grid_scales": grid.step.T.astype(np.float32).reshape(-1),
        f"{p}_grid_zero_points": zero.reshape(-1),
    }
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    residual = grid.residuals(zero_points)
    exact = bool((np.abs(residual) <= RESIDUAL_FLOOR * grid.step).all())
    product = node.output[0] if exact else f"{p}_grid_product"
    attrs = dict(K=kb * block, N=n, bits=bits, block_size=block)
    if accuracy_level:
        attrs["accuracy_level"] = accuracy_level
    made = [
        helper.make_node(
            "MatMulNBits", [node.input[0], *inits], [product], name=f"{p}_Q{bits}",
            domain=CONTRIB, **attrs,
        )
    ]  # fmt: skip
    if exact:
        return made
    block_sums = sums.get((node.input[0], block))
    if block_sums is None:
        block_sums = sums[(node.input[0], block)] = f"{p}_grid_block_sums"
        made.append(
            helper.make_node(
                "MatMul", [node.input[0], _summing_matrix(model, kb, block)], [block_sums],
                name=block_sums,
            )
        )  # fmt: skip
    model.graph.initializer.append(
        numpy_helper.from_array(residual.astype(np.float32), f"{p}{GRID_RESIDUALS}")
    )
    made += [
        helper.make_node(
            "MatMul", [block_sums, f"{p}{GRID_RESIDUALS}"], [f"{p}_grid_residual"],
            name=f"{p}_grid_residual",
        ),
        helper.make_node(
            "Add", [product, f"{p}_grid_residual"], [node.output[0]], name=f"{p}_grid_add"
        ),
    ]  # fmt: skip
    return made


def _summing_matrix(model, blocks: int, block: int) -> str:
    """The K x K/block 0/1 matrix that sums each block of x (one per shape in the graph)."""
    from onnx import numpy_helper

    name = f"{blocks}x{block}{GRID_SUMS}"
    if not any(i.name == name for i in model.graph.initializer):
        ones = np.kron(np.eye(blocks, dtype=np.float32), np.ones((block, 1), np.float32))
        model.graph.initializer.append(numpy_helper.from_array(ones, name))
    return name


def _pack_nibbles(values: np.ndarray) -> np.ndarray:
    """(N, blocks) 4-bit values as (N, ceil(blocks / 2)) bytes, low nibble first."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros_like(values[:, :1])], axis=-1)
    return values[:, 0::2] | (values[:, 1::2] << 4)


def _drop_unread(model, names: set[str]) -> None:
    """Remove the initializers in `names` that no node reads any more (subgraphs included:
    a merged decoder's branches read the outer graph's weights)."""
    read = set()
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            read.update(node.input)
            graphs += [a.g for a in node.attribute if a.HasField("g")]
            for a in node.attribute:
                graphs.extend(a.graphs)
    read |= {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name not in names - read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
