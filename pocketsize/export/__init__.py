"""Export: ONNX (optimum or torch.onnx), parity check, CPU graph optimisation, ORT mobile format."""

from pocketsize.export.mobile import to_mobile
from pocketsize.export.onnx_export import export
from pocketsize.export.onnx_files import (
    MANIFEST,
    check_onnx_file,
    copy_model_side_files,
    find_onnx_file,
    has_tokenizer,
    read_manifest,
    write_manifest,
)
from pocketsize.export.optimize import optimize
from pocketsize.export.parity import check_parity, ort_session

__all__ = [
    "ort_session",
    "MANIFEST",
    "check_onnx_file",
    "check_parity",
    "copy_model_side_files",
    "export",
    "find_onnx_file",
    "has_tokenizer",
    "optimize",
    "read_manifest",
    "to_mobile",
    "write_manifest",
]


# `import pocketsize.export` would shadow the lazily exported function `ps.export`: make the
# package itself callable (shared helper, as the other stages do).
from pocketsize._callable import make_package_callable  # noqa: E402

make_package_callable(__name__, export)
