"""Dynamic int8 quantization of an ONNX model (ONNX Runtime), with a target-CPU preset."""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.quantize.four_bit import (
    BITS,
    check_block_size,
    constant_matmuls,
    output_matmuls,
    quantize_4bit,
    table_gathers,
    unfuse_embeddings,
)
from pocketsize.quantize.quiet import quiet_logger
from pocketsize.quantize.tied_weights import fold_transposed_weights

# Weight type and reduce_range follow from the CPU, as optimum's AutoQuantizationConfig does:
# u8s8 integer kernels on x86 without VNNI (vpmaddubsw) can saturate with full-range signed int8
# weights, so AVX-512 without VNNI uses 7-bit weights (reduce_range) and AVX2 uses unsigned
# weights (optimum's avx2 preset); VNNI and ARM64 (sdot) take full-range signed weights.
TARGETS = {
    "avx512_vnni": {"weight_type": "QInt8", "reduce_range": False},
    "avx512": {"weight_type": "QInt8", "reduce_range": True},
    "avx2": {"weight_type": "QUInt8", "reduce_range": False},
    "arm64": {"weight_type": "QInt8", "reduce_range": False},
}
WEIGHT_TYPES = ("QInt8", "QUInt8")
# Ops quantized by default. Embeddings (Gather / fused EmbedLayerNormalization) hold a third of a
# small BERT's weights, so they are in unless quantize_embeddings=False.
DEFAULT_OPS = ["MatMul", "Attention"]
EMBEDDING_OPS = ["Gather", "EmbedLayerNormalization"]


