"""Peak memory of one variant, measured in a fresh process so variants cannot share pages.

The parent writes a spec (kind, path, task, threads) and one padded batch as .npz; the child
(`python -m pocketsize.eval.memory SPEC`) imports only the runtime it needs (onnxruntime alone
for ONNX variants), records its resident set size, loads the model, runs the batch twice and
prints the kernel's high-water mark of its resident set (VmHWM). `baseline_rss_bytes` is the process with the
runtime imported but no model; `model_peak_bytes` = peak - baseline is what the model adds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    # VmHWM belongs to this process's own address space; ru_maxrss would not do: Linux carries
    # the parent's high-water mark across fork + exec, so the child would report the parent's.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def measure_peak_memory(variant, task, batch: dict, threads: int, timeout: float = 600) -> dict:
    """Run the child for one variant; returns peak/baseline bytes or {"error": why}."""
    path = variant.path
    with tempfile.TemporaryDirectory(prefix="pocketsize-mem-") as tmp:
        if path is None:
            if not hasattr(variant.model, "save_pretrained"):
                return {"error": "in-memory model without save_pretrained; not measured"}
            path = Path(tmp) / "model"
            variant.model.save_pretrained(path)
        np.savez(Path(tmp) / "batch.npz", **batch)
        spec = {
            "kind": variant.kind,
            "path": str(path),
            "task": task.name,
            "threads": threads,
            "trust_module_code": variant.trust_module_code,
            "trust_remote_code": variant.trust_remote_code,
            "batch": str(Path(tmp) / "batch.npz"),
        }
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads))
        if variant.trust_module_code:
            # the user's module class must import in the child as it did here
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.run(
            [sys.executable, "-m", "pocketsize.eval.memory", str(Path(tmp) / "spec.json")],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"memory child failed: {last}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["batch_size"] = int(next(iter(batch.values())).shape[0])
    return result


def _child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    batch = dict(np.load(spec["batch"]))
    from pocketsize.runtime.devices import CPU
    from pocketsize.runtime.registry import RUNTIMES
    from pocketsize.runtime.runners import resolve_variant
    from pocketsize.tasks import get_task

    task = get_task(spec["task"])
    runtime = RUNTIMES[spec["kind"]]
    runtime.preload(task)  # the libraries are imported before the baseline is taken
    if spec["kind"] == "torch":
        import torch

        torch.set_num_threads(spec["threads"])
    baseline = _current_rss_bytes()
    variant = resolve_variant("model", Path(spec["path"]))
    variant.trust_module_code = spec["trust_module_code"]
    variant.trust_remote_code = spec["trust_remote_code"]
    runner = runtime.runner(variant, task, spec["threads"], CPU)
    for _ in range(2):
        runner.run(batch)
    peak = _peak_rss_bytes()
    print(
        json.dumps(
            {
                "peak_rss_bytes": peak,
                "baseline_rss_bytes": baseline,
                "model_peak_bytes": max(0, peak - baseline),
            }
        )
    )


if __name__ == "__main__":
    _child(sys.argv[1])
