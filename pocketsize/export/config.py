"""`export`'s options: one typed config from which the keywords of `export`, the flags of
`pocketsize export` and the recipe's `export:` keys are made (pocketsize/options.py). What
describes a plain torch module's graph (example inputs, input and output names, dynamic axes)
stays a keyword of `export`: it is Python objects, not an option a recipe or a flag sets."""

from __future__ import annotations

from dataclasses import dataclass

from pocketsize.options import Check, Config, at_least, option

# torch.onnx.export's TorchScript exporter writes opsets 7 to 20; below 11 the transformer
# graphs (dynamic slicing, Range) cannot be expressed.
OPSETS = Check(lambda v: 11 <= v <= 20, "an ONNX opset from 11 to 20")


EXPORTER = Check(
    lambda v: v == "auto" or v in _registered(), "auto or a registered exporter (optimum, torch)"
)


def _registered() -> dict:
    from pocketsize.export.exporters import EXPORTERS

    return EXPORTERS


@dataclass(frozen=True)
class ExportConfig(Config):
    """How a model becomes an ONNX directory."""

    verb = "export"

    exporter: str = option(
        "auto",
        "auto (optimum where it knows the architecture, else torch.onnx), optimum or torch",
        EXPORTER,
        metavar="{auto,optimum,torch}",
    )
    optimize: bool = option(True, "ONNX Runtime transformer fusions where the model type is known")
    mobile: bool = option(False, "also write the ONNX Runtime mobile format (.ort)")
    transformers_js: bool = option(
        False,
        "also lay the model out as transformers.js loads it (onnx/model.onnx), for Node and "
        "the browser",
    )
    opset: int | None = option(
        None, "ONNX opset (default: optimum's choice, 17 for torch.onnx)", OPSETS
    )
    atol: float = option(1e-4, "parity check: largest absolute difference to PyTorch", at_least(0))
    rtol: float = option(1e-4, "parity check: largest relative difference to PyTorch", at_least(0))
