"""Export: ONNX (optimum or torch.onnx), parity check, CPU graph optimisation, ORT mobile format.

The ONNX-directory helpers (the stage record, which file is the model, the .ort conversion) live
in pocketsize.formats; the names below stay importable from here.
"""

from pocketsize.export.onnx_export import export
from pocketsize.export.optimize import optimize
from pocketsize.export.parity import check_parity
from pocketsize.formats.onnx_dir import check_onnx_file, ort_session
from pocketsize.formats.ort_format import to_mobile
from pocketsize.formats.records import RECORD, read_record, update_record
from pocketsize.formats.side_files import copy_model_side_files, has_tokenizer


def find_onnx_file(model):
    """The .onnx model file of an ONNX file or directory (pocketsize.formats.onnx_dir.model_file)."""
    from pocketsize.formats.onnx_dir import model_file

    return model_file(model, allow_ort=False)


# The names from before the one stage record (pocketsize.json was the ONNX manifest); they go in
# the release after 0.2.
MANIFEST, read_manifest, write_manifest = RECORD, read_record, update_record

__all__ = [
    "ort_session",
    "MANIFEST",
    "RECORD",
    "check_onnx_file",
    "check_parity",
    "copy_model_side_files",
    "export",
    "find_onnx_file",
    "has_tokenizer",
    "optimize",
    "read_manifest",
    "read_record",
    "to_mobile",
    "update_record",
    "write_manifest",
]


# `import pocketsize.export` would shadow the lazily exported function `ps.export`: make the
# package itself callable (shared helper, as the other stages do).
from pocketsize._callable import make_package_callable  # noqa: E402

make_package_callable(__name__, export)
