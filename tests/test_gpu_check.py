"""benchmarks/gpu_check.sh, the one command for a borrowed GPU machine, runs end to end here on
the CPU (CI has no GPU): every stage, the device placement it reports, and its figures file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from pocketsize.distill.training import bf16_supported

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_and_says_where_it_ran(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, POCKETSIZE_WHEELS=str(tmp_path / "no-wheels"))
    args = ["--steps", "6", "--hidden", "64", "--layers", "4", "--train-examples", "300"]
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out"), *args,
         "--eval-examples", "48", "--batch-size", "16"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    gpu = torch.cuda.is_available()
    assert (figures["gpu"] is not None) == gpu
    if not gpu:
        assert "GPU: none visible" in done.stdout
        assert "note: no CUDA GPU is visible: every variant ran on the CPU" in done.stdout
    for stage in ("finetune", "distill"):
        assert figures["stages"][stage]["steps"] == 6
        assert figures["stages"][stage]["bf16"] == bf16_supported()  # bf16="auto"
    where = "cuda" if gpu else "cpu"
    assert figures["stages"]["distill"]["cache"]["device"].startswith(where)
    assert figures["stages"]["prune"]["device"].startswith(where)
    assert figures["stages"]["prune"]["params_after"] < figures["stages"]["prune"]["params_before"]
    runs_on = {name: row["runs_on"] for name, row in figures["eval"].items()}
    assert all(runs_on[n].startswith(where) for n in ("teacher", "pruned", "student"))
    assert runs_on["int8"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    for row in figures["eval"].values():
        assert row["b1"]["device_p50"] > 0 and row["b32"]["cpu_p50"] > 0
    # the report of the device run is saved beside the figures
    assert (tmp_path / "out" / "report" / "metrics.json").is_file()
