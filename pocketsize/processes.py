"""Several processes of one job (`torchrun`, `accelerate launch`): which one writes, and the
others waiting for it.

Training under several processes is transformers' Trainer with accelerate (DDP): every process
trains its shard. Everything else a stage does to disk (run directories, stage records, the
teacher-output cache, model cards, the report) is done once, by the main process, while the
others wait at a barrier. With one process every function here is a no-op, so no code path
differs between a plain run and a launched one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def launched() -> bool:
    """True inside a job of several processes (torchrun and accelerate set WORLD_SIZE)."""
    return world_size() > 1


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _state():
    """accelerate's process state: it joins the process group (gloo on CPU, NCCL on CUDA), the
    same group the Trainer uses later."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def device():
    """The device this process computes on: its own GPU (cuda:LOCAL_RANK under a launcher)
    where there is one, else the CPU; the same device the Trainer trains on."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    return _state().device


def start() -> None:
    """Join the process group before the first barrier (the Trainer would only join later)."""
    if launched():
        _state()


def wait() -> None:
    """Every process waits here until all have arrived."""
    if launched():
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (it fills a cache), then the others (they read it)."""
    if not launched():
        yield
        return
    with _state().main_process_first():
        yield


def on_main(fn: Callable, *args, **kwargs):
    """`fn` on the main process only, the others waiting for it; its result (None elsewhere)."""
    result = fn(*args, **kwargs) if is_main() else None
    wait()
    return result


def gather(value) -> list:
    """Each process's `value`, in rank order (a one-item list with one process)."""
    if not launched():
        return [value]
    import torch.distributed as dist

    start()
    got: list = [None] * world_size()
    dist.all_gather_object(got, value)
    return got


def broadcast(value):
    """The main process's `value`, on every process."""
    if not launched():
        return value
    import torch.distributed as dist

    start()
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def shared_temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory every process sees at the same path (the main one makes it and
    removes it once all are done with it)."""
    path = Path(broadcast(tempfile.mkdtemp(prefix=prefix) if is_main() else None))
    try:
        yield path
    except BaseException:
        # no barrier on failure: this process exits and the launcher stops the others
        if is_main():
            shutil.rmtree(path, ignore_errors=True)
        raise
    wait()
    if is_main():
        shutil.rmtree(path, ignore_errors=True)
