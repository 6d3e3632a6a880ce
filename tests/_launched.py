"""One process of a job that test_processes.py launches with torchrun.

    python -m torch.distributed.run --nproc_per_node=2 tests/_launched.py LOG_DIR ROOT JOB.json

Records every write this process makes under ROOT (files opened for writing, directories made,
renames, removals: Python's audit events, which also see the directories and renames through
which Rust writers such as safetensors' land their files) into LOG_DIR/writes-<rank>.json, then
calls JOB's function ("module:name") with its kwargs (and, with "pause_per_step", a callback
that sleeps after every training step, so that a test can kill the job midway).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys

log_dir, root, job_file = sys.argv[1:4]
root = os.path.realpath(root)
rank = os.environ.get("RANK", "0")
writes: list[list[str]] = []

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"}


def _under_root(path) -> str | None:
    try:
        p = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return None
    return p if p == root or p.startswith(root + os.sep) else None


def _audit(event: str, args) -> None:
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing and (p := _under_root(path)):
            writes.append([event, p])
    elif event in _PATH_EVENTS and (p := _under_root(args[0])):
        writes.append([event, p])
    elif event in ("os.rename", "shutil.copyfile", "shutil.move"):
        for path in args[:2]:
            if p := _under_root(path):
                writes.append([event, p])


def _dump() -> None:
    with open(os.path.join(log_dir, f"writes-{rank}.json"), "w") as f:
        json.dump(writes, f)


atexit.register(_dump)
with open(os.path.join(log_dir, f"pid-{rank}"), "w") as f:  # for a test that kills the job
    f.write(str(os.getpid()))
sys.addaudithook(_audit)

job = json.loads(open(job_file).read())
module, name = job["function"].split(":")
kwargs = job["kwargs"]
if job.get("pause_per_step"):  # slow training down, for a test that kills it midway
    import time

    from transformers import TrainerCallback

    class Pause(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            time.sleep(job["pause_per_step"])

    kwargs["callbacks"] = [Pause()]
getattr(importlib.import_module(module), name)(**kwargs)
