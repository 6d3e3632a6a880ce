"""Evaluation: every variant measured against a reference, in one report.

    report = evaluate({"teacher": teacher_dir, "int8": int8_dir}, data["test"], reference="teacher")
    report.save("out/report")   # metrics.json (schema: SCHEMA.md), report.md, report.html, PNGs
    classify = load_pipeline("out/int8")   # a transformers pipeline, ONNX via optimum

Names are imported lazily so that the peak-memory child process (and the CLI's --help) does not
pay for torch and transformers.
"""

from __future__ import annotations

import importlib

_API = {
    "evaluate": "pocketsize.eval.harness",
    "load_pipeline": "pocketsize.eval.predict",
    "Report": "pocketsize.eval.report",
    "SCHEMA_VERSION": "pocketsize.eval.report",
    "Variant": "pocketsize.runtime.runners",
    "TorchRunner": "pocketsize.runtime.runners",
    "OnnxRunner": "pocketsize.runtime.runners",
    "resolve_variant": "pocketsize.runtime.runners",
    "make_runner": "pocketsize.runtime.registry",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pocketsize.eval' has no attribute {name!r}")
