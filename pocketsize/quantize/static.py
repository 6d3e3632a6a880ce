"""Static int8 (QDQ) with calibration on task data, in bounded memory for any calibration size.

Pitfalls avoided (STACK.md): Entropy/Percentile calibration over the whole graph fails with
"Too many bins" because the extended attention mask holds float32-min values, so by default only
MatMul nodes are calibrated and quantized (the calibrated and the quantized ops must be the same
set); quant_pre_process leaves temporary files in the working directory, so it runs in a
temporary one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.quantize.dynamic import (
    TARGETS,
    WEIGHT_TYPES,
    check_node_names,
    check_op_names,
    detect_target,
)

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
MIN_CALIBRATION_EXAMPLES = 8


@dataclasses.dataclass
class StaticSettings:
    target: str = "auto"
    calibration: str = "minmax"
    weight_type: str = "QInt8"
    activation_type: str = "QUInt8"
    reduce_range: bool | None = None
    per_channel: bool = True
    op_types: list[str] = dataclasses.field(default_factory=lambda: ["MatMul"])
    exclude_nodes: list[str] = dataclasses.field(default_factory=list)
    calibration_size: int = 256
    chunk_batches: int = 4  # batches held in memory at once during calibration
    batch_size: int = 8

    def resolved(self) -> StaticSettings:
        target = detect_target() if self.target == "auto" else self.target
        if target not in TARGETS:
            raise PocketsizeError(
                f"unknown target CPU {self.target!r}; use auto or one of {', '.join(TARGETS)}"
            )
        if self.calibration not in CALIBRATION_METHODS:
            raise PocketsizeError(
                f"unknown calibration method {self.calibration!r}; use {', '.join(CALIBRATION_METHODS)}"
            )
        for t in (self.weight_type, self.activation_type):
            if t not in WEIGHT_TYPES:
                raise PocketsizeError(f"unknown quantized type {t!r}; use QInt8 or QUInt8")
        check_op_names(self.op_types, static=True)
        reduce_range = (
            TARGETS[target]["reduce_range"] if self.reduce_range is None else self.reduce_range
        )
        return dataclasses.replace(self, target=target, reduce_range=reduce_range)

    def to_dict(self) -> dict:
        return {"method": "static", **dataclasses.asdict(self)}


class _ListReader:
    """A CalibrationDataReader over one chunk of feeds (ORT pulls them with get_next)."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def prepare(src: str | Path, workdir: Path) -> Path:
    """quant_pre_process (shape inference) in `workdir`; the unprocessed model if it fails
    (e.g. symbolic shape inference on an unusual graph) — calibration still works without it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst = workdir / "preprocessed.onnx"
    try:
        with _working_dir(workdir):
            quant_pre_process(str(src), str(dst), skip_optimization=True)
        return dst
    except Exception as e:
        log.warning("quant_pre_process failed (%s); calibrating the model as it is", e)
        return Path(src)


def calibrate(
    model: Path, feeds: Iterable[dict], settings: StaticSettings, workdir: Path
) -> tuple[Path, int]:
    """Collect activation ranges chunk by chunk; returns (ranges cache file, batches seen).

    ORT's calibrators keep every collected output in memory until compute_data(); feeding one
    chunk per collect_data() call and merging ranges (MinMax) / histograms (Entropy, Percentile)
    across calls keeps memory bounded by the chunk size, whatever the calibration-set size.
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[settings.calibration]
    calibrator = create_calibrator(
        model,
        settings.op_types,
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=method,
    )
    # The histogram collector stacks a chunk's arrays into one, so batches of different sequence
    # lengths must go one per call there.
    per_call = settings.chunk_batches if settings.calibration == "minmax" else 1
    seen, chunk = 0, []
    # The histogram calibrators print progress with print(); keep the library quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        for feed in feeds:
            chunk.append(feed)
            if len(chunk) == per_call:
                calibrator.collect_data(_ListReader(chunk))
                seen, chunk = seen + len(chunk), []
        if chunk:
            calibrator.collect_data(_ListReader(chunk))
            seen += len(chunk)
        if seen == 0:
            raise PocketsizeError(
                "the calibration set is empty; pass data with a non-empty calibration split"
            )
        cache = workdir / "calibration.json"
        save_tensors_data(calibrator.compute_data(), cache)
    return cache, seen


def quantize_with_ranges(
    model: Path, dst: str | Path, ranges: Path, settings: StaticSettings, nodes_to_quantize=None
) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[settings.calibration]
    quantize_static(
        str(model),
        str(dst),
        calibration_data_reader=None,
        calibration_cache_path=ranges,  # the ranges computed chunk by chunk above
        calibrate_method=method,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=settings.op_types,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=QuantType[settings.activation_type],
        weight_type=QuantType[settings.weight_type],
        nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
        nodes_to_exclude=settings.exclude_nodes or None,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def quantize_static_file(
    src: str | Path,
    dst: str | Path,
    make_feeds: Callable[[], Iterable[dict]],
    settings: StaticSettings,
    num_examples: int,
) -> StaticSettings:
    """Calibrate on the feeds from `make_feeds()` and write the QDQ model to `dst`."""
    s = settings.resolved()
    if num_examples < MIN_CALIBRATION_EXAMPLES:
        raise PocketsizeError(
            f"the calibration set has {num_examples} examples; static quantization needs at least "
            f"{MIN_CALIBRATION_EXAMPLES} (use a bigger split or method='dynamic')"
        )
    check_node_names(src, s.exclude_nodes)
    with tempfile.TemporaryDirectory(prefix="pocketsize-calib-") as work:
        work = Path(work)
        model = prepare(src, work)
        ranges, _ = calibrate(model, make_feeds(), s, work)
        quantize_with_ranges(model, dst, ranges, s)
    return s
