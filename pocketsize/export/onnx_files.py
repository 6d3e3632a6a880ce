"""Finding, describing and copying the files of an ONNX model directory.

An ONNX directory is optimum-style (one model .onnx + config.json + tokenizer files) plus a small
`pocketsize.json` manifest that names the model file, so that a directory holding several .onnx
files (or a .ort next to them) is never ambiguous.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pocketsize.assets.models import TOKENIZER_FILES, has_tokenizer  # noqa: F401 (re-exported)
from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import write_json

MANIFEST = "pocketsize.json"


def read_manifest(model_dir: str | Path) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def write_manifest(model_dir: str | Path, **fields) -> dict:
    """Merge `fields` into the directory's manifest (read-modify-write) and return it."""
    manifest = read_manifest(model_dir)
    manifest.update(fields)
    write_json(Path(model_dir) / MANIFEST, manifest)
    return manifest


def find_onnx_file(model: str | Path) -> Path:
    """The model file of an ONNX directory (the manifest's choice, else model.onnx, else the only one)."""
    model = Path(model)
    if model.is_file():
        check_onnx_file(model)
        return model
    if not model.is_dir():
        raise PocketsizeError(f"model {model} does not exist; pass an ONNX file or directory")
    named = read_manifest(model).get("file")
    if named and (model / named).is_file():
        return model / named
    candidates = sorted(model.glob("*.onnx"))
    if (model / "model.onnx").is_file():
        return model / "model.onnx"
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise PocketsizeError(
            f"{model} holds no .onnx file; export the model first (pocketsize export)"
        )
    raise PocketsizeError(
        f"{model} holds several .onnx files ({', '.join(c.name for c in candidates)}); "
        f"name one in {MANIFEST} or pass the file itself"
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


def copy_model_side_files(src: str | Path, dst: str | Path) -> None:
    """Copy config.json, generation config and tokenizer files (what ORTModel / pipeline need)."""
    src, dst = Path(src), Path(dst)
    for name in (
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        *TOKENIZER_FILES,
    ):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
