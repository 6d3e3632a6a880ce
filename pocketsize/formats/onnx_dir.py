"""An ONNX model directory: optimum-style (graphs + config.json + tokenizer files) plus the
stage record (`stage.json`, formats/records.py) whose `file` names the model file, so that a
directory holding several graphs (or a .ort next to them) is never ambiguous.

Every stage finds "the model" of a directory with `model_file`, in one order: the record's
choice, else the most processed graph (quantized > optimized > plain, then an encoder-decoder's
encoder), else the only .onnx, else the .ort of a directory without .onnx files.
"""

from __future__ import annotations

from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats.records import RECORD, read_record

QUANTIZED_FILE = "model_quantized.onnx"
# initializer names that hold bookkeeping, not parameters: quantization scales and zero points,
# and a source-grid weight's block-summing matrix and residuals (quantize/source_grid.py)
GRID_SUMS, GRID_RESIDUALS = "_grid_sums", "_grid_residuals"
BOOKKEEPING_SUFFIXES = ("_scale", "_zero_point", GRID_SUMS, GRID_RESIDUALS)
PREFERENCE = (
    QUANTIZED_FILE,
    "model_optimized.onnx",
    "model.onnx",
    "encoder_model_quantized.onnx",
    "encoder_model.onnx",
)


def model_file(model: str | Path, allow_ort: bool = True) -> Path:
    """The model graph of an ONNX file or directory (see the module docstring for the order),
    checked to parse: a truncated or corrupted .onnx is refused here, with the fix.

    allow_ort=False: only an .onnx file will do (to quantize, optimise or convert it).
    """
    found = _find_model_file(Path(model), allow_ort)
    if found.suffix != ".ort" or not allow_ort:
        check_onnx_file(found)
    return found


def _find_model_file(model: Path, allow_ort: bool) -> Path:
    if model.is_file():
        return model
    if not model.is_dir():
        raise PocketsizeError(f"model {model} does not exist; pass an ONNX file or directory")
    named = read_record(model).get("file")
    if named and (model / named).is_file():
        return model / named
    onnx_files = sorted(model.glob("*.onnx"))
    by_name = {p.name: p for p in onnx_files}
    for preferred in PREFERENCE:
        if preferred in by_name:
            return by_name[preferred]
    if len(onnx_files) == 1:
        return onnx_files[0]
    if onnx_files:
        raise PocketsizeError(
            f"{model} holds several ONNX files ({', '.join(by_name)}); name one in {RECORD} "
            "or pass the file itself, e.g. DIR/model.onnx"
        )
    ort_files = sorted(model.glob("*.ort")) if allow_ort else []
    if ort_files:
        plain = [p for p in ort_files if ".with_runtime_opt" not in p.name]
        return (plain or ort_files)[0]
    raise PocketsizeError(
        f"{model} holds no .onnx{' or .ort' if allow_ort else ''} file; export the model "
        "first (pocketsize export)"
    )


def graph_files(model_file_path: Path) -> dict[str, str]:
    """The graphs that make up the model whose main file is given, as optimum's from_pretrained
    file-name arguments: one graph, or an encoder-decoder's encoder + decoder graphs."""
    name = model_file_path.name
    if not name.startswith("encoder_model"):
        return {"file_name": name}
    suffix = name[len("encoder_model") :]  # ".onnx" or "_quantized.onnx"
    files = {"encoder_file_name": name, "decoder_file_name": f"decoder_model{suffix}"}
    with_past = model_file_path.parent / f"decoder_with_past_model{suffix}"
    if with_past.is_file():
        files["decoder_with_past_file_name"] = with_past.name
    return files


def source_graphs(model_dir: Path) -> list[Path]:
    """Every float graph of an export (T5: encoder, decoder, decoder with past); optimum's merged
    decoder is an alternative to the decoder pair and is left out."""
    graphs = [p for p in sorted(Path(model_dir).glob("*.onnx")) if "merged" not in p.name]
    return [p for p in graphs if not p.stem.endswith("_quantized")]


def is_multi_graph(model_dir) -> bool:
    """An encoder-decoder export (several graphs that run together)."""
    path = Path(model_dir)
    return (
        path.is_dir()
        and (path / "encoder_model.onnx").is_file()
        and any(path.glob("decoder_*model*.onnx"))
    )


def check_onnx_file(path: str | Path) -> None:
    """Refuse a file that is not a loadable ONNX model (wrong format, truncated, corrupted)."""
    import onnx

    path = Path(path)
    if path.suffix != ".onnx":
        raise PocketsizeError(f"{path} is not an .onnx file; pass an ONNX model file or directory")
    try:
        # load_external_data=False: a model with external weights is still checked for structure.
        model = onnx.load(str(path), load_external_data=False)
        if not model.graph.node:
            raise ValueError("empty graph")
    except Exception as e:  # onnx raises DecodeError, ValueError, ... for a broken file
        raise PocketsizeError(
            f"{path} is not a valid ONNX model ({type(e).__name__}); re-export it "
            "(the file may be truncated or corrupted)"
        ) from None


def ort_session(path: str | Path, threads: int = 2, **options):
    """An ONNX Runtime CPU session with fixed thread counts (`options`: SessionOptions fields)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    for key, value in options.items():
        setattr(opts, key, value)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_session(session, feed: dict) -> dict:
    """Outputs by name; inputs the graph does not take are dropped from the feed."""
    names = {i.name for i in session.get_inputs()}
    outputs = session.run(None, {k: v for k, v in feed.items() if k in names})
    return {o.name: v for o, v in zip(session.get_outputs(), outputs)}