def detect_target() -> str:
    """The target preset for this machine's CPU."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "avx2"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def known_ops(static: bool = False) -> set[str]:
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry

    return set(QDQRegistry if static else IntegerOpsRegistry)


@dataclasses.dataclass
class DynamicSettings:
    target: str = "auto"
    weight_type: str | None = None
    reduce_range: bool | None = None
    per_channel: bool = True
    quantize_embeddings: bool = True
    op_types: list[str] | None = None
    exclude_op_types: list[str] = dataclasses.field(default_factory=list)
    exclude_nodes: list[str] = dataclasses.field(default_factory=list)
    # 4 = block-quantized (four_bit.py): embedding tables as GatherBlockQuantized, MatMul weights
    # as MatMulNBits; 8 = int8. Attention's fused QKV weights stay int8 either way.
    embedding_bits: int = 8
    matmul_bits: int = 8
    block_size: int = 32
    # the output layer's MatMulNBits bits (matmul_bits=4): None is 8, as llama.cpp's quant mixes
    # keep the output tensor above the rest (SmolLM2 4-bit: perplexity +14.6% against +25.3%)
    head_bits: int | None = None
    keep_grid: bool = True  # MatMulNBits weights already on a block grid keep it (source_grid.py)

    def resolved(self) -> DynamicSettings:
        """Fill target-dependent defaults and validate names (before any long work starts)."""
        target = detect_target() if self.target == "auto" else self.target
        if target not in TARGETS:
            raise PocketsizeError(
                f"unknown target CPU {self.target!r}; use auto or one of {', '.join(TARGETS)}"
            )
        weight_type = self.weight_type or TARGETS[target]["weight_type"]
        if weight_type not in WEIGHT_TYPES:
            raise PocketsizeError(f"unknown weight type {weight_type!r}; use QInt8 or QUInt8")
        reduce_range = (
            TARGETS[target]["reduce_range"] if self.reduce_range is None else self.reduce_range
        )
        ops = list(
            self.op_types or DEFAULT_OPS + (EMBEDDING_OPS if self.quantize_embeddings else [])
        )
        check_op_names(ops + list(self.exclude_op_types), static=False)
        for what, bits in (
            ("embedding_bits", self.embedding_bits),
            ("matmul_bits", self.matmul_bits),
        ):
            if bits not in BITS:
                raise PocketsizeError(f"{what}={bits} is not supported; use 8 (int8) or 4")
        if self.embedding_bits == 4 and not self.quantize_embeddings:
            raise PocketsizeError(
                "embedding_bits=4 asks for quantized embeddings, but quantize_embeddings=False "
                "keeps them in float; drop one of the two"
            )
        check_block_size(self.block_size)
        ops = [o for o in ops if o not in set(self.exclude_op_types)]
        head_bits = self.head_bits
        if head_bits is None and self.matmul_bits == 4:
            head_bits = 8
        return dataclasses.replace(
            self,
            head_bits=head_bits,
            target=target,
            weight_type=weight_type,
            reduce_range=reduce_range,
            op_types=ops,
            exclude_op_types=list(self.exclude_op_types),
            exclude_nodes=list(self.exclude_nodes),
        )

    def to_dict(self) -> dict:
        return {"method": "dynamic", **dataclasses.asdict(self)}


def check_op_names(ops, static: bool) -> None:
    unknown = sorted(set(ops) - known_ops(static))
    if unknown:
        raise PocketsizeError(
            f"unknown operator name(s) {unknown} for {'static' if static else 'dynamic'} "
            f"quantization; known: {', '.join(sorted(known_ops(static)))}"
        )


def check_node_names(onnx_path: str | Path, nodes) -> None:
    import onnx

    if not nodes:
        return
    graph_nodes = {n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    unknown = [n for n in nodes if n not in graph_nodes]
    if unknown:
        sample = ", ".join(sorted(graph_nodes)[:8])
        raise PocketsizeError(
            f"node(s) {unknown} are not in the model graph; node names look like: {sample}, ..."
        )


def quantize_dynamic_file(
    src: str | Path, dst: str | Path, settings: DynamicSettings, nodes_to_quantize=None
) -> DynamicSettings:
    """Quantize `src` into `dst`; returns the resolved settings that were applied."""
    import tempfile

    s = settings.resolved()
    check_node_names(src, s.exclude_nodes)
    if s.embedding_bits == 4 or s.matmul_bits == 4:
        _quantize_with_4bit(src, dst, s, nodes_to_quantize)  # unties the head in memory
        return s
    with tempfile.TemporaryDirectory(prefix="pocketsize-untied-") as tmp:
        _quantize_int8(_untied(src, s, Path(tmp)), dst, s, s.op_types, nodes_to_quantize)
    return s


def _unties_head(s: DynamicSettings) -> bool:
    """A tied LM head gets a table of its own (tied_weights.py) where both the embedding
    Gather and the MatMuls are quantized: otherwise the head stays float (the 4-bit path also
    keeps a float copy of the table for it)."""
    return "MatMul" in s.op_types and "Gather" in s.op_types


def _untied(src, s: DynamicSettings, tmp: Path) -> Path:
    """`src`, or a copy in `tmp` whose tied LM head reads a table of its own."""
    import onnx

    if not _unties_head(s):
        return Path(src)
    model = onnx.load(str(src))
    if not fold_transposed_weights(model, keep=s.exclude_nodes):
        return Path(src)
    out = tmp / "untied.onnx"
    big = model.ByteSize() > 1_800_000_000  # protobuf's 2 GB limit: weights beside the graph
    onnx.save(model, str(out), save_as_external_data=big, location="untied.onnx.data")
    return out


def _quantize_int8(src, dst, s: DynamicSettings, op_types, nodes_to_quantize) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_logger():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=op_types,
            per_channel=s.per_channel,
            reduce_range=s.reduce_range,
            weight_type=QuantType[s.weight_type],
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
            nodes_to_exclude=s.exclude_nodes or None,
            # Needed after graph optimisation, or quantization fails with "Unable to find data
            # type for weight_name" on fused nodes (STACK.md).
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _quantize_with_4bit(src, dst, s: DynamicSettings, nodes_to_quantize) -> None:
    """int8 for what stays 8-bit, then 4 bits for the chosen tables and MatMuls (four_bit.py).

    Node names in nodes_to_quantize / exclude_nodes refer to the source graph: a fused
    EmbedLayerNormalization's name stands for the tables it holds.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization.onnx_model import ONNXModel

    chosen = None if nodes_to_quantize is None else set(nodes_to_quantize)
    excluded = set(s.exclude_nodes)

    def wanted(name: str) -> bool:
        return (chosen is None or name in chosen) and name not in excluded

    model = onnx.load(str(src))
    # as ORT's int8 quantizer does first: a Gemm with constant weights becomes MatMul + Add
    # (named <gemm>_MatMul), which both quantizers can take
    ONNXModel(model).replace_gemm_with_matmul()
    if _unties_head(s):
        fold_transposed_weights(model, keep=s.exclude_nodes)
    four: list[str] = []
    int8_ops = list(s.op_types)
    if s.embedding_bits == 4 and set(EMBEDDING_OPS) & set(s.op_types):
        fused = unfuse_embeddings(model)
        tables = set(table_gathers(model))
        for name, gathers in fused.items():
            four += [g for g in gathers if g in tables and wanted(name)]
        four += [g for g in tables if wanted(g) and not any(g in v for v in fused.values())]
        int8_ops = [o for o in int8_ops if o not in EMBEDDING_OPS]
    if s.matmul_bits == 4 and "MatMul" in s.op_types:
        four += [
            m
            for m in constant_matmuls(model)
            if wanted(m) and m.removesuffix("_MatMul") not in excluded
        ]
        int8_ops = [o for o in int8_ops if o != "MatMul"]
    heads = [m for m in output_matmuls(model) if m in four] if s.head_bits == 8 else []
    four = [n for n in four if n not in heads]
    present = {x.name for x in model.graph.node}
    int8_nodes = None
    if nodes_to_quantize is not None:
        int8_nodes = [n for n in nodes_to_quantize if n in present and n not in four]
    with tempfile.TemporaryDirectory(prefix="pocketsize-4bit-") as tmp:
        unfused, mid = Path(tmp) / "unfused.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(unfused))
        if int8_ops and int8_nodes != []:
            _quantize_int8(unfused, mid, s, int8_ops, int8_nodes)
        else:
            mid = unfused
        quantized = quantize_4bit(onnx.load(str(mid)), four, s.block_size, keep_grid=s.keep_grid)
        quantized = quantize_4bit(quantized, heads, s.block_size, bits=8, keep_grid=s.keep_grid)
        onnx.save(quantized, str(dst))
