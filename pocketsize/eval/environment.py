"""The machine and library versions a report was measured with."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

PACKAGES = (
    "pocketsize",
    "torch",
    "transformers",
    "onnxruntime",
    "onnx",
    "optimum",
    "optimum-onnx",
    "tokenizers",
    "datasets",
    "scikit-learn",
    "numpy",
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni")


def machine_info() -> dict:
    cpu_model, flags, ids = None, set(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu_model is None:
                    cpu_model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() in ("cpu family", "model") and key.strip() not in ids:
                    ids[key.strip()] = value.strip()
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model or platform.processor() or None,
        # a virtual machine's model name may be only "AMD EPYC": family and model tell the
        # generation (AMD family 25: model 1 is Zen 3, model 17 Zen 4)
        "cpu_family_model": f"{ids['cpu family']}/{ids['model']}" if len(ids) == 2 else None,
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": _total_memory(),
    }


def _total_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def library_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
