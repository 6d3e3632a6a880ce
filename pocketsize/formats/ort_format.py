"""The ONNX Runtime mobile format (.ort): conversion, checked to load and to match the .onnx.

Also the two checks any pair of graphs is held to: `random_inputs` (a feed built from a
session's input metadata) and `compare_outputs` (max absolute difference within tolerance).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.formats.onnx_dir import model_file, ort_session, run_session
from pocketsize.formats.records import update_record


def to_mobile(model: str | Path, atol: float = 1e-4, rtol: float = 1e-4) -> Path:
    """Write `<model file>.ort` (and its required-operators config) next to the ONNX model.

    `model` is an ONNX file or directory; the directory's manifest records the .ort file and its
    check. Returns the .ort path. Raises when the .ort does not load or its outputs differ.
    """
    onnx_path = model_file(model, allow_ort=False)
    target = onnx_path.with_suffix(".ort")
    with tempfile.TemporaryDirectory(prefix="pocketsize-ort-") as tmp:
        tmp = Path(tmp)
        # The converter processes every .onnx in a directory: give it just this one file.
        src = tmp / "in" / onnx_path.name
        src.parent.mkdir()
        shutil.copy2(onnx_path, src)
        # The tool is a script (no stable Python API), so run it as ONNX Runtime documents.
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "onnxruntime.tools.convert_onnx_models_to_ort",
                str(src),
                "--output_dir",
                str(tmp / "out"),
                "--optimization_style",
                "Fixed",
            ],
            capture_output=True,
            text=True,
        )
        produced = tmp / "out" / target.name
        if proc.returncode != 0 or not produced.is_file():
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PocketsizeError(f"conversion of {onnx_path.name} to .ort failed: {last[0]}")
        ops_config = next((tmp / "out").glob("*.required_operators.config"), None)
        figures = _check_ort_matches(produced, onnx_path, atol, rtol)
        shutil.move(str(produced), target)
        if ops_config is not None:
            shutil.move(str(ops_config), target.parent / f"{target.stem}.required_operators.config")
    if Path(model).is_dir():
        update_record(model, mobile={"file": target.name, "max_abs_diff": figures})
    return target


PAST_INPUTS = "past_key_values"  # optimum's name for a decoder's cache inputs


def random_inputs(session, vocab_size: int = 100, shapes=((1, 8), (2, 16))) -> list[dict]:
    """Inputs built from a session's input metadata, for models without a tokenizer. A decoder
    with past key values gets a first call: an empty past, positions 0 .. seq - 1."""
    rng = np.random.default_rng(0)
    cases = []
    for batch, seq in shapes:
        feed = {}
        for inp in session.get_inputs():
            past = inp.name.startswith(PAST_INPUTS)
            dims = [
                d if isinstance(d, int) else (batch if i == 0 else 0 if past else seq)
                for i, d in enumerate(inp.shape)
            ]
            if "int" in inp.type:
                if "mask" in inp.name:
                    feed[inp.name] = np.ones(dims, dtype=np.int64)
                elif inp.name == "position_ids":
                    feed[inp.name] = np.broadcast_to(np.arange(seq), dims).astype(np.int64)
                elif "type" in inp.name:
                    feed[inp.name] = np.zeros(dims, dtype=np.int64)
                else:
                    feed[inp.name] = rng.integers(0, vocab_size, dims, dtype=np.int64)
            else:
                feed[inp.name] = rng.standard_normal(dims).astype(np.float32)
        cases.append(feed)
    return cases


def compare_outputs(reference: dict, candidate: dict, atol: float, rtol: float) -> dict:
    """Max absolute difference per output and whether it is within atol + rtol * max|reference|."""
    figures = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise PocketsizeError(f"output {name!r} is missing from the ONNX model; re-export it")
        ref = np.asarray(ref, dtype=np.float64)
        cand = np.asarray(candidate[name], dtype=np.float64)
        if ref.shape != cand.shape:
            raise PocketsizeError(
                f"output {name!r} has shape {cand.shape} in ONNX but {ref.shape} in the reference; "
                "check the exported dynamic axes"
            )
        diff = float(np.max(np.abs(ref - cand))) if ref.size else 0.0
        tol = atol + rtol * float(np.max(np.abs(ref))) if ref.size else atol
        figures[name] = {"max_abs_diff": diff, "tolerance": tol, "ok": diff <= tol}
    return figures


def _check_ort_matches(ort_path: Path, onnx_path: Path, atol: float, rtol: float) -> float:
    try:
        ort_sess = ort_session(ort_path)
    except Exception as e:
        raise PocketsizeError(
            f"the converted {ort_path.name} does not load ({e}); keep the .onnx"
        ) from None
    onnx_sess = ort_session(onnx_path)
    worst = 0.0
    for feed in random_inputs(onnx_sess, vocab_size=_vocab_size(onnx_path)):
        figures = compare_outputs(
            run_session(onnx_sess, feed), run_session(ort_sess, feed), atol, rtol
        )
        for name, fig in figures.items():
            worst = max(worst, fig["max_abs_diff"])
            if not fig["ok"]:
                raise PocketsizeError(
                    f"{ort_path.name} output {name!r} differs from the .onnx by "
                    f"{fig['max_abs_diff']:.3g}; keep the .onnx model"
                )
    return worst


def _vocab_size(onnx_path: Path) -> int:
    config = onnx_path.parent / "config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("vocab_size", 2))
    # Unknown vocabulary (a plain module): ids 0 and 1 are valid for any embedding table.
    return 2
