"""Dynamic int8 quantization of an ONNX model (ONNX Runtime), with a target-CPU preset."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
from pathlib import Path

from pocketsize.errors import PocketsizeError

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
        ops = [o for o in ops if o not in set(self.exclude_op_types)]
        return dataclasses.replace(
            self,
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
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    s = settings.resolved()
    check_node_names(src, s.exclude_nodes)
    with quiet_root_logger():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=s.op_types,
            per_channel=s.per_channel,
            reduce_range=s.reduce_range,
            weight_type=QuantType[s.weight_type],
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
            nodes_to_exclude=s.exclude_nodes or None,
            # Needed after graph optimisation, or quantization fails with "Unable to find data
            # type for weight_name" on fused nodes (STACK.md).
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return s


@contextlib.contextmanager
def quiet_root_logger():
    """onnxruntime.quantization warns on the root logger once per call ("consider running
    pre-processing"); the auto search makes dozens of calls, which buried the progress output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
