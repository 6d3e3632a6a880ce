"""`quantize`'s options: one typed config per method, as torchao's `quantize_(model,
Int8WeightOnlyConfig())` picks its handler by the config's type, so an option of another
method cannot be given (`max_drop` to dynamic, 4-bit weights to static). `method=` (Python),
`--method` (CLI) and `method:` (recipe) name the config; the other keywords, flags and keys are
its fields (pocketsize/options.py). The handlers are in quantize/api.py.

    dynamic  int8 weights, activations quantized at run time (optionally 4-bit tables/MatMuls)
    4bit     dynamic with 4-bit embedding tables and MatMul weights (block-quantized)
    static   int8 weights and activations, ranges calibrated on task data
    auto     the fastest of the dynamic / static configurations within an accuracy budget
    fp16, bf16  a PyTorch model directory cast to half precision
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from pocketsize.errors import PocketsizeError
from pocketsize.options import Check, Config, above, at_least, option, share

Target = Literal["auto", "avx2", "avx512", "avx512_vnni", "arm64"]
WeightType = Literal["QInt8", "QUInt8"]
Bits = Literal[4, 8]
BLOCK = Check(lambda v: v >= 16 and not v & (v - 1), "a power of two from 16 (32 to 256 usual)")


def _label_map(value):
    from pocketsize.tasks.labels import parse_label_map

    return parse_label_map(value)


@dataclass(frozen=True)
class QuantizeConfig(Config):
    """Base of the methods that write an ONNX model; `method` names the config."""

    verb = "quantize"
    method: ClassVar[str] = ""
    reads_data: ClassVar[bool] = False  # calibration or scoring on task data
    several_graphs: ClassVar[bool] = False  # also quantizes a T5-style export's graphs

    mobile: bool = option(False, "also write the ONNX Runtime mobile format (.ort)")
    transformers_js: bool = option(
        False,
        "also lay the model out as transformers.js loads it (onnx/model_quantized.onnx, "
        "or onnx/model_q4.onnx with 4-bit weights)",
    )


@dataclass(frozen=True)
class DynamicConfig(QuantizeConfig):
    method = "dynamic"
    several_graphs = True

    target: Target = option("auto", "CPU preset (weight type, reduce_range); auto: this CPU")
    weight_type: WeightType | None = option(None, "int8 weight type (default: by target)")
    reduce_range: bool | None = option(None, "7-bit weights (default: by target)")
    per_channel: bool = option(True, "one weight scale per output channel (off: per tensor)")
    quantize_embeddings: bool = option(
        True, "quantize embedding tables (Gather)", old_flags={"--no-embeddings": False}
    )
    op_types: list[str] | None = option(
        None, "operator types quantized (default: MatMul, Attention and the embeddings)"
    )
    exclude_op_types: list[str] = option(
        [], "operator types kept in float", old_flags={"--exclude-ops": None}, metavar="OP"
    )
    exclude_nodes: list[str] = option([], "node names kept in float", metavar="NODE")
    embedding_bits: Bits = option(8, "8 (int8) or 4 (block-quantized embedding tables)")
    matmul_bits: Bits = option(8, "8 (int8) or 4 (MatMulNBits weights)")
    block_size: int = option(32, "4-bit: values per scale and zero point", BLOCK)
    head_bits: int | None = option(
        None,
        "with matmul_bits=4: the output layer's MatMul (a decoder's LM head, its most sensitive "
        "weight) as an 8-bit or 4-bit MatMulNBits (default: 8)",
        Check(lambda v: v in (4, 8), "4 or 8"),
    )
    keep_grid: bool = option(
        True,
        "MatMulNBits weights (4-bit MatMuls, the 8-bit head): a weight already on such a block "
        "grid (a model dequantized from a GGUF file) keeps that grid exactly, not rounded anew",
    )

    def check(self) -> None:
        if self.head_bits is not None and self.matmul_bits != 4:
            raise PocketsizeError(
                f"quantize: head_bits={self.head_bits} applies to 4-bit MatMuls, but "
                f"matmul_bits={self.matmul_bits}; set matmul_bits=4 or drop head_bits"
            )
        if self.embedding_bits == 4 and not self.quantize_embeddings:
            raise PocketsizeError(
                "quantize: embedding_bits=4 asks for quantized embeddings, but "
                "quantize_embeddings=False keeps them in float; drop one of the two"
            )

    def dynamic_settings(self):
        from pocketsize.quantize.dynamic import DynamicSettings

        fields = DynamicSettings.__dataclass_fields__
        return DynamicSettings(
            **{k: getattr(self, k) for k in fields if k in self.names()}
        ).resolved()


@dataclass(frozen=True)
class FourBitConfig(DynamicConfig):
    method = "4bit"

    embedding_bits: Bits = option(4, "8 (int8) or 4 (block-quantized embedding tables)")
    matmul_bits: Bits = option(4, "8 (int8) or 4 (MatMulNBits weights)")

    def check(self) -> None:
        super().check()
        if 4 not in (self.embedding_bits, self.matmul_bits):
            raise PocketsizeError(
                "quantize: method 4bit with embedding_bits=8 and matmul_bits=8 has no 4-bit "
                "weights; use method='dynamic'"
            )


@dataclass(frozen=True)
class _Calibrated(Config):
    """What reading task data takes: calibration (static, auto) and the token limit."""

    calibration: Literal["minmax", "entropy", "percentile"] = option(
        "minmax", "how activation ranges are calibrated"
    )
    calibration_size: int = option(256, "calibration examples", at_least(1))
    calibration_split: str = option("train", "the split calibrated on")
    max_length: int | None = option(
        None, "token limit per example (default: the model's)", at_least(1)
    )


@dataclass(frozen=True)
class StaticConfig(QuantizeConfig, _Calibrated):
    method = "static"
    reads_data = True

    target: Target = option("auto", "CPU preset (weight type, reduce_range); auto: this CPU")
    reduce_range: bool | None = option(None, "7-bit weights (default: by target)")
    per_channel: bool = option(True, "one weight scale per output channel (off: per tensor)")
    op_types: list[str] | None = option(None, "operator types quantized (default: MatMul)")
    exclude_nodes: list[str] = option([], "node names kept in float", metavar="NODE")

    def static_settings(self):
        from pocketsize.quantize.static import StaticSettings

        settings = StaticSettings(
            target=self.target,
            calibration=self.calibration,
            reduce_range=self.reduce_range,
            per_channel=self.per_channel,
            exclude_nodes=list(self.exclude_nodes),
            calibration_size=self.calibration_size,
        )
        if self.op_types:
            settings.op_types = list(self.op_types)
        return settings.resolved()


@dataclass(frozen=True)
class AutoConfig(DynamicConfig, _Calibrated):
    method = "auto"
    reads_data = True
    several_graphs = False

    max_drop: float = option(
        0.01, "largest allowed absolute drop of the task's metric (0.01 = one point)", share()
    )
    max_size_mb: float | None = option(
        None,
        "largest allowed model file in MB (a configuration keeping big nodes in float is out "
        "of budget)",
        above(0),
    )
    min_agreement: float | None = option(
        None,
        "least share of scored examples predicted as the float model does",
        Check(lambda v: 0 < v <= 1, "a share above 0 and at most 1, e.g. 0.99"),
    )
    eval_split: str = option("validation", "the split the candidates are scored on")
    eval_size: int | None = option(
        None, "examples of eval_split scored (default: all)", at_least(1)
    )
    exhaustive: bool = option(False, "try every configuration, not only until one fits")
    label_map: dict | None = option(
        None,
        "the model's name for each of the data's labels, e.g. 0=negative,1=positive",
        coerce=_label_map,
        metavar="DATA=MODEL,...",
    )

    def static_settings(self):
        return StaticConfig(
            target=self.target,
            calibration=self.calibration,
            reduce_range=self.reduce_range,
            per_channel=self.per_channel,
            exclude_nodes=self.exclude_nodes,
            calibration_size=self.calibration_size,
        ).static_settings()


@dataclass(frozen=True)
class CastConfig(Config):
    """A PyTorch model directory cast to half precision (no options)."""

    verb = "quantize"
    method: ClassVar[str] = "fp16"


@dataclass(frozen=True)
class Bf16Config(CastConfig):
    method = "bf16"


METHODS: dict[str, type[Config]] = {}


def register_method(config_class: type[Config]) -> type[Config]:
    """Make `method=config_class.method` known (its handler: quantize.api.register_handler)."""
    METHODS[config_class.method] = config_class
    return config_class


for _cls in (DynamicConfig, FourBitConfig, StaticConfig, AutoConfig, CastConfig, Bf16Config):
    register_method(_cls)


def method_class(method: str) -> type[Config]:
    if method not in METHODS:
        raise PocketsizeError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    return METHODS[method]


def build_config(method: str | None, config: Config | None, options: Mapping) -> Config:
    """The config of `method` (or of `config`'s type) from keyword options; an option of
    another method is named with the methods that take it."""
    if config is not None:
        if method is not None and method != type(config).method:
            raise PocketsizeError(
                f"quantize: method={method!r} and a {type(config).__name__} contradict "
                "each other; drop method="
            )
        cls = type(config)
    else:
        cls = method_class(method or "dynamic")
    options = _without_unset(cls, options)
    _refuse_other_methods(cls, options, lambda key: f"quantize option {key}")
    return cls.build(config, **options)


def from_mapping(section: Mapping, where: str, supplied: tuple[str, ...] = ()) -> Config:
    """A recipe's `quantize:` section (with its `method:` key) -> the method's config."""
    if not isinstance(section, Mapping):
        raise PocketsizeError(f"recipe key {where}: expected a mapping of options, got {section!r}")
    options = dict(section)
    method = options.pop("method", "dynamic")
    if not isinstance(method, str) or method not in METHODS:
        raise PocketsizeError(
            f"recipe key {where}.method: unknown method {method!r}; use one of {', '.join(METHODS)}"
        )
    cls = METHODS[method]
    options = _without_unset(cls, options)
    _refuse_other_methods(cls, options, lambda key: f"recipe key {where}.{key}")
    return cls.from_mapping(options, where, supplied)


def _without_unset(cls, options: Mapping) -> dict:
    """Another method's option set to None is no option: a recipe switched to another method
    with `--set quantize.method=dynamic --set quantize.max_drop=null` drops it that way."""
    return {k: v for k, v in options.items() if v is not None or k in cls.names()}


def _refuse_other_methods(cls, options: Mapping, said) -> None:
    for key in options:
        if key in cls.names():
            continue
        takers = [m for m, c in METHODS.items() if key in c.names()]
        if takers:
            raise PocketsizeError(
                f"{said(key)} applies to method {' / '.join(takers)}, not {cls.method}; "
                f"pass method={takers[0]!r} (--method {takers[0]}) or drop it"
            )
        known = sorted({n for c in METHODS.values() for n in c.names()})
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PocketsizeError(
            f"{said(key)} is unknown{hint}; options of {cls.method}: "
            f"{', '.join(cls.names()) or 'none'}"
        )


__all__ = [
    "AutoConfig",
    "Bf16Config",
    "CastConfig",
    "DynamicConfig",
    "FourBitConfig",
    "METHODS",
    "QuantizeConfig",
    "StaticConfig",
    "build_config",
    "from_mapping",
    "method_class",
    "register_method",
]
